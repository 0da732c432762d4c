"""The dead-letter record for an input that could not be decoded, validated or predicted (its headers: README.md,
"What comes out").

Key and value are the input's bytes, untouched (so ``kinfer replay`` can re-inject them as they were); the
headers carry the input's own headers plus where it came from, why it failed, and how many times it has failed:
``kinfer.attempt`` is 1 for a first failure and n+1 for a replayed record that arrived with attempt n.

A dead letter Kafka refuses as too large (the producer's ``message.max.bytes``, the topic's
``max.message.bytes``) is produced again smaller (:func:`smaller_dead_letter`, docs/runtime.md "Delivery
failures"): first with its value cut to :data:`TRUNCATED_VALUE_BYTES`, then with its value cut to
:data:`MINIMAL_VALUE_BYTES` and the input's own headers dropped. Either form says what was cut
(``kinfer.truncated``) and carries the original value's size and SHA-256, so the record is still accounted for and
the full value can be matched with the input, which ``kinfer.source.*`` locate.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass
from typing import Any

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
OUTPUT_REFUSED = "OutputRefused"  # Kafka refused the input's output record (too large, invalid)
ORIGINAL_SIZE = "kinfer.original.size"
ORIGINAL_SHA256 = "kinfer.original.sha256"
TRUNCATED = "kinfer.truncated"
CUT_VALUE, CUT_VALUE_AND_HEADERS = b"value", b"value,headers"
TRUNCATED_VALUE_BYTES = 65_536
MINIMAL_VALUE_BYTES = 1_024
# Headers this stage writes; stale copies on the input (a replayed record) are replaced, not duplicated.
_OWN_PREFIXES = ("kinfer.error.", "kinfer.source.", "kinfer.original.", TRUNCATED, ATTEMPT, MODEL_VERSION, PIPELINE)
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


def smaller_dead_letter(value: bytes | None, headers: Headers) -> tuple[bytes | None, Headers] | None:
    """The next smaller form of a dead letter Kafka refused as too large, or None when it is already the smallest.

    First the value is cut to its first :data:`TRUNCATED_VALUE_BYTES` bytes (``kinfer.truncated: value``); when
    that is refused too, or the value was no larger than that to begin with (so its headers or key are what is too
    large), it is cut to :data:`MINIMAL_VALUE_BYTES` and only the ``kinfer.*`` headers are kept
    (``kinfer.truncated: value,headers``). Both carry ``kinfer.original.size`` and ``kinfer.original.sha256`` of
    the value the input had (a null value counts as empty and stays null)."""
    cut = next((v for k, v in headers if k == TRUNCATED), None)
    if cut is not None and bytes(cut) == CUT_VALUE_AND_HEADERS:
        return None
    if cut is None:
        original = value or b""
        headers = [*headers, (ORIGINAL_SIZE, str(len(original)).encode()),
                   (ORIGINAL_SHA256, hashlib.sha256(original).hexdigest().encode())]  # fmt: skip
        if len(original) > TRUNCATED_VALUE_BYTES:
            return original[:TRUNCATED_VALUE_BYTES], [*headers, (TRUNCATED, CUT_VALUE)]
    own = [(k, v) for k, v in headers if k.startswith("kinfer.") and k != TRUNCATED]
    return (None if value is None else value[:MINIMAL_VALUE_BYTES]), [*own, (TRUNCATED, CUT_VALUE_AND_HEADERS)]


def dead_letter_summary(messages: list[Any], failures: list[tuple[int, Failure]]) -> dict[str, Any]:
    """Log fields for one batch's dead letters (``failures``: (message index, Failure), sorted, not empty): the
    first record's place and reason, and the count by reason. One log line per batch, not per record, so that a
    stream of bad records cannot flood the logs; the records themselves are in the dead-letter topic."""
    index, first = failures[0]
    return {
        "records": len(failures),
        "reasons": dict(collections.Counter(failure.reason for _, failure in failures)),
        "partition": messages[index].partition(),
        "offset": messages[index].offset(),
        "error_class": first.reason,
        "error": first.message,
    }
