"""The whole pipeline: autoscaling, ingestion and monitoring, the spec that puts every part together with the rules
across parts, the manifest around it, and the two parse functions that turn pydantic errors into what to fix."""

from __future__ import annotations

import re
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
from kinfer_runtime.spec.batch import BatchRunSpec
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
    """Scaling of the consumers on their group's lag on the input topic; when off, consumer.replicas is the size."""

    enabled: bool = Field(
        default=False,
        description="Scale the consumers on lag with an HPA or a KEDA ScaledObject; consumer.replicas is then ignored.",
    )
    provider: AutoscalingProvider = Field(
        default=AutoscalingProvider.HPA,
        description="hpa: an autoscaling/v2 HPA on the operator's own external metric, with kinfer's lag rules "
        "(stuck partitions, drain time, partition cap, TF Serving coupling). keda: a KEDA ScaledObject with "
        "KEDA's kafka trigger and its lag rules; KEDA must be installed.",
    )
    min_replicas: int = Field(
        default=1,
        ge=0,
        description="Fewest consumer pods; at most maxReplicas. 0 lets an idle pipeline scale to zero after "
        "cooldownSeconds and wake when its lag passes activationLagThreshold.",
    )
    max_replicas: int = Field(
        default=10,
        ge=1,
        description="Most consumer pods. The input topic's partition count caps it too, since consumers beyond "
        "the partitions would sit idle.",
    )
    lag_threshold: int = Field(default=1000, ge=1, description="Target lag per replica (records).")
    activation_lag_threshold: int = Field(default=0, ge=0, description="Lag that wakes a pipeline scaled to zero.")
    target_drain_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Also scale so that the lag drains within this many seconds (provider hpa only).",
    )
    cooldown_seconds: int = Field(default=300, ge=0, description="Idle time before scaling to zero.")
    scale_up_stabilization_seconds: int = Field(
        default=0,
        ge=0,
        description="Scale up only to the smallest count recommended over this many seconds; 0 scales up at once.",
    )
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        description="Scale down only to the largest count recommended over this many seconds, so a lag that "
        "wobbles around a threshold does not toggle the size.",
    )
    stuck_partition_polls: int = Field(
        default=5, ge=2, description="Polls without progress after which a lagging partition counts as stuck."
    )
    limit_to_partitions_with_lag: bool = Field(
        default=False,
        description="Cap the consumers at the number of partitions that have lag, instead of at the partition count.",
    )
    serving_consumers_per_replica: int = Field(
        default=4,
        ge=1,
        description="tfserving mode with provider hpa: TF Serving replicas follow consumer demand, one per this many.",
    )
    serving_max_replicas: int = Field(
        default=4,
        ge=1,
        description="tfserving mode with provider hpa: upper bound of the TF Serving HPA (serving.tfserving.replicas "
        "if that is higher).",
    )

    @model_validator(mode="after")
    def _range(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"autoscaling.minReplicas ({self.min_replicas}) is above maxReplicas ({self.max_replicas})"
            )
        return self


# --- Ingestion (Kafka Connect sources) ------------------------------------------------------------------------


# Connector settings that hold credentials, by their name; their value must be a config provider's reference.
CREDENTIAL_KEY = re.compile(
    r"(password|passwd|secret|token|credential|api[._-]?key|access[._-]?key|private[._-]?key|jaas)", re.I
)
CONFIG_PROVIDER_REFERENCE = re.compile(r"\$\{[A-Za-z0-9_.-]+:[^}]+\}")


class ConnectorSpec(SpecModel):
    """A Kafka Connect source connector that feeds the pipeline's input topic."""

    name: Annotated[
        str,
        Field(
            pattern=NAME_PATTERN,
            max_length=63,
            description="Connector name, unique in the pipeline. In Connect it becomes "
            "kinfer.<namespace>.<pipeline>.<name>; with Strimzi, the KafkaConnector <pipeline>-<name>.",
        ),
    ]
    connector_class: str = Field(
        min_length=1,
        description="Java class of the source connector (connector.class), e.g. "
        "org.apache.kafka.connect.file.FileStreamSourceConnector.",
    )
    tasks_max: int = Field(default=1, ge=1, description="Most tasks Connect runs for the connector (tasks.max).")
    config: dict[str, str] = Field(
        default_factory=dict,
        description="Connector config, given to Connect as it is; connector.class and tasks.max come from the "
        "fields above and win over keys of the same name. Credentials are references to a Kafka Connect config "
        "provider, never values: e.g. ${secrets:NAMESPACE/SECRET:KEY} (Strimzi's KubernetesSecretConfigProvider) "
        "or ${file:/path:KEY}; a credential-like key with a literal value is refused.",
    )

    @model_validator(mode="after")
    def _credentials_are_references(self) -> ConnectorSpec:
        literal = sorted(
            key
            for key, value in self.config.items()
            if CREDENTIAL_KEY.search(key) and not CONFIG_PROVIDER_REFERENCE.fullmatch(value.strip())
        )
        if literal:
            raise ValueError(
                f"config {', '.join(literal)} of connector {self.name!r} hold literal values: put the credential in "
                "a Secret and reference it through a Kafka Connect config provider, e.g. "
                "${secrets:NAMESPACE/SECRET:KEY} with Strimzi's KubernetesSecretConfigProvider (docs/ingestion.md)"
            )
        return self

    topic_config_key: str | None = Field(
        default="topic",
        description="Connector config key that names the target topic; kinfer sets it to the pipeline's input "
        "topic unless config sets it. Null to leave the config alone (connectors that name topics otherwise).",
    )


