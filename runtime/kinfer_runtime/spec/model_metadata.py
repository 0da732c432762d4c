"""What kinfer knows about a model version: the ``kinfer.json`` file stored beside its SavedModel.

A model version directory in the TF Serving layout (``<model>/<version>/saved_model.pb``, ``variables/``) carries
``kinfer.json``: the serving signature's inputs and outputs, the feature spec that turns a JSON record into those
inputs, and how outputs become the ``prediction`` object of an output record. Reading it needs no TensorFlow, so
the runtime can validate a pipeline before paying for the TF import. The format is documented in docs/models.md.
"""

from __future__ import annotations

import math
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from kinfer_runtime.spec import CategoricalEncoding, FeatureSpec, FeatureType

METADATA_FILE = "kinfer.json"
SUPPORTED_DTYPES = ("float32", "float64", "int32", "int64")


class TensorInfo(BaseModel):
    """One tensor of the serving signature; ``shape`` starts with the batch dimension, which must be null."""

    model_config = ConfigDict(extra="forbid")
    dtype: str = "float32"
    shape: list[int | None]
    description: str = ""

    @model_validator(mode="after")
    def _batch_dimension(self) -> TensorInfo:
        if self.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {', '.join(SUPPORTED_DTYPES)}")
        if not self.shape or self.shape[0] is not None:
            raise ValueError(f"shape {self.shape} must start with a null (any-size) batch dimension")
        if any(d is None or d < 1 for d in self.shape[1:]):
            raise ValueError(f"shape {self.shape}: every dimension after the batch one must be fixed and >= 1")
        return self

    @property
    def row_shape(self) -> tuple[int, ...]:
        """The shape of one example (the tensor's shape without the batch dimension)."""
        return tuple(int(d) for d in self.shape[1:] if d is not None)


class LabelsSpec(BaseModel):
    """Turns a score output into a class name: by threshold (binary) or by arg-max (one column per class)."""

    model_config = ConfigDict(extra="forbid")
    output: str
    names: list[str] = Field(min_length=2)
    threshold: float | None = Field(default=None, description="Binary: names[1] when score >= threshold.")
    field: str = Field(default="label", description="Name of the field added to the prediction.")


class StatisticsKind(StrEnum):
    NUMERIC = "numeric"  # one column, bucketed at ``edges``
    CATEGORICAL = "categorical"  # one-hot columns, or one column of vocabulary indices


class FeatureStatistics(BaseModel):
    """The training distribution of one feature's encoded column(s)."""

    model_config = ConfigDict(extra="forbid")
    kind: StatisticsKind
    edges: list[float] = Field(default_factory=list, description="numeric: the bucket boundaries (deciles)")
    shares: list[float] = Field(min_length=2, description="Share of the training records in each bucket.")

    @model_validator(mode="after")
    def _consistent(self) -> FeatureStatistics:
        if self.kind is StatisticsKind.NUMERIC and len(self.edges) != len(self.shares) - 1:
            raise ValueError(f"{len(self.shares)} buckets need {len(self.shares) - 1} edges, not {len(self.edges)}")
        if abs(sum(self.shares) - 1.0) > 1e-3 or min(self.shares) < 0:
            raise ValueError(f"shares must be >= 0 and sum to 1, not {sum(self.shares):.4f}")
        return self


