"""Kafka Connect sources of a pipeline (``spec.ingestion.connectors``): the side-effecting step of the reconcile.

``sync_connectors(pipeline, kube, restarts) -> ConnectorPlan`` is called once per pass. Two modes:

* ``connectUrl``: Connect is not a Kubernetes API, so there are no manifests to return; the step itself brings
  the cluster in line through the REST API (``reconcile_connectors``: create, update, delete, restart failed
  instances with backoff) and returns the ``ConnectorsReady`` condition.
* ``useStrimzi``: ``KafkaConnector`` manifests for the reconcile to apply, if the CRD is installed; connectors
  dropped from the spec are deleted here, and the condition is read from their Strimzi status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from kinfer_operator.connect.connectors import (
    ConnectorChanges,
    RestartBackoff,
    connectors_condition,
    desired_configs,
    health_from_status,
    name_prefix,
    plan_changes,
    short_name,
)
from kinfer_operator.connect.rest import ConnectClient, ConnectError, ConnectUnavailable
from kinfer_operator.connect.strimzi import PLURAL, STRIMZI_API_VERSION, build_kafka_connectors, strimzi_condition
from kinfer_operator.status.conditions import Condition
from kinfer_operator.status.reasons import Reason
from kinfer_runtime.spec import InferencePipeline

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectorPlan:
    """What the reconcile applies and reports for the connectors: Strimzi manifests, and a condition (None when
    the pipeline has no ingestion)."""

    manifests: list[dict[str, Any]]
    condition: Condition | None = None


@dataclass
class ConnectorsOutcome:
    condition: Condition
    changes: ConnectorChanges = field(default_factory=ConnectorChanges)
    restarted: list[str] = field(default_factory=list)


def reconcile_connectors(
    pipeline: InferencePipeline, client: ConnectClient, backoff: RestartBackoff
) -> ConnectorsOutcome:
    """One level-based pass over the pipeline's connectors in a Connect cluster; never raises ConnectError."""
    desired = desired_configs(pipeline)
    try:
        live = client.connectors()
    except ConnectError as error:
        return ConnectorsOutcome(connectors_condition([], [str(error)]))
    live_configs = {name: (doc.get("info") or {}).get("config") or {} for name, doc in live.items()}
    changes = plan_changes(desired, live_configs, name_prefix(pipeline))
    problems: list[str] = []
    rejected = False
    for name in changes.create + changes.update:
        try:
            client.put_config(name, desired[name])
            backoff.forget(name)
            logger.info("connector %s %s", name, "created" if name in changes.create else "updated")
        except ConnectError as error:
            rejected |= not isinstance(error, ConnectUnavailable)
            problems.append(f"{short_name(name)}: {error}")
    for name in changes.delete:
        try:
            client.delete(name)
            backoff.forget(name)
            logger.info("connector %s deleted (no longer in the spec)", name)
        except ConnectError as error:
            problems.append(f"{short_name(name)}: {error}")
    if changes.any:
        try:
            live = client.connectors()
        except ConnectError as error:
            problems.append(str(error))
    healths = [health_from_status(name, (live.get(name) or {}).get("status")) for name in sorted(desired)]
    restarted = []
    for health in healths:
        if health.running:
            backoff.running(health.name)
        elif health.failed and backoff.due(health.name):
            try:
                client.restart_failed(health.name)
                delay = backoff.record(health.name)
                restarted.append(health.name)
                logger.warning("connector %s failed (%s); restarted, next restart not before %.0fs",
                               health.name, "; ".join(health.failures), delay)  # fmt: skip
            except ConnectError as error:
                problems.append(f"{short_name(health.name)}: restart failed: {error}")
    restarts = {h.name: (backoff.restarts.get(h.name, 0), backoff.wait_s(h.name)) for h in healths}
    condition = connectors_condition(healths, problems, restarts)
    if rejected:
        condition = Condition(condition.type, "False", Reason.CONNECTOR_REJECTED, condition.message)
    return ConnectorsOutcome(condition, changes, restarted)


