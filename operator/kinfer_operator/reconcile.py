"""The one level-based reconcile of an InferencePipeline, used by create, update, resume and the periodic resync.

Each pass looks at the world, not at what changed, in four named steps:

1. **observe**: parse and preflight the spec (any problem → InvalidSpec, nothing created or changed), read the
   topics, the live workloads and the autoscaler's view of the lag;
2. **sync**: bring the topics in line and the Kafka Connect sources (the two things that are not Kubernetes
   objects);
3. **apply**: every desired child whose spec-hash or fields differ (owner reference and spec-hash added), and
   prune the ones this pipeline no longer wants;
4. **status**: conditions, the status document, and the Events worth posting.

A pass that finds everything in place sends only GETs. It returns the status patch and Events; the caller (the
kopf handler, or the resync) applies them.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kinfer_operator import metrics
from kinfer_operator.autoscaling.monitor import LagMonitor
from kinfer_operator.autoscaling.plan import AutoscalerContext, plan_autoscaler
from kinfer_operator.batch_observe import batch_status
from kinfer_operator.builders import naming
from kinfer_operator.builders.desired import desired_children
from kinfer_operator.builders.manifests import Owner
from kinfer_operator.builders.network_policy import NetworkPolicies
from kinfer_operator.builders.volumes import referenced_secrets, split_model_uri
from kinfer_operator.connect.connectors import RestartBackoff
from kinfer_operator.connect.sync import sync_connectors
from kinfer_operator.k8s.children import apply_children, prune_children
from kinfer_operator.k8s.client import Kube, KubeError, object_path, secret_keys
from kinfer_operator.kafka.claims import CreatedTopics, TopicClaims
from kinfer_operator.kafka.client_keys import client_config_problems
from kinfer_operator.kafka.topic_sync import TopicAdmin, apply_topics, read_topics, topic_admin_for
from kinfer_operator.status import conditions
from kinfer_operator.status.conditions import Condition, deployment_state, workload_condition
from kinfer_operator.status.document import Event, Observed, build_status, condition_events, status_patch
from kinfer_operator.status.preflight import (
    AccessPolicy,
    access_problems,
    parse_or_problems,
    secret_label_problems,
    secret_problems,
    static_problems,
)
from kinfer_operator.status.reasons import ConditionType, Reason
from kinfer_runtime.spec import InferencePipeline, ServingMode

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """What a pass talks to besides the pipeline, and what the operator's installation decides: the API server,
    Kafka's topics (``topic_admin(kube, pipeline)``), the lag monitor (None where autoscaling runs without one), the
    Kafka Connect restart backoff (kept for the life of the process), and the consumers' default image."""

    kube: Kube
    monitor: LagMonitor | None = None
    connect_restarts: RestartBackoff = field(default_factory=RestartBackoff)
    topic_admin: Callable[[Kube, InferencePipeline], TopicAdmin] = topic_admin_for
    runtime_image: str = naming.DEFAULT_RUNTIME_IMAGE  # the consumers' image when a pipeline names none
    topic_claims: TopicClaims = field(default_factory=TopicClaims)
    created_topics: CreatedTopics = field(default_factory=CreatedTopics)  # what passes created (see CreatedTopics)
    access: AccessPolicy = field(default_factory=AccessPolicy)  # what pipelines may make the operator reach
    network_policies: NetworkPolicies | None = None  # None: the installation makes no NetworkPolicies


