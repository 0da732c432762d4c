"""The records a ``kinfer score`` run reads, as the live pipeline would consume them: a file's (as ``kinfer produce``
would send them) or a topic range's (value, key and headers as they are)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kinfer_runtime.spec import AvroFraming, InferencePipeline
from kinfer_runtime.tools.sources import read_records


@dataclass(frozen=True)
class ScoreInput:
    """One record to score: its value bytes, exactly as the live pipeline would consume them, and its origin."""

    value: bytes | None
    source: dict[str, Any]
    key: bytes | None = None
    headers: list[tuple[str, bytes]] | None = None


def file_inputs(path: str, fmt: str, pipeline: InferencePipeline | None = None) -> Iterator[ScoreInput]:
    """Records of a file as ``kinfer produce`` would send them: JSONL lines verbatim, CSV and Parquet rows as
    JSON, Avro records framed as the pipeline reads them."""
    avro = pipeline.spec.preprocessing.avro if pipeline is not None else None
    framed = avro is not None and avro.framing is AvroFraming.CONFLUENT
    schema_id = (avro.schema_id or 0) if avro is not None and framed else None
    image = pipeline.spec.preprocessing.image if pipeline is not None else None
    field = image.field if image is not None else None
    for number, record in enumerate(read_records(path, fmt, schema_id=schema_id, image_field=field), start=1):
        yield ScoreInput(record.value, {"file": path, "record": number})


def topic_inputs(messages: Iterable[Any]) -> Iterator[ScoreInput]:
    for message in messages:
        timestamp_type, timestamp_ms = message.timestamp()
        source = {
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "timestamp_ms": timestamp_ms if timestamp_type and timestamp_ms > 0 else None,
        }
        yield ScoreInput(message.value(), source, message.key(), message.headers())