class IngestionSpec(SpecModel):
    """Kafka Connect source connectors that feed the input topic, run through Connect's REST API or Strimzi."""

    connect_url: str | None = Field(default=None, description="Kafka Connect REST URL, e.g. http://connect:8083.")
    use_strimzi: bool = Field(default=False, description="Create Strimzi KafkaConnector resources instead.")
    strimzi_cluster: str | None = Field(default=None, description="Strimzi KafkaConnect name (strimzi.io/cluster).")
    connectors: list[ConnectorSpec] = Field(
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        default_factory=list,
        description="Source connectors the operator keeps in line with this list (connectors removed from it are "
        "deleted). They need connectUrl, or useStrimzi with strimziCluster.",
    )

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
    """The consumer pods' metrics and probe port, and their log level."""

    metrics_port: int = Field(
        default=9400,
        ge=1,
        le=65535,
        description="Port of the consumer pods' HTTP server: /metrics (Prometheus), /healthz and /readyz. The "
        "<pipeline>-metrics Service exposes it.",
    )
    log_level: str = Field(
        default="INFO",
        pattern=r"^(DEBUG|INFO|WARNING|ERROR)$",
        description="Level of the consumer pods' JSON logs: DEBUG, INFO, WARNING or ERROR.",
    )
    quality_metrics: bool = Field(
        default=True,
        description="Prediction-quality metrics for the model's owners: a score histogram per numeric output, "
        "counts per predicted label, and input drift (PSI per feature against the training statistics in "
        "kinfer.json). false drops them (the records, dead-letter and rollout metrics stay); their cost is "
        "measured by make bench.",
    )


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
    batch: list[BatchRunSpec] = Field(
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        default_factory=list,
        description="Batch runs: kinfer score as a Job over a topic range or a file on a volume, with this "
        "pipeline's preprocessing, model and credentials; progress and counts in status.batch. Removing an entry "
        "deletes its Job; changing one runs it again.",
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.RETAIN,
        description="What happens to the topics when the pipeline is deleted (its Kubernetes children always go). "
        "Retain: topics are kept, and no finalizer is added. Delete: a finalizer deletes the mode Create topics, "
        "never Adopt ones; if Kafka stays unreachable it gives up and keeps them.",
    )

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
        batching = self.serving.tfserving.batching
        if (
            self.serving.deploys_tfserving
            and batching.enabled
            and batching.max_batch_size < self.consumer.max_batch_size
        ):
            raise ValueError(
                f"serving.tfserving.batching.maxBatchSize {batching.max_batch_size} is below "
                f"consumer.maxBatchSize {self.consumer.max_batch_size}: TF Serving would refuse the consumers' "
                "larger requests; raise it, or lower consumer.maxBatchSize"
            )
        return self

    @model_validator(mode="after")
    def _batch_topics(self) -> InferencePipelineSpec:
        names = [run.name for run in self.batch]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"batch: names must be unique, repeated: {', '.join(repeated)}")
        roles = {topic.name: role for role, topic in self.topics.roles() if role != "output"}
        for run in self.batch:
            out, source = run.output.topic, run.source.topic_range
            read = (source.topic or self.topics.input.name) if source is not None else None
            if out is not None and (out in roles or out == read):
                what = f"the {roles[out]} topic" if out in roles else "the topic it reads"
                raise ValueError(f"batch run {run.name!r}: output.topic {out!r} is {what}; publish to another topic")
        return self

    def consumer_group(self, pipeline_name: str) -> str:
        return self.consumer.group or f"kinfer-{pipeline_name}"


class ObjectMeta(BaseModel):
    """The part of metadata kinfer reads."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    namespace: str = "default"


def tfserving_service(pipeline_name: str) -> str:
    """The name of the TF Serving Deployment and Service the operator runs for a pipeline."""
    return f"{pipeline_name}-tfserving"


class InferencePipeline(BaseModel):
    """A whole manifest, as applied with kubectl or run with ``kinfer run``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    api_version: str = Field(default=f"{API_GROUP}/{API_VERSION}", alias="apiVersion")
    kind: str = KIND
    metadata: ObjectMeta
    spec: InferencePipelineSpec

    @property
    def tfserving_address(self) -> str:
        """host:port the consumers call in tfserving mode: the external endpoint, or the operator's Service."""
        tfserving = self.spec.serving.tfserving
        if tfserving.endpoint:
            return tfserving.endpoint
        return f"{tfserving_service(self.metadata.name)}.{self.metadata.namespace}.svc:{tfserving.grpc_port}"

    def transactional_id(self, member: str) -> str:
        """The exactly-once producer's ``transactional.id`` for one consumer pod: stable for as long as the pod's
        name is, so that whoever starts a producer with it (the pod restarted in place, or the operator once the pod
        is gone) fences the old producer and aborts its open transaction at once."""
        return f"kinfer-{self.metadata.namespace}-{self.metadata.name}-{member}"

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
