"""Checks that decide whether a spec can work at all, before anything is created (pure functions).

The spec model already refuses what the spec alone shows (unknown serving mode or model URI scheme, a Pinned
policy without a version, exactly-once with overrides that break it); these add what needs the cluster's answer
(does the Secret exist and hold the named keys) or knowledge of the children (Service names must be DNS labels).
Each problem is one line saying what to change. Any problem → ``Ready=False, reason InvalidSpec``, no children.
"""

from __future__ import annotations

from typing import Any

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