@dataclass
class Outcome:
    status_patch: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    applied: dict[str, str] = field(default_factory=dict)  # "Kind/name" → created | updated | restored
    invalid: bool = False


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reconcile(services: Services, body: dict[str, Any]) -> Outcome:
    kube = services.kube
    meta, spec, previous = body["metadata"], body.get("spec") or {}, dict(body.get("status") or {})
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    generation = int(meta.get("generation") or 0)
    created = services.created_topics.merged(namespace, name, uid, previous.get("createdTopics"))
    if created:  # the status this pass read may predate an earlier pass's write
        previous["createdTopics"] = created

    # 1. observe
    pipeline, problems = parse_or_problems(name, namespace, spec)
    if pipeline is not None:
        problems += static_problems(pipeline) + access_problems(pipeline, services.access)
        problems += client_config_problems(pipeline.spec.kafka.config)
        needed = referenced_secrets(pipeline.spec.kafka, pipeline.spec.model)
        found = {secret: secret_keys(kube, namespace, secret) for secret in needed}
        problems += secret_problems(needed, {secret: f[0] if f else None for secret, f in found.items()})
        labels = {secret: f[1] for secret, f in found.items() if f is not None}
        secret_versions = {secret: f[2] for secret, f in found.items() if f is not None}
        problems += secret_label_problems(list(needed), labels, services.access.secret_label)
    topic_plan, topic_condition, topics = None, None, None
    if pipeline is not None and not problems:
        topics = services.topic_admin(kube, pipeline)
        topic_plan, topic_condition = read_topics(topics, pipeline, previous)
        conflicts = services.topic_claims.claim(pipeline)
        if topic_plan is not None and conflicts:
            topic_plan.hold_configs(conflicts)
        if topic_plan is not None:
            problems += topic_plan.invalid
    if pipeline is None or problems:
        return _invalid(kube, body, pipeline, problems, previous, generation)
    live_consumer = kube.request("GET", object_path("apps/v1", "Deployment", namespace, naming.consumer_name(name)))
    live_tfserving = None
    if pipeline.spec.serving.deploys_tfserving:
        path = object_path("apps/v1", "Deployment", namespace, naming.tfserving_name(name))
        live_tfserving = kube.request("GET", path)
    consumer_state, tfserving_state = deployment_state(live_consumer), deployment_state(live_tfserving)
    consumers = workload_condition(ConditionType.CONSUMERS_READY, naming.consumer_name(name), consumer_state)
    serving = _serving_condition(pipeline, tfserving_state)
    mounting = [consumers, serving] if pipeline.spec.serving.deploys_tfserving else [consumers]
    if not all(c.is_true for c in mounting):  # an available workload needs no look at its claim (a GET a pass)
        missing_claim = _missing_model_claim(kube, pipeline)
        consumers = conditions.with_model_claim(consumers, missing_claim, namespace)
        if pipeline.spec.serving.deploys_tfserving:
            serving = conditions.with_model_claim(serving, missing_claim, namespace)
    partitions = (topic_plan.partitions if topic_plan else {}) or dict(previous.get("topics") or {})
    monitor = services.monitor
    tracked, fresh = monitor.observe(namespace, name, pipeline.spec) if monitor else (None, False)

    # 2. sync what is not a Kubernetes object
    events: list[Event] = []
    created_topics = list(previous.get("createdTopics") or [])
    if topic_plan is not None and topics is not None:
        topic_condition, created_now = apply_topics(topics, topic_plan, events)
        created_topics = sorted(set(topic_plan.owned) | created_now)  # a topic the spec no longer names is let go
        services.created_topics.record(namespace, name, uid, created_topics)
    assert topic_condition is not None
    connectors = sync_connectors(pipeline, kube, services.connect_restarts)

    # 3. apply the children
    autoscaler = plan_autoscaler(
        AutoscalerContext(
            pipeline=pipeline,
            uid=uid,
            partitions=partitions.get(pipeline.spec.topics.input.name),
            consumer_replicas=consumer_state.desired if consumer_state.exists else None,
            consumer_ready_replicas=consumer_state.available,
            serving_ready=serving.is_true,
            status=previous,
        ),
        tracked,
        monitoring=monitor is not None,
        fresh=fresh,
    )
    children = desired_children(
        pipeline,
        Owner(name, namespace, uid),
        autoscaler.consumer_replicas,
        autoscaler.tfserving_replicas,
        extra=autoscaler.manifests + connectors.manifests,
        runtime_image=services.runtime_image,
        network_policies=services.network_policies,
        secret_versions=secret_versions,
    )
    initial = {
        naming.consumer_name(name): pipeline.spec.autoscaling.min_replicas,
        naming.tfserving_name(name): pipeline.spec.serving.tfserving.replicas,
    }
    applied, failed = apply_children(kube, children, initial, events)
    if generation != previous.get("observedGeneration"):  # only a spec change can make a child unwanted
        applied |= prune_children(kube, namespace, name, uid, children, events)
    events += [Event(kind, reason, message) for kind, reason, message in autoscaler.events]
    batch = batch_status(kube, topics, pipeline, children, failed, previous.get("batch"))

    # 4. status
    parts = [topic_condition, consumers, serving, autoscaler.condition]
    if connectors.condition is not None:
        parts.append(connectors.condition)
    parts = [Condition(c.type, "False", Reason.APPLY_FAILED, failed[c.type]) if c.type in failed else c for c in parts]
    before = {c.get("type"): c.get("reason") for c in previous.get("conditions") or []}
    events += [
        Event("Warning", Reason.APPLY_FAILED, message)
        for kind, message in failed.items()
        if before.get(kind) != Reason.APPLY_FAILED
    ]  # once, not on every pass
    current = conditions.overall_conditions(parts, conditions.was_ready(previous.get("conditions") or []))
    observed = Observed(
        generation=generation,
        conditions=current,
        replicas=int((live_consumer or {}).get("status", {}).get("replicas") or 0),
        ready_replicas=consumer_state.available,
        partitions=partitions,
        input_topic=pipeline.spec.topics.input.name,
        lag=autoscaler.lag,
        serving_endpoint=pipeline.tfserving_address if pipeline.spec.serving.mode is ServingMode.TFSERVING else None,
        autoscaling=autoscaler.status or None,
        created_topics=created_topics,
        batch=batch,
        committed_metadata=tracked.reading.committed_metadata if tracked and tracked.reading and fresh else None,
    )
    status = build_status(previous, observed, pipeline, name, _now())
    events += condition_events(previous.get("conditions") or [], current)
    return Outcome(status_patch(previous, status), events, applied)