def delete_pipeline_connectors(pipeline: InferencePipeline, client: ConnectClient) -> list[str]:
    """Deletes every connector the pipeline owns in its Connect cluster (for the pipeline's deletion).

    The spec's own connectors are deleted by name as well as those listed: Connect's listing can lag behind a
    connector created a moment ago, and deleting one that is already gone is harmless."""
    prefix = name_prefix(pipeline)
    listed = {name for name in client.connectors() if name.startswith(prefix)}
    owned = sorted(listed | {prefix + connector.name for connector in pipeline.spec.ingestion.connectors})
    return [name for name in owned if client.delete(name)]


def has_rest_connectors(spec: dict[str, Any]) -> bool:
    """For a delete handler's filter: connectors that live in a Connect cluster, not in owned KafkaConnectors."""
    ingestion = spec.get("ingestion") or {}
    return bool(ingestion.get("connectUrl") and ingestion.get("connectors") and not ingestion.get("useStrimzi"))


def delete_connectors_of(name: str, namespace: str, spec: dict[str, Any]) -> list[str]:
    """For the pipeline's delete handler: deletes its connectors from the Connect cluster named in the spec.

    Raises ConnectError when Connect cannot be reached (the handler retries, then gives up after a bounded time
    so that a namespace can always be deleted). A spec that does not parse has no connectors to delete.
    """
    if not has_rest_connectors(spec):
        return []
    try:
        pipeline = InferencePipeline.model_validate({"metadata": {"name": name, "namespace": namespace}, "spec": spec})
    except ValueError:
        return []
    url = pipeline.spec.ingestion.connect_url
    assert url is not None  # has_rest_connectors checked it
    return delete_pipeline_connectors(pipeline, ConnectClient(url))


def on_pipeline_deleted(name: str, namespace: str, spec: dict[str, Any]) -> None:
    """Body of the operator's best-effort cleanup on a pipeline's DELETED event: no finalizer, so a pipeline never
    waits for Connect to be deleted. Connect unreachable (or the operator down at the time): the connectors stay,
    and the log says which to delete by hand."""
    try:
        deleted = delete_connectors_of(name, namespace, spec)
    except ConnectError as error:
        logger.warning("connectors of %s/%s not deleted: %s; delete kinfer.%s.%s.* by hand",
                       namespace, name, error, namespace, name)  # fmt: skip
        return
    if deleted:
        logger.info("deleted connectors %s of deleted pipeline %s/%s", ", ".join(deleted), namespace, name)


def sync_connectors(pipeline: InferencePipeline, kube: Any, restarts: RestartBackoff) -> ConnectorPlan:
    """One pass over the pipeline's connectors (see the module docstring). ``restarts`` is the operator's restart
    backoff, kept for the life of the process and shared by every pipeline."""
    ingestion = pipeline.spec.ingestion
    if ingestion.use_strimzi:
        return _strimzi_plan(pipeline, kube)
    if not ingestion.connect_url:
        return ConnectorPlan(manifests=[])  # no Connect cluster: ingestion is not used by this pipeline
    outcome = reconcile_connectors(pipeline, ConnectClient(ingestion.connect_url), restarts)
    return ConnectorPlan(manifests=[], condition=outcome.condition)


def _strimzi_plan(pipeline: InferencePipeline, kube: Any) -> ConnectorPlan:
    manifests = build_kafka_connectors(pipeline)
    resources = kube.request("GET", f"/apis/{STRIMZI_API_VERSION}") or {}
    installed = any(r.get("name") == PLURAL for r in resources.get("resources") or [])
    if not installed:
        return ConnectorPlan(manifests=[], condition=strimzi_condition(pipeline, {}, crd_installed=False))
    namespace, name = pipeline.metadata.namespace, pipeline.metadata.name
    collection = f"/apis/{STRIMZI_API_VERSION}/namespaces/{namespace}/{PLURAL}"
    listed = kube.request("GET", collection, query=[("labelSelector", f"kinfer.io/pipeline={name}")]) or {}
    live = {item["metadata"]["name"]: item for item in listed.get("items") or []}
    wanted = {m["metadata"]["name"] for m in manifests}
    for stale in sorted(set(live) - wanted):
        kube.request("DELETE", f"{collection}/{stale}")
        logger.info("KafkaConnector %s/%s deleted (no longer in the spec)", namespace, stale)
    return ConnectorPlan(manifests=manifests, condition=strimzi_condition(pipeline, live, crd_installed=True))
