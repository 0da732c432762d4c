"""What every record format shares before its own decoding (pure): the reason a value is not read at all (empty,
or above ``maxRecordBytes``), the loop that reads a batch one value at a time and keeps each failure's reason,
why a value is not JSON, and the model input of the formats whose record is that input itself (tensor, image)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kinfer_runtime.preprocess.columns import FailureReason
from kinfer_runtime.preprocess.input_plan import PreprocessorError
from kinfer_runtime.spec.model_metadata import ModelMetadata, TensorInfo


@dataclass(frozen=True, slots=True)
class RecordFailure:
    index: int  # position in the values passed to encode
    reason: FailureReason
    message: str


Read = Callable[[int, bytes], "tuple[Any, RecordFailure | None]"]


def unreadable(index: int, value: bytes | str | None, limit: int) -> RecordFailure | None:
    """Why a value is not read at all, or None."""
    if value is None or len(value) == 0:
        return RecordFailure(index, FailureReason.EMPTY_VALUE, "the record has no value (null or empty)")
    if len(value) > limit:
        message = f"the record has {len(value)} bytes, more than maxRecordBytes {limit}"
        return RecordFailure(index, FailureReason.RECORD_TOO_LARGE, message)
    return None


def read_each(
    values: Sequence[bytes | str | None], read: Read, limit: int
) -> tuple[list[Any], list[int], dict[int, RecordFailure]]:
    """``read`` every readable value: what it gave, the index of each, and the failure of every other index."""
    items: list[Any] = []
    positions: list[int] = []
    failures: dict[int, RecordFailure] = {}
    for index, value in enumerate(values):
        failure = unreadable(index, value, limit)
        if failure is None:
            assert value is not None  # unreadable() said so
            item, failure = read(index, value.encode() if isinstance(value, str) else value)
        if failure is not None:
            failures[index] = failure
        else:
            items.append(item)
            positions.append(index)
    return items, positions, failures


def only_input(metadata: ModelMetadata, record_format: str) -> tuple[str, TensorInfo]:
    """The model's one input, which a ``record_format`` record fills whole."""
    if len(metadata.inputs) != 1:
        raise PreprocessorError(
            f"preprocessing.format {record_format} needs a model with one input; this one has {sorted(metadata.inputs)}"
        )
    return next(iter(metadata.inputs.items()))


def json_failure(index: int, value: bytes | str, error: Exception) -> tuple[Any, RecordFailure | None]:
    """Why orjson refused a value: not UTF-8, blank, or JSON with NaN/Infinity (which becomes NonFinite later)."""
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else value
    except UnicodeDecodeError as decode_error:
        return None, RecordFailure(index, FailureReason.NOT_UTF8, f"the value is not UTF-8: {decode_error.reason}")
    if not text.strip():
        return None, RecordFailure(index, FailureReason.EMPTY_VALUE, "the record's value is blank")
    try:
        # The stdlib parser accepts NaN and Infinity, which orjson (rightly) does not: the feature checks then
        # report the field as NonFinite, which tells the producer more than "malformed".
        return json.loads(text), None
    except (ValueError, RecursionError):
        return None, RecordFailure(index, FailureReason.MALFORMED_JSON, f"malformed JSON: {error}")
