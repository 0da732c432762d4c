"""The typed model of the InferencePipeline resource: the one contract between user, operator and runtime.

The same classes validate a manifest read by ``kinfer run``, drive the operator's reconcile, and generate the
CRD's OpenAPI schema (``kinfer_operator.crd.generate``), so a field added here reaches all three at once. Field names
are snake_case in Python and camelCase on the wire (``maxBatchSize``), as Kubernetes users expect.

Only rules that need nothing but the spec itself live here (shapes, ranges, combinations); rules that need the
cluster (does the Secret exist, is the adopted topic big enough) are the operator's.

The model is split by concern: :mod:`.base` (shared base, names, errors), :mod:`.kafka` (cluster, topics,
consumer), :mod:`.model` (model, features, serving) and :mod:`.pipeline` (the whole resource); import from here.
"""

from kinfer_runtime.spec.base import (
    API_GROUP,
    API_VERSION,
    HOOK_PATTERN,
    KIND,
    MODEL_URI_SCHEMES,
    NAME_PATTERN,
    PLURAL,
    TOPIC_PATTERN,
    ResourcesSpec,
    SpecError,
    SpecModel,
    describe_validation_error,
)
from kinfer_runtime.spec.kafka import (
    ConsumerSpec,
    Delivery,
    KafkaSpec,
    OffsetReset,
    SaslMechanism,
    SaslSpec,
    SecurityProtocol,
    TlsSpec,
    TopicMode,
    TopicSpec,
    TopicsSpec,
)
from kinfer_runtime.spec.model import (
    CategoricalEncoding,
    EmbeddedServingSpec,
    FeatureSpec,
    FeatureType,
    ModelSpec,
    PreprocessingSpec,
    Scaling,
    ServingMode,
    ServingSpec,
    TfServingBatchingSpec,
    TfServingSpec,
    VersionPolicy,
    uri_scheme,
)
from kinfer_runtime.spec.pipeline import (
    AutoscalingProvider,
    AutoscalingSpec,
    ConnectorSpec,
    DeletionPolicy,
    InferencePipeline,
    InferencePipelineSpec,
    IngestionSpec,
    MonitoringSpec,
    ObjectMeta,
    parse_pipeline,
    parse_spec,
    tfserving_service,
)
from kinfer_runtime.spec.record_format import AvroFormatSpec, AvroFraming, RecordFormat, TensorDtype, TensorFormatSpec
from kinfer_runtime.spec.rollout import RolloutMode, RolloutSpec

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "HOOK_PATTERN",
    "KIND",
    "MODEL_URI_SCHEMES",
    "NAME_PATTERN",
    "PLURAL",
    "TOPIC_PATTERN",
    "AutoscalingProvider",
    "AutoscalingSpec",
    "AvroFormatSpec",
    "AvroFraming",
    "CategoricalEncoding",
    "ConnectorSpec",
    "ConsumerSpec",
    "DeletionPolicy",
    "Delivery",
    "EmbeddedServingSpec",
    "FeatureSpec",
    "FeatureType",
    "InferencePipeline",
    "InferencePipelineSpec",
    "IngestionSpec",
    "KafkaSpec",
    "ModelSpec",
    "MonitoringSpec",
    "ObjectMeta",
    "OffsetReset",
    "PreprocessingSpec",
    "RecordFormat",
    "ResourcesSpec",
    "RolloutMode",
    "RolloutSpec",
    "SaslMechanism",
    "SaslSpec",
    "Scaling",
    "SecurityProtocol",
    "ServingMode",
    "ServingSpec",
    "SpecError",
    "SpecModel",
    "TensorDtype",
    "TensorFormatSpec",
    "TfServingBatchingSpec",
    "TfServingSpec",
    "TlsSpec",
    "TopicMode",
    "TopicSpec",
    "TopicsSpec",
    "VersionPolicy",
    "describe_validation_error",
    "parse_pipeline",
    "parse_spec",
    "tfserving_service",
    "uri_scheme",
]
