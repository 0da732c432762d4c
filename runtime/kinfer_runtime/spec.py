"""The typed model of the InferencePipeline resource: the one contract between user, operator and runtime.

The same classes validate a manifest read by ``kinfer run``, drive the operator's reconcile, and generate the
CRD's OpenAPI schema (``kinfer_operator.crdgen``), so a field added here reaches all three at once. Field names
are snake_case in Python and camelCase on the wire (``maxBatchSize``), as Kubernetes users expect.

Only rules that need nothing but the spec itself live here (shapes, ranges, combinations); rules that need the
cluster (does the Secret exist, is the adopted topic big enough) are the operator's.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

API_GROUP = "kinfer.io"
API_VERSION = "v1alpha1"
KIND = "InferencePipeline"
PLURAL = "inferencepipelines"

# Kubernetes object names (RFC 1123 label), and Kafka topic names (legal characters, at most 249).
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
TOPIC_PATTERN = r"^[a-zA-Z0-9._-]{1,249}$"
HOOK_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"
MODEL_URI_SCHEMES = ("pvc", "s3", "gs", "file")


class SpecModel(BaseModel):
    """Base of every spec class: camelCase aliases, unknown fields rejected (a typo is an error, not a no-op)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", use_enum_values=True)

    def to_wire(self) -> dict[str, Any]:
        """The camelCase dict a manifest would hold, without unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- Kafka connection -----------------------------------------------------------------------------------------


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class SaslSpec(SpecModel):
    """SASL credentials, read from a Secret that is mounted into the pods (never copied elsewhere)."""

    mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512
    secret_name: str = Field(description="Secret in the pipeline's namespace holding the credentials.")
    username_key: str = "username"
    password_key: str = "password"  # noqa: S105 - the name of a key in the Secret, not a password


class TlsSpec(SpecModel):
    """TLS material from a Secret: the CA to trust and, for mutual TLS, a client certificate and key."""

    secret_name: str = Field(description="Secret in the pipeline's namespace holding the TLS material.")
    ca_key: str = "ca.crt"
    cert_key: str | None = Field(default=None, description="Client certificate key in the Secret (mTLS).")
    key_key: str | None = Field(default=None, description="Client private key key in the Secret (mTLS).")


class KafkaSpec(SpecModel):
    """How to reach the Kafka cluster."""

    bootstrap_servers: str = Field(min_length=1, description="Comma-separated host:port list.")
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl: SaslSpec | None = None
    tls: TlsSpec | None = None
    config: dict[str, str] = Field(
        default_factory=dict, description="librdkafka settings passed through to every client."
    )

    @model_validator(mode="after")
    def _security_matches_protocol(self) -> KafkaSpec:
        protocol = SecurityProtocol(self.security_protocol)
        if protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL) and self.sasl is None:
            raise ValueError(f"securityProtocol {protocol.value} needs kafka.sasl (mechanism and secretName)")
        if self.sasl is not None and protocol not in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL):
            raise ValueError("kafka.sasl is set: securityProtocol must be SASL_PLAINTEXT or SASL_SSL")
        secret_keys = [k for k in self.config if "password" in k or k.startswith("sasl.") or "ssl.key" in k]
        if secret_keys:
            raise ValueError(
                f"kafka.config must not carry credentials ({', '.join(sorted(secret_keys))}): "
                "put them in a Secret and reference it from kafka.sasl or kafka.tls"
            )
        return self


# --- Topics ---------------------------------------------------------------------------------------------------


class TopicMode(StrEnum):
    CREATE = "Create"  # kinfer creates the topic if missing and manages partitions and config
    ADOPT = "Adopt"  # the topic must already exist; kinfer checks it but never changes or deletes it


class TopicSpec(SpecModel):
    name: Annotated[str, Field(pattern=TOPIC_PATTERN)]
    partitions: int = Field(default=3, ge=1, le=10000)
    replication_factor: int = Field(default=1, ge=1, le=32)
    config: dict[str, str] = Field(default_factory=dict, description="Topic configs, e.g. retention.ms.")
    mode: TopicMode = TopicMode.CREATE


class TopicsSpec(SpecModel):
    input: TopicSpec
    output: TopicSpec
    dead_letter: TopicSpec

    @model_validator(mode="after")
    def _distinct(self) -> TopicsSpec:
        names = [self.input.name, self.output.name, self.dead_letter.name]
        if len(set(names)) != 3:
            raise ValueError(f"topics.input, output and deadLetter must be three different topics, got {names}")
        return self


# --- Model and preprocessing ----------------------------------------------------------------------------------


class VersionPolicy(StrEnum):
    LATEST = "Latest"  # serve the highest version directory; hot-reload when a newer one appears
    PINNED = "Pinned"  # serve exactly ``version``


class ModelSpec(SpecModel):
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
    uri: str = Field(
        min_length=1,
        description="Where the TF Serving layout <uri>/<version>/saved_model.pb lives: pvc://CLAIM/PATH, "
        "s3://BUCKET/PATH, gs://BUCKET/PATH, or an absolute path inside the image.",
    )
    version_policy: VersionPolicy = VersionPolicy.LATEST
    version: int | None = Field(default=None, ge=1, description="The version to serve when versionPolicy is Pinned.")
    storage_secret: str | None = Field(
        default=None,
        description="Secret whose keys become the environment of the init container that copies an s3:// or gs:// "
        "model (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); none for pvc:// or image paths.",
    )

    @model_validator(mode="after")
    def _uri_and_version(self) -> ModelSpec:
        scheme = uri_scheme(self.uri)
        if scheme not in MODEL_URI_SCHEMES:
            raise ValueError(
                f"model.uri {self.uri!r} has unknown scheme {scheme!r}: use pvc://, s3://, gs:// or an absolute path"
            )
        if VersionPolicy(self.version_policy) is VersionPolicy.PINNED and self.version is None:
            raise ValueError("model.versionPolicy is Pinned: set model.version")
        return self


def uri_scheme(uri: str) -> str:
    """The scheme of a model URI; an absolute path counts as ``file``."""
    if uri.startswith("/"):
        return "file"
    match = re.match(r"^([a-z][a-z0-9+.-]*)://", uri)
    return match.group(1) if match else ""


class FeatureType(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    ARRAY = "array"


class Scaling(StrEnum):
    NONE = "none"
    STANDARD = "standard"  # (x - mean) / std
    MIN_MAX = "minMax"  # (x - min) / (max - min)


class CategoricalEncoding(StrEnum):
    INDEX = "index"  # one column: position in the vocabulary, len(vocabulary) for unknown values
    ONE_HOT = "oneHot"  # len(vocabulary) + 1 columns, the last one for unknown values


class FeatureSpec(SpecModel):
    """One input field of a record and how it becomes columns of the model's input tensor."""

    name: str = Field(min_length=1, description="Field name in the JSON record.")
    type: FeatureType = FeatureType.NUMERIC
    required: bool = Field(default=False, description="A record without the field is dead-lettered.")
    default: float | str | None = Field(default=None, description="Value used when the field is missing.")
    scaling: Scaling = Scaling.NONE
    mean: float | None = None
    std: float | None = Field(default=None, gt=0)
    min: float | None = None
    max: float | None = None
    vocabulary: list[str] | None = None
    encoding: CategoricalEncoding = CategoricalEncoding.INDEX
    shape: list[int] | None = Field(default=None, description="Fixed shape of an array field, e.g. [50, 3].")
    reject_unknown: bool = Field(
        default=False,
        description="Categorical only: dead-letter values outside the vocabulary (reason UnknownCategory) "
        "instead of mapping them to the unknown bucket.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        kind = FeatureType(self.type)
        scaling = Scaling(self.scaling)
        if kind is FeatureType.CATEGORICAL and not self.vocabulary:
            raise ValueError(f"feature {self.name!r} is categorical: give it a vocabulary")
        if kind is FeatureType.ARRAY and not self.shape:
            raise ValueError(f"feature {self.name!r} is an array: give it a shape")
        if self.shape is not None and any(d < 1 for d in self.shape):
            raise ValueError(f"feature {self.name!r}: every dimension of shape must be at least 1")
        if scaling is Scaling.STANDARD and (self.mean is None or self.std is None):
            raise ValueError(f"feature {self.name!r} uses standard scaling: set mean and std")
        if scaling is Scaling.MIN_MAX and (self.min is None or self.max is None or self.max <= self.min):
            raise ValueError(f"feature {self.name!r} uses minMax scaling: set min < max")
        return self


class PreprocessingSpec(SpecModel):
    """How records become tensors. By default the feature spec stored with the model's metadata is used."""

    from_model_metadata: bool = True
    features: list[FeatureSpec] | None = Field(
        default=None, description="Replaces features of the same name from the model's metadata, adds others."
    )
    hook: Annotated[str, Field(pattern=HOOK_PATTERN)] | None = Field(
        default=None, description="module:function called on each decoded batch for what the spec can't say."
    )
    max_record_bytes: int = Field(
        default=1_048_576, ge=1, description="Larger records are dead-lettered unread (reason RecordTooLarge)."
    )


# --- Serving --------------------------------------------------------------------------------------------------


class ServingMode(StrEnum):
    EMBEDDED = "embedded"  # the SavedModel runs inside each consumer pod
    TFSERVING = "tfserving"  # a TensorFlow Serving Deployment, called over gRPC


class ResourcesSpec(SpecModel):
    """Container resources, as in a Pod spec (``nvidia.com/gpu`` allowed in limits)."""

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class TfServingBatchingSpec(SpecModel):
    """TF Serving's server-side batching (``--enable_batching`` with a batching_parameters file)."""

    enabled: bool = True
    max_batch_size: int = Field(default=1024, ge=1)
    batch_timeout_micros: int = Field(default=1000, ge=0)
    num_batch_threads: int = Field(default=2, ge=1)
    max_enqueued_batches: int = Field(default=8, ge=1)


class TfServingSpec(SpecModel):
    image: str = "tensorflow/serving:2.19.0"
    replicas: int = Field(default=1, ge=0)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    grpc_port: int = Field(default=8500, ge=1, le=65535)
    rest_port: int = Field(default=8501, ge=1, le=65535)
    batching: TfServingBatchingSpec = Field(default_factory=TfServingBatchingSpec)
    endpoint: str | None = Field(
        default=None, description="host:port of an existing TF Serving; the operator then deploys none."
    )
    timeout_ms: int = Field(default=2000, ge=1, description="Deadline of one Predict call.")
    max_retries: int = Field(default=5, ge=0)
    rest_fallback: bool = Field(
        default=True, description="Try the REST :predict API on restPort when the gRPC port is unreachable."
    )


class EmbeddedServingSpec(SpecModel):
    """The in-process predictor. One TF thread each suits small pods best (one runtime process per core)."""

    intra_op_threads: int = Field(default=1, ge=0, description="TF intra-op threads; 0 lets TF choose.")
    inter_op_threads: int = Field(default=1, ge=0, description="TF inter-op threads; 0 lets TF choose.")
    reload_check_seconds: float = Field(
        default=5.0, gt=0, description="How often the model directory is checked for a new version (Latest)."
    )


class ServingSpec(SpecModel):
    mode: ServingMode = ServingMode.EMBEDDED
    embedded: EmbeddedServingSpec = Field(default_factory=EmbeddedServingSpec)
    tfserving: TfServingSpec = Field(default_factory=TfServingSpec)


# --- Consumer -------------------------------------------------------------------------------------------------


class Delivery(StrEnum):
    AT_LEAST_ONCE = "atLeastOnce"
    EXACTLY_ONCE = "exactlyOnce"


class OffsetReset(StrEnum):
    EARLIEST = "earliest"
    LATEST = "latest"


class ConsumerSpec(SpecModel):
    replicas: int = Field(default=1, ge=0, description="Ignored while autoscaling is enabled.")
    image: str = "ghcr.io/kinfer/runtime:0.1.0"
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_batch_size: int = Field(default=256, ge=1, le=65536)
    max_batch_wait_ms: int = Field(default=20, ge=0, le=60000)
    delivery: Delivery = Delivery.AT_LEAST_ONCE
    auto_offset_reset: OffsetReset = OffsetReset.EARLIEST
    group: str | None = Field(default=None, description="Consumer group; default kinfer-<pipeline name>.")
    max_attempts: int = Field(
        default=3, ge=1, description="Replays of a dead-lettered record allowed before it is not replayed again."
    )
    termination_grace_seconds: int = Field(default=60, ge=5)


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
        if Delivery(self.consumer.delivery) is Delivery.EXACTLY_ONCE:
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


class SpecError(ValueError):
    """A manifest that can't work, with messages that say what to fix (one per problem)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


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


def describe_validation_error(error: Any, prefix: str = "") -> list[str]:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-after"))
        path = ".".join(p for p in (prefix, location) if p)
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{path}: {message}" if path else message)
    return problems