def _invalid(
    kube: Kube,
    body: dict[str, Any],
    pipeline: InferencePipeline | None,
    problems: list[str],
    previous: dict[str, Any],
    generation: int,
) -> Outcome:
    """InvalidSpec: create and change nothing; existing children keep running the last valid spec."""
    meta = body["metadata"]
    current = conditions.invalid_spec_conditions(problems)
    live = kube.request(
        "GET", object_path("apps/v1", "Deployment", meta["namespace"], naming.consumer_name(meta["name"]))
    )
    if live is not None:
        message = "the last valid spec keeps running until the spec is fixed"
        current = [
            c if c.type != ConditionType.DEGRADED else Condition(c.type, "True", Reason.INVALID_SPEC, message)
            for c in current
        ]
    observed = Observed(generation=generation, conditions=current, batch=previous.get("batch"))
    status = build_status(previous, observed, pipeline, meta["name"], _now())
    events = condition_events(previous.get("conditions") or [], current)
    return Outcome(status_patch(previous, status), events, invalid=True)


def _missing_model_claim(kube: Kube, pipeline: InferencePipeline) -> str | None:
    """The claim of a ``pvc://`` model when it does not exist; None when it does, or cannot be checked (an
    install without ``get`` on claims: the pods' events still tell)."""
    scheme, claim, _ = split_model_uri(pipeline.spec.model.uri)
    if scheme != "pvc":
        return None
    try:
        found = kube.request("GET", object_path("v1", "PersistentVolumeClaim", pipeline.metadata.namespace, claim))
    except KubeError as error:
        logger.debug("cannot check claim %s: %s", claim, error)
        return None
    return claim if found is None else None


def _serving_condition(pipeline: InferencePipeline, state: conditions.DeploymentState) -> Condition:
    kind = ConditionType.SERVING_READY
    if pipeline.spec.serving.mode is ServingMode.EMBEDDED:
        return Condition(kind, "True", Reason.EMBEDDED, "the model runs inside the consumer pods")
    if not pipeline.spec.serving.deploys_tfserving:
        return Condition(kind, "True", Reason.EXTERNAL_ENDPOINT, f"TF Serving at {pipeline.tfserving_address}")
    return workload_condition(kind, naming.tfserving_name(pipeline.metadata.name), state)


class Passes:
    """``reconcile`` as the kopf handlers and the resync call it: one pass at a time per pipeline (the two may
    wake together), timed and counted, with the pipeline's gauges set from the status it leads to."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Outcome:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        started, result = time.monotonic(), "error"
        try:
            with lock:
                outcome = reconcile(self.services, body)
            result = (
                "invalid" if outcome.invalid else ("changed" if outcome.applied or outcome.status_patch else "idle")
            )
            metrics.observe_pipeline(key[0], key[1], {**dict(body.get("status") or {}), **outcome.status_patch})
            return outcome
        finally:
            metrics.RECONCILE_TOTAL.labels(result=result).inc()
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)
        self.services.topic_claims.release(namespace, name)
        self.services.created_topics.release(namespace, name)
