"""The dead-letter record for an input that could not be decoded, validated or predicted (its headers: README.md,
"What comes out").

Key and value are the input's bytes, untouched (so ``kinfer replay`` can re-inject them as they were); the
headers carry the input's own headers plus where it came from, why it failed, and how many times it has failed:
``kinfer.attempt`` is 1 for a first failure and n+1 for a replayed record that arrived with attempt n.
"""

from __future__ import annotations

from dataclasses import dataclass

from kinfer_runtime.records.output import (
    MODEL_VERSION,
    PIPELINE,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TIMESTAMP,
    SOURCE_TOPIC,
    Headers,
)

ERROR_CLASS = "kinfer.error.class"
ERROR_MESSAGE = "kinfer.error.message"
ATTEMPT = "kinfer.attempt"
PREDICTION_FAILED = "PredictionFailed"
# Headers this stage writes; stale copies on the input (a replayed record) are replaced, not duplicated.
_OWN_PREFIXES = ("kinfer.error.", "kinfer.source.", ATTEMPT, MODEL_VERSION, PIPELINE)
MAX_MESSAGE_CHARS = 1000


@dataclass(frozen=True)
class Failure:
    """Why one record is dead-lettered: a preprocessing reason (``MalformedJson`` …) or ``PredictionFailed``."""

    reason: str
    message: str


def previous_attempts(headers: Headers | None) -> int:
    """The ``kinfer.attempt`` a record arrived with (0 when it has none or it is not a number)."""
    for key, value in reversed(headers or []):
        if key == ATTEMPT:
            try:
                return max(0, int(value))
            except (TypeError, ValueError):
                return 0
    return 0


def dead_letter_headers(
    input_headers: Headers | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    failure: Failure,
    pipeline: str,
    model_version: int | None,
) -> Headers:
    attempt = previous_attempts(input_headers) + 1
    headers: Headers = [h for h in (input_headers or []) if not h[0].startswith(_OWN_PREFIXES)]
    headers += [
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (SOURCE_TIMESTAMP, str(timestamp_ms if timestamp_ms is not None else -1).encode()),
        (ERROR_CLASS, failure.reason.encode()),
        (ERROR_MESSAGE, failure.message[:MAX_MESSAGE_CHARS].encode("utf-8", "replace")),
        (PIPELINE, pipeline.encode()),
        (MODEL_VERSION, str(model_version if model_version is not None else 0).encode()),
        (ATTEMPT, str(attempt).encode()),
    ]
    return headers
