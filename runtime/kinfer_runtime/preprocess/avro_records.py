"""Avro records (``spec.preprocessing.format: avro``): each value is decoded with the writer schema of the spec
into the same object a JSON record gives, and from there the feature spec, the hook, the drift window and the
bad-record reasons are the JSON path's (:class:`~kinfer_runtime.preprocess.preprocessor.Preprocessor`).

With Confluent framing (the default) a value is a 0 byte, the 4-byte big-endian schema id, then the Avro body.
What cannot be read is left out with a stable reason: ``WrongFraming`` (no 0 byte, or shorter than the frame),
``UnknownSchema`` (framed with another id than ``avro.schemaId``), ``MalformedAvro`` (a body the schema does not
read, or bytes left over after it), as well as ``EmptyValue`` and ``RecordTooLarge``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

from fastavro import parse_schema, schemaless_reader

from kinfer_runtime.preprocess.columns import FailureReason
from kinfer_runtime.preprocess.preprocessor import Preprocessor, load_hook, merge_features
from kinfer_runtime.preprocess.record_reading import RecordFailure, read_each
from kinfer_runtime.spec import AvroFormatSpec, AvroFraming, InferencePipelineSpec
from kinfer_runtime.spec.model_metadata import ModelMetadata

FRAME_BYTES = 5  # Confluent: magic byte 0 + 4-byte schema id


class AvroPreprocessor(Preprocessor):
    """A :class:`Preprocessor` whose records are Avro instead of JSON."""

    def __init__(self, *args: Any, avro: AvroFormatSpec, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schema = parse_schema(json.loads(avro.writer_schema))
        self.framed = avro.framing is AvroFraming.CONFLUENT
        self.schema_id = avro.schema_id

    @classmethod
    def from_spec(cls, spec: InferencePipelineSpec, metadata: ModelMetadata) -> AvroPreprocessor:
        settings = spec.preprocessing
        assert settings.avro is not None  # the spec requires it with format avro
        base = metadata.features if settings.from_model_metadata else []
        features = merge_features(base, settings.features or [])
        mapping = metadata.feature_inputs if settings.from_model_metadata else {}
        hook = load_hook(settings.hook) if settings.hook else None
        return cls(features, metadata.inputs, mapping, max_record_bytes=settings.max_record_bytes, hook=hook,
                   avro=settings.avro)  # fmt: skip

    def _decode_batch(
        self, values: Sequence[bytes | str | None]
    ) -> tuple[list[dict[str, Any]], list[int], dict[int, RecordFailure]]:
        return read_each(values, self._read, self.max_record_bytes)

    def _read(self, index: int, data: bytes) -> tuple[dict[str, Any], RecordFailure | None]:
        empty: dict[str, Any] = {}
        body = memoryview(data)
        if self.framed:
            if len(data) < FRAME_BYTES or data[0] != 0:
                return empty, RecordFailure(index, FailureReason.WRONG_FRAMING,
                                            "not in Confluent's wire format (a 0 byte, a 4-byte schema id, the Avro "
                                            f"body); starts with {bytes(data[:5])!r}")  # fmt: skip
            schema_id = int.from_bytes(data[1:FRAME_BYTES], "big")
            if self.schema_id is not None and schema_id != self.schema_id:
                return empty, RecordFailure(index, FailureReason.UNKNOWN_SCHEMA,
                                            f"written with schema id {schema_id}; this pipeline reads schema id "
                                            f"{self.schema_id} (preprocessing.avro.schemaId)")  # fmt: skip
            body = body[FRAME_BYTES:]
        stream = io.BytesIO(body)
        try:
            document = schemaless_reader(stream, self.schema, None)
        except Exception as error:  # fastavro raises EOFError, ValueError, UnicodeDecodeError... on bad bodies
            return empty, RecordFailure(index, FailureReason.MALFORMED_AVRO,
                                        f"the writer schema does not read this body: {type(error).__name__}: "
                                        f"{error}")  # fmt: skip
        if stream.tell() != len(body):
            return empty, RecordFailure(index, FailureReason.MALFORMED_AVRO,
                                        f"{len(body) - stream.tell()} bytes left after the record: written with "
                                        "another schema?")  # fmt: skip
        if not isinstance(document, dict):
            return empty, RecordFailure(index, FailureReason.NOT_AN_OBJECT, "the Avro value is not a record")
        return document, None
