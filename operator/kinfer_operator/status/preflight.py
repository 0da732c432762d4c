"""Checks that decide whether a spec can work at all, before anything is created (pure functions).

The spec model already refuses what the spec alone shows (unknown serving mode or model URI scheme, a Pinned
policy without a version, exactly-once with overrides that break it); these add what needs the cluster's answer
(does the Secret exist and hold the named keys) or knowledge of the children (Service names must be DNS labels).
Each problem is one line saying what to change. Any problem → ``Ready=False, reason InvalidSpec``, no children.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kinfer_operator.builders import naming
from kinfer_runtime.spec import Delivery, InferencePipeline, SpecError, parse_pipeline

DNS_LABEL_MAX = 63
# Producer settings that quietly turn off idempotence, which transactions need (librdkafka CONFIGURATION.md).
_EXACTLY_ONCE_PRODUCER_RULES = {
    "acks": ({"all", "-1"}, "acks must be all"),
    "max.in.flight.requests.per.connection": ({"1", "2", "3", "4", "5"}, "at most 5 requests in flight"),
}


def parse_or_problems(name: str, namespace: str, spec: dict[str, Any]) -> tuple[InferencePipeline | None, list[str]]:
    """The typed pipeline, or the list of problems that stop it from parsing."""
    manifest = {
        "apiVersion": naming.PIPELINE_API_VERSION,
        "kind": naming.PIPELINE_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    try:
        return parse_pipeline(manifest), []
    except SpecError as error:
        return None, list(error.problems)


def static_problems(pipeline: InferencePipeline) -> list[str]:
    """Problems that the spec model can't see on its own but need no cluster either."""
    problems = []
    longest_suffix = max(len(naming.tfserving_name("")), len(naming.metrics_service_name("")))
    if len(pipeline.metadata.name) + longest_suffix > DNS_LABEL_MAX:
        limit = DNS_LABEL_MAX - longest_suffix
        problems.append(
            f"metadata.name {pipeline.metadata.name!r} is too long: child Service names must be DNS labels, "
            f"so use at most {limit} characters"
        )
    spec = pipeline.spec
    for run in spec.batch:
        job = naming.batch_job_name(pipeline.metadata.name, run.name)
        if len(job) > DNS_LABEL_MAX:  # the Job controller puts the Job's name in a label of its pods
            problems.append(
                f"spec.batch {run.name!r}: its Job {job!r} would be {len(job)} characters, over {DNS_LABEL_MAX}; "
                "give the run a shorter name"
            )
    if spec.consumer.delivery is Delivery.EXACTLY_ONCE:
        for key, (allowed, rule) in _EXACTLY_ONCE_PRODUCER_RULES.items():
            value = spec.kafka.config.get(key)
            if value is not None and value.strip().lower() not in allowed:
                problems.append(
                    f"spec.kafka.config: {key}={value} breaks consumer.delivery exactlyOnce ({rule}); remove it"
                )
    return problems


def secret_problems(needed: dict[str, list[str]], found: dict[str, set[str] | None]) -> list[str]:
    """Missing Secrets or keys. ``needed``: name → keys the pods mount; ``found``: name → keys (None: absent)."""
    problems = []
    for name, keys in sorted(needed.items()):
        present = found.get(name)
        if present is None:
            problems.append(
                f"Secret {name!r} does not exist in the pipeline's namespace; create it or fix the reference"
            )
            continue
        missing = [key for key in dict.fromkeys(keys) if key not in present]
        if missing:
            problems.append(f"Secret {name!r} has no key(s) {', '.join(missing)}; add them or change the key names")
    return problems


@dataclass(frozen=True)
class AccessPolicy:
    """What the operator's installation lets a pipeline make the operator reach (docs/security.md).

    ``bootstrap``: host:port patterns (``*`` matches within a name) the operator's Kafka clients may connect to;
    empty: any. ``connect_urls``: URL prefixes of Kafka Connect REST APIs it may call; empty: only a Service in
    the pipeline's own namespace. ``secret_label``: a label (``key`` or ``key=value``) every Secret a pipeline names
    must carry; empty: none needed."""

    bootstrap: tuple[str, ...] = ()
    connect_urls: tuple[str, ...] = ()
    secret_label: str = ""


def _host_matches(pattern: str, address: str) -> bool:
    regex = "^" + re.escape(pattern.strip().lower()).replace(r"\*", "[^.:,]*") + "$"
    return re.match(regex, address.strip().lower()) is not None


def in_own_namespace_service(url: str, namespace: str) -> bool:
    """``http(s)://NAME.NAMESPACE.svc[.cluster.local][:port][/...]`` with the pipeline's own namespace."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme in ("http", "https") and (
        host.endswith(f".{namespace}.svc") or host.endswith(f".{namespace}.svc.cluster.local")
    )


def access_problems(pipeline: InferencePipeline, policy: AccessPolicy) -> list[str]:
    """Addresses outside what the installation allows: refused before the operator connects anywhere."""
    problems = []
    if policy.bootstrap:
        for address in pipeline.spec.kafka.bootstrap_servers.split(","):
            if address.strip() and not any(_host_matches(p, address) for p in policy.bootstrap):
                problems.append(
                    f"spec.kafka.bootstrapServers: {address.strip()} is not a Kafka cluster this kinfer installation "
                    f"may connect to (allowed: {', '.join(policy.bootstrap)}); ask the cluster admin to allow it"
                )
    url = pipeline.spec.ingestion.connect_url
    if url:
        allowed = (
            any(url.startswith(prefix) for prefix in policy.connect_urls)
            if policy.connect_urls
            else in_own_namespace_service(url, pipeline.metadata.namespace)
        )
        if not allowed:
            where = ", ".join(policy.connect_urls) or f"a Service in namespace {pipeline.metadata.namespace}"
            problems.append(
                f"spec.ingestion.connectUrl: {url} is not a Kafka Connect API this kinfer installation may call "
                f"(allowed: {where}); use such a URL or ask the cluster admin to allow it"
            )
    return problems


def secret_label_problems(names: list[str], labels: dict[str, dict[str, str]], required: str) -> list[str]:
    """Secrets that lack the label the installation requires (``labels``: Secret name → its labels)."""
    if not required:
        return []
    key, _, value = required.partition("=")
    return [
        f"Secret {name!r} is not labelled {required}: label it to let kinfer use it, or name another Secret"
        for name in sorted(names)
        if name in labels and (key not in labels[name] or (value and labels[name][key] != value))
    ]
