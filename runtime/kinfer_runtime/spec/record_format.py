"""What a record's value is: a JSON object of named fields (the default), an Avro record, or a tensor given as
bytes, or an encoded image (``spec.preprocessing.format``). docs/models.md, "Avro records", "Tensor records" and
"Image records", has the whole story."""

from __future__ import annotations

import json
from enum import StrEnum

from pydantic import Field, field_validator

from kinfer_runtime.spec.base import SpecModel


class RecordFormat(StrEnum):
    JSON = "json"  # a JSON object; the feature spec turns its fields into the model's inputs
    AVRO = "avro"  # an Avro record (Confluent framing by default); its fields are read as a JSON object's are
    TENSOR = "tensor"  # the model's one input itself: raw little-endian bytes, or a .npy file
    IMAGE = "image"  # an encoded image (PNG, JPEG...), decoded, resized and scaled into the model's one input


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


class AvroFraming(StrEnum):
    CONFLUENT = "confluent"  # Confluent's wire format: a 0 byte, the 4-byte schema id, then the Avro body
    NONE = "none"  # the Avro body alone


class AvroFormatSpec(SpecModel):
    """How the bytes of a ``format: avro`` record are read."""

    writer_schema: str = Field(
        min_length=2,
        description="The Avro schema the records were written with (JSON text of a record schema), e.g. what the "
        "producers registered in a schema registry.",
    )
    framing: AvroFraming = Field(
        default=AvroFraming.CONFLUENT,
        description="confluent: each value is a 0 byte, a 4-byte big-endian schema id, then the Avro body (what "
        "Confluent's serializers write). none: the value is the Avro body alone.",
    )
    schema_id: int | None = Field(
        default=None,
        ge=0,
        description="framing confluent: the registry id of writerSchema; a record framed with another id is "
        "dead-lettered (UnknownSchema) instead of being read with the wrong schema. Unset: any id is read with "
        "writerSchema.",
    )

    @field_validator("writer_schema")
    @classmethod
    def _parses(cls, text: str) -> str:
        from fastavro import parse_schema  # only where a pipeline reads Avro

        try:
            schema = json.loads(text)
            parse_schema(schema)
        except Exception as error:  # JSON and fastavro's SchemaParseException: both mean "fix the schema"
            raise ValueError(f"preprocessing.avro.writerSchema is not a valid Avro schema: {error}") from None
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise ValueError('preprocessing.avro.writerSchema must be a record schema ({"type": "record", ...})')
        return text


class ImageFormatSpec(SpecModel):
    """How a ``format: image`` record becomes the model's input (its shape [height, width, channels] says the
    size, and 1 or 3 channels: grayscale or RGB)."""

    resize: bool = Field(
        default=True,
        description="true: an image of another size is resized (bilinear) to the model input's; false: it is "
        "dead-lettered (WrongShape).",
    )
    scale: float = Field(
        default=1 / 255,
        gt=0,
        description="Each 8-bit channel value is multiplied by this (the default maps 0-255 to 0-1).",
    )
    field: str | None = Field(
        default=None,
        min_length=1,
        description="The record is a JSON object and this field holds the image, base64-encoded (standard or "
        "URL-safe alphabet). Not set: the record's value is the image's bytes.",
    )
    max_pixels: int = Field(
        default=16_777_216,
        ge=1,
        description="An image that declares more pixels than this is dead-lettered before it is decoded "
        "(ImageDecodeError), so a small compressed record cannot expand into gigabytes.",
    )
