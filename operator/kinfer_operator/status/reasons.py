"""Every condition type and reason the operator writes into an InferencePipeline's status, in one place.

Reasons are stable CamelCase words: alerts, dashboards and runbooks match on them (docs/operator.md lists what
each means and what to do), so they are values of these enums rather than strings spread over the modules that
decide them.
"""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    READY = "Ready"
    TOPICS_READY = "TopicsReady"
    CONSUMERS_READY = "ConsumersReady"
    SERVING_READY = "ServingReady"
    AUTOSCALING_READY = "AutoscalingReady"
    CONNECTORS_READY = "ConnectorsReady"
    DEGRADED = "Degraded"


class Reason(StrEnum):
    # The spec and the whole pipeline
    INVALID_SPEC = "InvalidSpec"  # the spec can't work: nothing is created or changed; the message says why
    NOT_SUPPORTED = "NotSupported"  # a change Kafka or Kubernetes can't make (shrinking a topic)
    RECONCILED = "Reconciled"  # Ready: every part is ready
    AS_EXPECTED = "AsExpected"  # not Degraded
    APPLY_FAILED = "ApplyFailed"  # the API server refused a child object
    # Topics
    KAFKA_ERROR = "KafkaError"  # Kafka can't be reached or refused a request
    TOPIC_MISSING = "TopicMissing"  # an adopted topic does not exist
    TOPICS_READY = "TopicsReady"
    TOPIC_CONFLICT = "TopicConflict"  # two pipelines ask different configs of one topic (kafka/claims.py)
    # Workloads (consumers, TF Serving)
    CREATING = "Creating"
    SCALED_TO_ZERO = "ScaledToZero"
    ROLLING_OUT = "RollingOut"
    REPLICAS_UNAVAILABLE = "ReplicasUnavailable"
    AVAILABLE = "Available"
    MODEL_CLAIM_MISSING = "ModelClaimMissing"  # the pvc:// model's claim does not exist
    EMBEDDED = "Embedded"  # serving: the model runs in the consumer pods
    EXTERNAL_ENDPOINT = "ExternalEndpoint"  # serving: a TF Serving the operator does not deploy
    # Autoscaling
    DISABLED = "Disabled"
    KEDA = "Keda"
    MONITOR_NOT_RUNNING = "MonitorNotRunning"
    LAG_UNAVAILABLE = "LagUnavailable"
    WAITING_FOR_LAG = "WaitingForLag"
    SCALE_OUT_HELD = "ScaleOutHeld"  # TF Serving not Ready: consumers are not added
    CAPPED_BY_PARTITIONS = "CappedByPartitions"
    STUCK_PARTITIONS = "StuckPartitions"
    SCALING = "Scaling"
    # Kafka Connect sources
    NO_CONNECTORS = "NoConnectors"
    CONNECTORS_RUNNING = "ConnectorsRunning"
    CONNECTORS_STARTING = "ConnectorsStarting"
    CONNECTOR_FAILED = "ConnectorFailed"
    CONNECTOR_REJECTED = "ConnectorRejected"
    CONNECT_ERROR = "ConnectError"
    STRIMZI_NOT_INSTALLED = "StrimziNotInstalled"
