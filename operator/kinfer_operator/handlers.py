"""kopf handlers: thin wrappers that run the one reconcile and apply its outcome (status patch, Events).

Registered by ``register`` into a given registry (not at import time), so the finalizer's give-up time comes
from the command line, and tests can run several operators in one process. The periodic pass is not a kopf
timer (that would put a finalizer on every pipeline) but :mod:`kinfer_operator.resync`. The finalizer is added
only to pipelines with ``deletionPolicy: Delete``: a ``Retain`` pipeline has nothing to clean up outside
Kubernetes, so it can never hold up a namespace deletion, even with the operator gone.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Any

import kopf

from kinfer_operator import metrics
from kinfer_operator.builders import naming
from kinfer_operator.connect import sync as connectors
from kinfer_operator.k8s.client import Kube
from kinfer_operator.kafka import admin as kafka_admin
from kinfer_operator.kafka.fencing import fence_departed_pod
from kinfer_operator.kafka.topic_plan import topics_to_delete
from kinfer_operator.kafka.topic_sync import admin_for
from kinfer_operator.reconcile import Passes
from kinfer_operator.status.preflight import AccessPolicy, access_problems, parse_or_problems

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandlerOptions:
    delete_give_up_seconds: float = 120.0  # how long deletion waits for an unreachable Kafka


def _apply(passes: Passes, body: kopf.Body, patch: kopf.Patch) -> None:
    outcome = passes(dict(body))
    for key, value in outcome.status_patch.items():
        patch.status[key] = value
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=str(event.reason), message=event.message)


def _wants_finalizer(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy") == "Delete"


def register(registry: kopf.OperatorRegistry, passes: Passes, options: HandlerOptions) -> None:
    resource = (naming.GROUP, naming.VERSION, naming.PIPELINE_PLURAL)
    kube = passes.services.kube

    def on_change(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        _apply(passes, body, patch)

    for decorator in (kopf.on.create, kopf.on.update, kopf.on.resume):
        decorator(*resource, registry=registry, id="reconcile", backoff=10)(on_change)

    def on_event(event: kopf.RawEvent, name: str, namespace: str, **_: Any) -> None:
        if event.get("type") == "DELETED":
            metrics.forget_pipeline(namespace, name)
            passes.forget(namespace, name)

    kopf.on.event(*resource, registry=registry, id="forget-metrics")(on_event)

    # Kafka Connect connectors (spec.ingestion.connectUrl) have no owner references: delete them when the pipeline
    # is gone, best effort and without a finalizer (kinfer_operator.connect.sync).
    def on_gone(event: kopf.RawEvent, name: str, namespace: str, **_: Any) -> None:
        if event.get("type") == "DELETED":
            spec = dict((event.get("object") or {}).get("spec") or {})
            pipeline, _problems = parse_or_problems(name, namespace, spec)
            if pipeline is not None and not access_problems(pipeline, passes.services.access):
                connectors.on_pipeline_deleted(name, namespace, spec)

    kopf.on.event(*resource, registry=registry, id="delete-connectors")(on_gone)

    # An exactly-once consumer pod whose object is gone: its transaction is ended now, not by the broker's timeout
    # (kinfer_operator.kafka.fencing). A raw event handler: nothing is written to the pods, no finalizer.
    def on_consumer_pod(event: kopf.RawEvent, name: str, namespace: str, labels: kopf.Labels, **_: Any) -> None:
        if event.get("type") == "DELETED" and labels.get(naming.LABEL_PIPELINE):
            fence_departed_pod(kube, passes.services.access, namespace, labels[naming.LABEL_PIPELINE], name)

    consumer_pods = {naming.LABEL_MANAGED_BY: "kinfer", naming.LABEL_COMPONENT: naming.COMPONENT_CONSUMER}
    kopf.on.event("v1", "pods", registry=registry, id="fence-gone-pods", labels=consumer_pods)(on_consumer_pod)

    def on_delete(body: kopf.Body, meta: kopf.Meta, spec: kopf.Spec, **_: Any) -> None:
        status = dict(body.get("status") or {})
        created = passes.services.created_topics.merged(
            meta["namespace"], meta["name"], str(meta.get("uid")), status.get("createdTopics")
        )
        delete_topics(kube, body, meta, spec, created, options.delete_give_up_seconds, passes.services.access)

    kopf.on.delete(*resource, registry=registry, id="delete-topics", when=_wants_finalizer)(on_delete)


def delete_topics(
    kube: Kube,
    body: kopf.Body,
    meta: kopf.Meta,
    spec: kopf.Spec,
    created: list[str],
    give_up_seconds: float,
    access: AccessPolicy,
) -> None:
    """deletionPolicy Delete: delete the topics this pipeline created (``created``: its ``status.createdTopics``
    and what this process's passes created), never one that existed before it; give up after a bounded time if
    Kafka is down."""
    pipeline, _ = parse_or_problems(meta["name"], meta["namespace"], dict(spec))
    if pipeline is None:
        kopf.warn(body, reason="TopicsKept", message="the spec is invalid, so no topics are known to delete")
        return
    if refused := access_problems(pipeline, access):
        kopf.warn(body, reason="TopicsKept", message=f"topics not deleted: {refused[0]}")
        return
    managed, kept = topics_to_delete(pipeline.spec, {"createdTopics": created})
    if kept:
        kopf.info(body, reason="TopicsKept", message=f"kept topics {', '.join(kept)}: not created by this pipeline")
    if not managed:
        return
    try:
        kafka_admin.delete_topics(admin_for(kube, pipeline), managed)
    except kafka_admin.KafkaUnavailable as error:
        waited = _seconds_since(meta.get("deletionTimestamp"))
        if waited < give_up_seconds:
            raise kopf.TemporaryError(f"topics not deleted yet ({error}); retrying", delay=10) from None
        kopf.warn(
            body,
            reason="TopicsNotDeleted",
            message=f"gave up deleting topics {', '.join(managed)} after {int(waited)}s: {error}. Delete them by hand.",
        )
        return
    kopf.info(body, reason="TopicsDeleted", message=f"deleted topics {', '.join(managed)}")


def _seconds_since(timestamp: str | None) -> float:
    if not timestamp:
        return 0.0
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return (datetime.datetime.now(datetime.UTC) - then).total_seconds()
