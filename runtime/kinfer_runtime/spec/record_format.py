"""What a record's value is: a JSON object of named fields (the default), or a tensor given as bytes
(``spec.preprocessing.format``). docs/ingestion.md, "Record formats", has the whole story."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from kinfer_runtime.spec.base import SpecModel


class RecordFormat(StrEnum):
    JSON = "json"  # a JSON object; the feature spec turns its fields into the model's inputs
    TENSOR = "tensor"  # the model's one input itself: raw little-endian bytes, or a .npy file


class TensorDtype(StrEnum):
    FLOAT16 = "float16"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    UINT8 = "uint8"


class TensorFormatSpec(SpecModel):
    """How the bytes of a ``format: tensor`` record are read; each field defaults to the model input's own."""

    dtype: TensorDtype | None = Field(
        default=None,
        description="Element type of raw records (little-endian), converted to the model input's dtype. Default: "
        "the model input's dtype. A .npy record must carry exactly this dtype.",
    )
    shape: list[int] | None = Field(
        default=None,
        description="Shape of one record, without the batch dimension; it must hold as many elements as one row "
        "of the model input. Default: the model input's shape.",
        json_schema_extra={"items": {"minimum": 1}},
    )
