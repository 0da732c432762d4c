"""Strimzi ``KafkaConnector`` resources for ``spec.ingestion.connectors`` with ``useStrimzi`` (pure builders).

Strimzi's Cluster Operator runs the connector on the KafkaConnect cluster named by the ``strimzi.io/cluster``
label and reports the Connect status in ``status.connectorStatus``; its ``autoRestart`` restarts failed
connectors and tasks with its own backoff, so the operator does not restart them itself in this mode.
"""

from __future__ import annotations

from typing import Any

from kinfer_operator.connect.connectors import (
    ConnectorHealth,
    connector_config,
    connectors_condition,
    health_from_status,
)
from kinfer_operator.status.conditions import Condition
from kinfer_operator.status.reasons import ConditionType, Reason
from kinfer_runtime.spec import ConnectorSpec, InferencePipeline

STRIMZI_API_VERSION = "kafka.strimzi.io/v1beta2"
KIND = "KafkaConnector"
PLURAL = "kafkaconnectors"
# Strimzi takes these from spec.class and spec.tasksMax and refuses them inside spec.config.
STRIMZI_OWNED_KEYS = ("connector.class", "tasks.max")


def kafka_connector_name(pipeline: InferencePipeline, connector: ConnectorSpec) -> str:
    return f"{pipeline.metadata.name}-{connector.name}"


def build_kafka_connector(pipeline: InferencePipeline, connector: ConnectorSpec) -> dict[str, Any]:
    """The KafkaConnector for one connector of the spec (the caller adds the owner reference)."""
    config = {k: v for k, v in connector_config(pipeline, connector).items() if k not in STRIMZI_OWNED_KEYS}
    return {
        "apiVersion": STRIMZI_API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": kafka_connector_name(pipeline, connector),
            "namespace": pipeline.metadata.namespace,
            "labels": {
                "strimzi.io/cluster": pipeline.spec.ingestion.strimzi_cluster or "",
                "app.kubernetes.io/managed-by": "kinfer",
                "app.kubernetes.io/part-of": "kinfer",
                "app.kubernetes.io/component": "connector",
                "kinfer.io/pipeline": pipeline.metadata.name,
            },
        },
        "spec": {
            "class": connector.connector_class,
            "tasksMax": connector.tasks_max,
            "config": config,
            "autoRestart": {"enabled": True},
            "state": "running",
        },
    }


def build_kafka_connectors(pipeline: InferencePipeline) -> list[dict[str, Any]]:
    return [build_kafka_connector(pipeline, c) for c in pipeline.spec.ingestion.connectors]


def kafka_connector_health(name: str, live: dict[str, Any] | None) -> ConnectorHealth:
    """Health from a live KafkaConnector: Connect's status if Strimzi reported one, else its Ready condition."""
    status = (live or {}).get("status") or {}
    health = health_from_status(name, status.get("connectorStatus"))
    if health.state == "MISSING":
        not_ready = [c for c in status.get("conditions") or [] if c.get("type") in ("Ready", "NotReady")
                     and (c.get("type") == "NotReady" or c.get("status") != "True")]  # fmt: skip
        if not_ready:
            message = not_ready[0].get("message") or not_ready[0].get("reason") or "not ready"
            return ConnectorHealth(name, "FAILED", 0, 0, [f"Strimzi: {message}"])
    return health


def strimzi_condition(pipeline: InferencePipeline, live: dict[str, dict[str, Any]], crd_installed: bool) -> Condition:
    """``ConnectorsReady`` for Strimzi mode; ``live`` maps KafkaConnector names to the objects that exist."""
    if not crd_installed:
        return Condition(ConditionType.CONNECTORS_READY, "False", Reason.STRIMZI_NOT_INSTALLED,
                         f"ingestion.useStrimzi is set but the {KIND} CRD ({STRIMZI_API_VERSION}) is not installed: "
                         "install Strimzi, or set ingestion.connectUrl and useStrimzi: false")  # fmt: skip
    healths, restarts = [], {}
    for connector in pipeline.spec.ingestion.connectors:
        name = kafka_connector_name(pipeline, connector)
        healths.append(kafka_connector_health(name, live.get(name)))
        auto_restart = ((live.get(name) or {}).get("status") or {}).get("autoRestart") or {}
        if auto_restart.get("count"):
            restarts[name] = (int(auto_restart["count"]), 0.0)
    return connectors_condition(healths, [], restarts)
