"""The whole pipeline: autoscaling, ingestion and monitoring, the spec that puts every part together with the rules
across parts, the manifest around it, and the two parse functions that turn pydantic errors into what to fix."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kinfer_runtime.spec.base import (
    API_GROUP,
    API_VERSION,
    KIND,
    NAME_PATTERN,
    SpecError,
    SpecModel,
    describe_validation_error,
)
from kinfer_runtime.spec.kafka import (
    ConsumerSpec,
    Delivery,
    KafkaSpec,
    TopicsSpec,
)
from kinfer_runtime.spec.model import (
    ModelSpec,
    PreprocessingSpec,
    ServingSpec,
)

# --- Autoscaling (see kinfer_operator.autoscaling) ------------------------------------------------------------


class AutoscalingProvider(StrEnum):
    HPA = "hpa"  # an autoscaling/v2 HPA on the operator's external metric
    KEDA = "keda"  # a KEDA ScaledObject, for clusters that already run KEDA


class AutoscalingSpec(SpecModel):
    enabled: bool = False
    provider: AutoscalingProvider = AutoscalingProvider.HPA
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=10, ge=1)
    lag_threshold: int = Field(default=1000, ge=1, description="Target lag per replica (records).")
    activation_lag_threshold: int = Field(default=0, ge=0, description="Lag that wakes a pipeline scaled to zero.")
    target_drain_seconds: int | None = Field(
        default=None, ge=1, description="Also scale so that the lag drains within this many seconds."
    )
    cooldown_seconds: int = Field(default=300, ge=0, description="Idle time before scaling to zero.")
    scale_up_stabilization_seconds: int = Field(default=0, ge=0)
    scale_down_stabilization_seconds: int = Field(default=300, ge=0)
    stuck_partition_polls: int = Field(
        default=5, ge=2, description="Polls without progress after which a lagging partition counts as stuck."
    )
    limit_to_partitions_with_lag: bool = False
    serving_consumers_per_replica: int = Field(
        default=4, ge=1, description="tfserving mode: TF Serving replicas follow consumer demand, one per this many."
    )
    serving_max_replicas: int = Field(default=4, ge=1, description="tfserving mode: upper bound of the TF Serving HPA.")

    @model_validator(mode="after")
    def _range(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"autoscaling.minReplicas ({self.min_replicas}) is above maxReplicas ({self.max_replicas})"
            )
        return self


# --- Ingestion (Kafka Connect sources) ------------------------------------------------------------------------


class ConnectorSpec(SpecModel):
    """A Kafka Connect source connector that feeds the pipeline's input topic."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
    connector_class: str = Field(min_length=1)
    tasks_max: int = Field(default=1, ge=1)
    config: dict[str, str] = Field(default_factory=dict)
    topic_config_key: str | None = Field(
        default="topic",
        description="Connector config key that names the target topic; kinfer sets it to the pipeline's input "
        "topic unless config sets it. Null to leave the config alone (connectors that name topics otherwise).",
    )


class IngestionSpec(SpecModel):
    connect_url: str | None = Field(default=None, description="Kafka Connect REST URL, e.g. http://connect:8083.")
    use_strimzi: bool = Field(default=False, description="Create Strimzi KafkaConnector resources instead.")
    strimzi_cluster: str | None = Field(default=None, description="Strimzi KafkaConnect name (strimzi.io/cluster).")
    connectors: list[ConnectorSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _where_connectors_run(self) -> IngestionSpec:
        names = [c.name for c in self.connectors]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"ingestion.connectors: names must be unique, repeated: {', '.join(duplicates)}")
        if self.use_strimzi and not self.strimzi_cluster:
            raise ValueError("ingestion.useStrimzi needs ingestion.strimziCluster (the KafkaConnect's name)")
        if self.connectors and not self.use_strimzi and not self.connect_url:
            raise ValueError("ingestion.connectors need ingestion.connectUrl (or useStrimzi with strimziCluster)")
        return self


# --- The pipeline ---------------------------------------------------------------------------------------------


class DeletionPolicy(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class MonitoringSpec(SpecModel):
    metrics_port: int = Field(default=9400, ge=1, le=65535)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


class InferencePipelineSpec(SpecModel):
    """What a user asks for: topics in, model, topics out, and how to run and scale it."""

    kafka: KafkaSpec
    topics: TopicsSpec
    model: ModelSpec
    preprocessing: PreprocessingSpec = Field(default_factory=PreprocessingSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    consumer: ConsumerSpec = Field(default_factory=ConsumerSpec)
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    ingestion: IngestionSpec = Field(default_factory=IngestionSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    deletion_policy: DeletionPolicy = DeletionPolicy.RETAIN

    @model_validator(mode="after")
    def _cross_field(self) -> InferencePipelineSpec:
        if self.consumer.delivery is Delivery.EXACTLY_ONCE:
            overrides = self.kafka.config
            if overrides.get("enable.idempotence", "true").lower() == "false":
                raise ValueError("consumer.delivery exactlyOnce needs enable.idempotence; remove it from kafka.config")
            if overrides.get("isolation.level", "read_committed") != "read_committed":
                raise ValueError("consumer.delivery exactlyOnce reads with isolation.level=read_committed")
            if overrides.get("enable.auto.commit", "false").lower() == "true":
                raise ValueError("consumer.delivery exactlyOnce commits through transactions: drop enable.auto.commit")
        return self

    def consumer_group(self, pipeline_name: str) -> str:
        return self.consumer.group or f"kinfer-{pipeline_name}"


class ObjectMeta(BaseModel):
    """The part of metadata kinfer reads."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    namespace: str = "default"


class InferencePipeline(BaseModel):
    """A whole manifest, as applied with kubectl or run with ``kinfer run``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    api_version: str = Field(default=f"{API_GROUP}/{API_VERSION}", alias="apiVersion")
    kind: str = KIND
    metadata: ObjectMeta
    spec: InferencePipelineSpec

    @model_validator(mode="after")
    def _kind(self) -> InferencePipeline:
        if self.kind != KIND or self.api_version != f"{API_GROUP}/{API_VERSION}":
            raise ValueError(f"expected apiVersion {API_GROUP}/{API_VERSION}, kind {KIND}")
        return self


def parse_pipeline(manifest: dict[str, Any]) -> InferencePipeline:
    """Validate a whole manifest, turning pydantic's errors into ``field.path: what is wrong`` lines."""
    from pydantic import ValidationError

    try:
        return InferencePipeline.model_validate(manifest)
    except ValidationError as error:
        raise SpecError(describe_validation_error(error)) from None


def parse_spec(spec: dict[str, Any]) -> InferencePipelineSpec:
    """Validate only the spec (what the operator gets from kopf)."""
    from pydantic import ValidationError

    try:
        return InferencePipelineSpec.model_validate(spec)
    except ValidationError as error:
        raise SpecError(describe_validation_error(error, prefix="spec")) from None
