"""The model side of the spec: where the SavedModel lives and which version to run, the feature spec that turns a
record into tensors, and how the model is served (in the consumer, or by TensorFlow Serving)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from kinfer_runtime.spec.base import (
    HOOK_PATTERN,
    MODEL_URI_SCHEMES,
    NAME_PATTERN,
    PlacementSpec,
    ResourcesSpec,
    SpecModel,
)
from kinfer_runtime.spec.record_format import AvroFormatSpec, ImageFormatSpec, RecordFormat, TensorFormatSpec
from kinfer_runtime.spec.rollout import RolloutSpec

# --- Model and preprocessing ----------------------------------------------------------------------------------


class VersionPolicy(StrEnum):
    LATEST = "Latest"  # serve the highest version directory; hot-reload when a newer one appears
    PINNED = "Pinned"  # serve exactly ``version``


class ModelSpec(SpecModel):
    """The SavedModel to serve: where its versions live and which one runs."""

    name: Annotated[
        str,
        Field(
            pattern=NAME_PATTERN,
            max_length=63,
            description="Model name: the name TF Serving serves it under, and model.name in every output record "
            "(and its kinfer.model.name header).",
        ),
    ]
    uri: str = Field(
        min_length=1,
        description="Where the TF Serving layout <uri>/<version>/saved_model.pb lives: pvc://CLAIM/PATH, "
        "s3://BUCKET/PATH, gs://BUCKET/PATH, or an absolute path inside the image.",
    )
    version_policy: VersionPolicy = Field(
        default=VersionPolicy.LATEST,
        description="Latest: serve the highest version directory under uri, and switch to a newer one when it "
        "appears, without a restart. Pinned: serve exactly version, which must then be set.",
    )
    version: int | None = Field(default=None, ge=1, description="The version to serve when versionPolicy is Pinned.")
    storage_secret: str | None = Field(
        default=None,
        description="Secret whose keys become the environment of the init container that copies an s3:// or gs:// "
        "model (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); none for pvc:// or image paths.",
    )

    rollout: RolloutSpec | None = Field(
        default=None,
        description="A candidate version tried beside the live one (canary or shadow); needs versionPolicy Pinned "
        "(model.version is the live version). Promote: set version to the candidate and remove rollout; roll back: "
        "remove rollout.",
    )

    @model_validator(mode="after")
    def _uri_and_version(self) -> ModelSpec:
        scheme = uri_scheme(self.uri)
        if scheme not in MODEL_URI_SCHEMES:
            raise ValueError(
                f"model.uri {self.uri!r} has unknown scheme {scheme!r}: use pvc://, s3://, gs:// or an absolute path"
            )
        if self.version_policy is VersionPolicy.PINNED and self.version is None:
            raise ValueError("model.versionPolicy is Pinned: set model.version")
        if self.rollout is not None and self.version_policy is not VersionPolicy.PINNED:
            raise ValueError(
                "model.rollout needs model.versionPolicy Pinned and model.version set to the live version (with "
                "Latest, a newer candidate directory would go live for all traffic at once)"
            )
        if self.rollout is not None and self.rollout.candidate_version == self.version:
            raise ValueError(
                f"model.rollout.candidateVersion is the live version {self.version}: name another version, or "
                "remove rollout to serve this one alone"
            )
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
    type: FeatureType = Field(
        default=FeatureType.NUMERIC,
        description="numeric: a number, one column. categorical: a string or integer from vocabulary, one or more "
        "columns by encoding. array: a nested list of numbers of exactly shape, one column per element.",
    )
    required: bool = Field(default=False, description="A record without the field is dead-lettered.")
    default: float | str | None = Field(default=None, description="Value used when the field is missing.")
    scaling: Scaling = Field(
        default=Scaling.NONE,
        description="Numeric and array features (element-wise): none keeps the value; standard gives "
        "(x - mean) / std and needs mean and std; minMax gives (x - min) / (max - min) and needs min < max.",
    )
    mean: float | None = Field(default=None, description="Mean subtracted by standard scaling.")
    std: float | None = Field(
        default=None, gt=0, description="Standard deviation that standard scaling divides by; above 0."
    )
    min: float | None = Field(default=None, description="Value that minMax scaling maps to 0.")
    max: float | None = Field(default=None, description="Value that minMax scaling maps to 1; above min.")
    vocabulary: list[str] | None = Field(
        default=None,
        description="Categorical only, and required there: the known categories in column order. Other values go "
        "to the unknown bucket, or are dead-lettered with rejectUnknown.",
    )
    encoding: CategoricalEncoding = Field(
        default=CategoricalEncoding.INDEX,
        description="Categorical only. index: one column, the value's position in vocabulary (len(vocabulary) "
        "when unknown). oneHot: len(vocabulary) + 1 columns, the last one for unknown values.",
    )
    shape: list[int] | None = Field(default=None, description="Fixed shape of an array field, e.g. [50, 3].")
    reject_unknown: bool = Field(
        default=False,
        description="Categorical only: dead-letter values outside the vocabulary (reason UnknownCategory) "
        "instead of mapping them to the unknown bucket.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        kind = self.type
        scaling = self.scaling
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

    from_model_metadata: bool = Field(
        default=True,
        description="Start from the features and input mapping in the model's kinfer.json. False ignores them: "
        "features alone then fill the model's single input, in order.",
    )
    features: list[FeatureSpec] | None = Field(
        default=None,
        description="Replaces features of the same name from the model's metadata, adds others. Names are unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    hook: Annotated[str, Field(pattern=HOOK_PATTERN)] | None = Field(
        default=None, description="module:function called on each decoded batch for what the spec can't say."
    )
    max_record_bytes: int = Field(
        default=1_048_576, ge=1, description="Larger records are dead-lettered unread (reason RecordTooLarge)."
    )
    format: RecordFormat = Field(
        default=RecordFormat.JSON,
        description="json: each record is a JSON object whose fields the features read. avro: each record is an "
        "Avro record (see avro), whose fields the features read the same way. image: each record is an encoded "
        "image (PNG, JPEG...) decoded, resized and scaled into the model's only input. tensor: each record is the "
        "model's only input for one example, as raw little-endian bytes (dtype and shape from tensor, by default "
        "the model input's) or as a .npy file; features and hook do not apply.",
    )
    tensor: TensorFormatSpec | None = Field(
        default=None, description="format tensor: the dtype and shape of raw records, when not the model input's."
    )
    avro: AvroFormatSpec | None = Field(
        default=None, description="format avro, and required there: the writer schema and the framing of records."
    )
    image: ImageFormatSpec | None = Field(
        default=None, description="format image: resizing and scaling, when not the defaults."
    )

    @model_validator(mode="after")
    def _format(self) -> PreprocessingSpec:
        if self.format in (RecordFormat.TENSOR, RecordFormat.IMAGE) and (self.features or self.hook):
            raise ValueError(
                f"preprocessing.format is {self.format.value}: a record is the model input itself, so "
                "preprocessing.features and preprocessing.hook do not apply; remove them or use format json"
            )
        if self.image is not None and self.format is not RecordFormat.IMAGE:
            raise ValueError("preprocessing.image is set: it needs preprocessing.format image")
        if self.tensor is not None and self.format is not RecordFormat.TENSOR:
            raise ValueError("preprocessing.tensor is set: it needs preprocessing.format tensor")
        if (self.avro is not None) != (self.format is RecordFormat.AVRO):
            raise ValueError(
                "preprocessing.format avro and preprocessing.avro (its writerSchema) go together: set both"
            )
        return self

    @model_validator(mode="after")
    def _unique_features(self) -> PreprocessingSpec:
        names = [feature.name for feature in self.features or []]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"preprocessing.features: names must be unique, repeated: {', '.join(repeated)}")
        return self


# --- Serving --------------------------------------------------------------------------------------------------


class ServingMode(StrEnum):
    EMBEDDED = "embedded"  # the SavedModel runs inside each consumer pod
    TFSERVING = "tfserving"  # a TensorFlow Serving Deployment, called over gRPC


class TfServingBatchingSpec(SpecModel):
    """TF Serving's server-side batching (``--enable_batching`` with a batching_parameters file)."""

    enabled: bool = Field(
        default=True,
        description="Run TF Serving with server-side batching and the parameters below; false runs each request "
        "on its own.",
    )
    max_batch_size: int = Field(
        default=1024,
        ge=1,
        description="Most rows in one server-side batch. TF Serving refuses a request with more rows than this, "
        "so keep it at least consumer.maxBatchSize.",
    )
    batch_timeout_micros: int = Field(
        default=1000,
        ge=0,
        description="Longest TF Serving waits for a batch to fill before running it (microseconds); 0 runs it at once.",
    )
    num_batch_threads: int = Field(
        default=2, ge=1, description="Threads that run batches, so the number of batches processed in parallel."
    )
    max_enqueued_batches: int = Field(
        default=8,
        ge=1,
        description="Batches that may wait in TF Serving's queue; when it is full, requests are refused as "
        "unavailable and the consumers retry.",
    )