class ModelMetadata(BaseModel):
    """The parsed ``kinfer.json`` of one model version."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: int = Field(ge=1)
    signature: str = "serving_default"
    inputs: dict[str, TensorInfo] = Field(min_length=1)
    features: list[FeatureSpec] = Field(default_factory=list)
    feature_inputs: dict[str, list[str]] = Field(
        default_factory=dict, description="Model input name -> the features whose columns fill it, in order."
    )
    outputs: dict[str, TensorInfo] = Field(min_length=1)
    output_schema: dict[str, Any] = Field(default_factory=dict)
    labels: LabelsSpec | None = None
    description: str = ""
    training: dict[str, Any] = Field(default_factory=dict, description="Free-form provenance (seed, metrics).")
    training_statistics: dict[str, FeatureStatistics] = Field(
        default_factory=dict,
        description="Feature name -> its encoded columns' distribution over the training set: what the runtime's "
        "drift metric compares recent records with (kinfer_runtime.quality.drift).",
    )

    @model_validator(mode="after")
    def _references(self) -> ModelMetadata:
        for input_name, feature_names in self.feature_inputs.items():
            if input_name not in self.inputs:
                raise ValueError(f"feature_inputs names {input_name!r}, which is not one of the inputs")
            if not feature_names:
                raise ValueError(f"feature_inputs[{input_name!r}] is empty")
        unknown = set(self.training_statistics) - {feature.name for feature in self.features}
        if unknown:
            raise ValueError(f"training_statistics names {sorted(unknown)}, which are not features")
        if self.labels is not None and self.labels.output not in self.outputs:
            raise ValueError(f"labels.output {self.labels.output!r} is not one of the outputs")
        return self

    def to_json(self) -> bytes:
        """The ``kinfer.json`` bytes (features in their camelCase wire form)."""
        document = self.model_dump(mode="json", exclude={"features"})
        document["features"] = [feature.to_wire() for feature in self.features]
        return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


class ModelMetadataError(ValueError):
    """A version directory without usable metadata (missing, unreadable or inconsistent ``kinfer.json``)."""


def load_model_metadata(version_dir: Path | str) -> ModelMetadata:
    """Read ``<version_dir>/kinfer.json``. A numeric directory name is the version (as TF Serving sees it)."""
    version_dir = Path(version_dir)
    path = version_dir / METADATA_FILE
    try:
        document = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ModelMetadataError(f"{path} is missing: every model version needs kinfer.json (docs/models.md)") from None
    except orjson.JSONDecodeError as error:
        raise ModelMetadataError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ModelMetadataError(f"{path} must hold a JSON object")
    if version_dir.name.isdigit():
        # The directory decides, as for TF Serving: a copy of version 1 into 3/ is version 3.
        document["version"] = int(version_dir.name)
    try:
        return ModelMetadata.model_validate(document)
    except ValueError as error:
        raise ModelMetadataError(f"{path}: {error}") from None


def list_versions(model_dir: Path | str, marker: str = "saved_model.pb") -> list[int]:
    """Complete version directories under a model directory (those holding ``marker``), ascending."""
    versions = []
    try:
        entries = list(os.scandir(model_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name.isdigit() and entry.is_dir() and os.path.exists(os.path.join(entry.path, marker)):
            versions.append(int(entry.name))
    return sorted(versions)


def pick_version(model_dir: Path | str, pinned: int | None, marker: str = "saved_model.pb") -> int | None:
    """The version to serve: ``pinned`` if given and present, else the highest complete one; None if none."""
    versions = list_versions(model_dir, marker)
    if pinned is not None:
        return pinned if pinned in versions else None
    return versions[-1] if versions else None


def columns_of(feature: FeatureSpec) -> int:
    """How many columns of a model input one feature fills."""
    kind = feature.type
    if kind is FeatureType.CATEGORICAL:
        one_hot = feature.encoding is CategoricalEncoding.ONE_HOT
        return len(feature.vocabulary or []) + 1 if one_hot else 1
    if kind is FeatureType.ARRAY:
        return math.prod(feature.shape or [1])
    return 1


def resolve_model_dir(uri: str, model_root: Path | str | None = None) -> Path:
    """Where a model URI's files are on this machine: ``pvc://CLAIM/PATH``, ``s3://B/PATH`` and ``gs://B/PATH``
    are synced (or mounted) to ``$KINFER_MODEL_ROOT/PATH``; an absolute path is used as it is."""
    if uri.startswith("/"):
        return Path(uri)
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    root = Path(model_root or os.environ.get("KINFER_MODEL_ROOT", "/mnt/models"))
    _, _, rest = uri.partition("://")
    _, _, path = rest.partition("/")  # drop the claim or bucket
    return root / path if path else root
