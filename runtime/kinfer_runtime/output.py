"""The output record for one predicted input (team-interfaces §3), built without touching Kafka.

Value: ``{"prediction": {...}, "model": {"name", "version"}, "source": {"topic", "partition", "offset",
"timestamp_ms"}, "timings_ms": {"preprocess", "predict", "end_to_end"}}``; key: the input's key; headers: the
input's own headers followed by the ``kinfer.*`` ones. The loop calls this once per record, so it sticks to one
dict and one ``orjson.dumps``; the headers that are equal for a whole batch are built once per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

Headers = list[tuple[str, bytes]]

MODEL_NAME = "kinfer.model.name"
MODEL_VERSION = "kinfer.model.version"
SOURCE_TOPIC = "kinfer.source.topic"
SOURCE_PARTITION = "kinfer.source.partition"
SOURCE_OFFSET = "kinfer.source.offset"
SOURCE_TIMESTAMP = "kinfer.source.timestamp"
PIPELINE = "kinfer.pipeline"
OWN_HEADERS = frozenset((MODEL_NAME, MODEL_VERSION, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, PIPELINE))


@dataclass(frozen=True)
class BatchContext:
    """What every output of one batch shares."""

    pipeline: str
    model_name: str
    model_version: int
    source_topic: str
    preprocess_ms: float
    predict_ms: float

    def shared_headers(self) -> Headers:
        return [
            (MODEL_NAME, self.model_name.encode()),
            (MODEL_VERSION, str(self.model_version).encode()),
            (SOURCE_TOPIC, self.source_topic.encode()),
            (PIPELINE, self.pipeline.encode()),
        ]


def output_value(
    prediction: dict[str, Any],
    context: BatchContext,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    now_ms: float,
) -> bytes:
    """The JSON value of one output record. ``end_to_end`` is from the input's timestamp to now (produce
    time); it is absent when the input has no timestamp."""
    end_to_end = round(now_ms - timestamp_ms, 3) if timestamp_ms is not None and timestamp_ms > 0 else None
    return orjson.dumps(
        {
            "prediction": prediction,
            "model": {"name": context.model_name, "version": context.model_version},
            "source": {
                "topic": context.source_topic,
                "partition": partition,
                "offset": offset,
                "timestamp_ms": timestamp_ms,
            },
            "timings_ms": {
                "preprocess": context.preprocess_ms,
                "predict": context.predict_ms,
                "end_to_end": end_to_end,
            },
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def output_headers(shared: Headers, input_headers: Headers | None, partition: int, offset: int) -> Headers:
    """The input's headers (minus stale copies of the ones written here), then this output's ``kinfer.*``."""
    headers: Headers = [h for h in input_headers if h[0] not in OWN_HEADERS] if input_headers else []
    headers.extend(shared)
    headers.append((SOURCE_PARTITION, str(partition).encode()))
    headers.append((SOURCE_OFFSET, str(offset).encode()))
    return headers