class TfServingSpec(SpecModel):
    """TensorFlow Serving for serving.mode tfserving: the Deployment the operator runs, how consumers call it."""

    image: str = Field(
        default="tensorflow/serving:2.19.0", description="Container image of the TF Serving pods the operator runs."
    )
    replicas: int = Field(
        default=1,
        ge=0,
        description="Number of TF Serving pods. With autoscaling enabled (provider hpa) it is the lower bound "
        "(at least 1) of TF Serving's own HPA.",
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec,
        description="Requests and limits of each TF Serving pod's container, as in a Pod spec; a GPU goes in "
        "limits as nvidia.com/gpu.",
    )
    placement: PlacementSpec = Field(
        default_factory=PlacementSpec,
        description="Which nodes the TF Serving pods may run on (e.g. a GPU node pool): nodeSelector, tolerations.",
    )
    grpc_port: int = Field(
        default=8500,
        ge=1,
        le=65535,
        description="Port TF Serving serves gRPC on, in its pods and Service; the consumers call it there. Unused "
        "with endpoint, which names its own port.",
    )
    rest_port: int = Field(
        default=8501,
        ge=1,
        le=65535,
        description="Port of TF Serving's REST API: readiness checks, Prometheus metrics, and the consumers' REST "
        "fallback (also on the host of endpoint).",
    )
    batching: TfServingBatchingSpec = Field(default_factory=TfServingBatchingSpec)
    endpoint: str | None = Field(
        default=None, description="host:port of an existing TF Serving; the operator then deploys none."
    )
    timeout_ms: int = Field(default=2000, ge=1, description="Deadline of one Predict call.")
    max_retries: int = Field(
        default=5,
        ge=0,
        description="Retries of a Predict call after a transient error (e.g. UNAVAILABLE, DEADLINE_EXCEEDED), with "
        "jittered backoff. After the last, TF Serving counts as unavailable: the consumers hold the batch and "
        "pause their partitions until it answers.",
    )
    rest_fallback: bool = Field(
        default=True, description="Try the REST :predict API on restPort when the gRPC port is unreachable."
    )

    @model_validator(mode="after")
    def _ports_differ(self) -> TfServingSpec:
        if self.grpc_port == self.rest_port:
            raise ValueError(f"grpcPort and restPort are both {self.grpc_port}: TF Serving needs two ports")
        return self


class EmbeddedServingSpec(SpecModel):
    """The in-process predictor. One TF thread each suits small pods best (one runtime process per core)."""

    intra_op_threads: int = Field(default=1, ge=0, description="TF intra-op threads; 0 lets TF choose.")
    inter_op_threads: int = Field(default=1, ge=0, description="TF inter-op threads; 0 lets TF choose.")
    reload_check_seconds: float = Field(
        default=5.0, gt=0, description="How often the model directory is checked for a new version (Latest)."
    )


class ServingSpec(SpecModel):
    """How the model runs: inside each consumer pod, or in TensorFlow Serving called over gRPC."""

    mode: ServingMode = Field(
        default=ServingMode.EMBEDDED,
        description="embedded: the SavedModel runs inside each consumer pod. tfserving: the consumers call "
        "TensorFlow Serving over gRPC; the operator deploys it from serving.tfserving unless tfserving.endpoint "
        "names an existing server.",
    )
    embedded: EmbeddedServingSpec = Field(default_factory=EmbeddedServingSpec)
    tfserving: TfServingSpec = Field(default_factory=TfServingSpec)

    @property
    def deploys_tfserving(self) -> bool:
        """Whether the operator runs TF Serving for this pipeline (tfserving mode without an external endpoint)."""
        return self.mode is ServingMode.TFSERVING and not self.tfserving.endpoint
