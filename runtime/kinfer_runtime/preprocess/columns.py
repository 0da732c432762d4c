"""Column encoders: one feature of a whole batch of decoded records → columns of a model input, vectorised.

Each encoder takes the batch's field values as one list (``[doc.get(name) for doc in docs]``, a C-speed list
comprehension), checks them in bulk with a fast path for the common all-valid case, and writes the scaled
columns into the preallocated input buffer with numpy. Per-value Python work happens only on the slow path, when
some value is missing or of the wrong type. Records that fail are reported as ``(row, reason, message)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from itertools import chain, repeat
from typing import Any

import numpy as np

from kinfer_runtime.spec import CategoricalEncoding, FeatureSpec, FeatureType, Scaling


class FailureReason(StrEnum):
    """Why a record could not become model input (a metric label and the dead-letter ``kinfer.error.class``)."""

    EMPTY_VALUE = "EmptyValue"
    NOT_UTF8 = "NotUtf8"
    MALFORMED_JSON = "MalformedJson"
    NOT_AN_OBJECT = "NotAnObject"
    MISSING_FIELD = "MissingField"
    WRONG_TYPE = "WrongType"
    NON_FINITE = "NonFinite"
    WRONG_SHAPE = "WrongShape"
    UNKNOWN_CATEGORY = "UnknownCategory"
    RECORD_TOO_LARGE = "RecordTooLarge"
    HOOK_ERROR = "HookError"
    MALFORMED_TENSOR = "MalformedTensor"  # a .npy record whose header NumPy refuses (format tensor)
    WRONG_FRAMING = "WrongFraming"  # format avro: not in Confluent's wire format
    UNKNOWN_SCHEMA = "UnknownSchema"  # format avro: framed with another schema id than the pipeline reads
    MALFORMED_AVRO = "MalformedAvro"  # format avro: a body the writer schema does not read
    IMAGE_DECODE_ERROR = "ImageDecodeError"  # format image: not an image Pillow can decode, or too many pixels


Fail = Callable[[int, FailureReason, str], None]
ColumnEncoder = Callable[[Sequence[Any], np.ndarray, Fail], None]
_NUMBER_TYPES = frozenset({int, float})


def short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_column_encoder(feature: FeatureSpec) -> ColumnEncoder:
    """The encoder of one feature; ``columns`` passed to it is the (rows, width) slice of the input buffer."""
    kind = feature.type
    if kind is FeatureType.CATEGORICAL:
        return _categorical_encoder(feature)
    if kind is FeatureType.ARRAY:
        return _array_encoder(feature)
    return _numeric_encoder(feature)


def offset_and_unit(feature: FeatureSpec) -> tuple[float, float]:
    """(o, k) of a numeric feature's scaling ``v = (x - o) / k``: mean and std, min and span, or 0 and 1."""
    if feature.scaling is Scaling.STANDARD:
        return float(feature.mean or 0.0), float(feature.std or 1.0)
    if feature.scaling is Scaling.MIN_MAX:
        low = float(feature.min or 0.0)
        return low, float((feature.max or 1.0) - low)
    return 0.0, 1.0


def _scaler(feature: FeatureSpec) -> Callable[[np.ndarray], np.ndarray]:
    offset, unit = offset_and_unit(feature)
    return lambda x: (x - offset) / unit  # exact for no scaling too: x - 0.0 and x / 1.0 are x


def encode_numeric_block(
    fields: Sequence[Sequence[Any]], offsets: np.ndarray, units: np.ndarray, dtype: Any, checked: bool = False
) -> Any:
    """Several numeric features of a batch at once, as (rows, features) scaled columns of ``dtype``, when every
    value is a number and finite once scaled: the same values as each feature's own encoder, in four array
    operations for all of them. None otherwise: each feature's encoder then says which record fails and why.
    ``checked``: every value is known to be an int or a float (typed_decoding.py), which is not checked again."""
    if not checked and not set(map(type, chain.from_iterable(fields))) <= _NUMBER_TYPES:
        return None
    try:
        raw = np.array(fields, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = ((raw - offsets[:, None]) / units[:, None]).astype(dtype)
    if scaled.dtype.kind == "f" and not np.isfinite(scaled).all():
        return None
    return scaled.T


def _numeric_default(feature: FeatureSpec) -> float | None:
    if feature.required:
        return None
    if feature.default is None:
        return 0.0
    return float(feature.default)


def _numeric_encoder(feature: FeatureSpec) -> ColumnEncoder:
    name, scale, default = feature.name, _scaler(feature), _numeric_default(feature)

    def encode(values: Sequence[Any], columns: np.ndarray, fail: Fail) -> None:
        raw = np.zeros(len(values), dtype=np.float64)
        try:
            if not set(map(type, values)) <= _NUMBER_TYPES:
                raise TypeError
            raw[:] = values
        except (TypeError, OverflowError):
            for row, value in enumerate(values):
                if value is None:
                    if default is None:
                        fail(row, FailureReason.MISSING_FIELD, f"required field {name!r} is missing or null")
                    else:
                        raw[row] = default
                elif type(value) in _NUMBER_TYPES:  # bool is not a number here: type() is exact
                    try:
                        raw[row] = value
                    except OverflowError:
                        raw[row] = np.inf
                else:
                    fail(row, FailureReason.WRONG_TYPE, f"field {name!r} must be a number, got {short_repr(value)}")
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below as NonFinite
            scaled = scale(raw).astype(columns.dtype)
        if columns.dtype.kind == "f":
            for bad in np.flatnonzero(~np.isfinite(scaled) | ~np.isfinite(raw)):
                fail(int(bad), FailureReason.NON_FINITE, f"field {name!r} is not a finite float32: {float(raw[bad])}")
        columns[:, 0] = scaled

    return encode


def _categorical_encoder(feature: FeatureSpec) -> ColumnEncoder:
    name, vocabulary = feature.name, list(feature.vocabulary or [])
    lookup = {value: index for index, value in enumerate(vocabulary)}
    unknown = len(vocabulary)
    one_hot = feature.encoding is CategoricalEncoding.ONE_HOT
    default_code = None if feature.required else lookup.get(str(feature.default), unknown)

    def encode(values: Sequence[Any], columns: np.ndarray, fail: Fail) -> None:
        codes = np.empty(len(values), dtype=np.int64)
        if set(map(type, values)) <= {str}:
            codes[:] = list(map(lookup.get, values, repeat(unknown)))  # C-level: no Python code per record
        else:
            for row, value in enumerate(values):
                if value is None:
                    if default_code is None:
                        fail(row, FailureReason.MISSING_FIELD, f"required field {name!r} is missing or null")
                    codes[row] = unknown if default_code is None else default_code
                elif type(value) is str or type(value) is int:  # an integer category code is read as its text
                    codes[row] = lookup.get(str(value), unknown)
                else:
                    fail(row, FailureReason.WRONG_TYPE, f"field {name!r} must be a string, got {short_repr(value)}")
                    codes[row] = unknown
        if feature.reject_unknown:
            for bad in map(int, np.flatnonzero(codes == unknown)):
                value = values[bad]
                if isinstance(value, str | int):
                    fail(bad, FailureReason.UNKNOWN_CATEGORY, f"field {name!r}: {short_repr(value)} is unknown")
        if one_hot:
            columns[:] = 0
            columns[np.arange(len(values)), codes] = 1
        else:
            columns[:, 0] = codes

    return encode


def _array_encoder(feature: FeatureSpec) -> ColumnEncoder:
    name, shape, scale = feature.name, tuple(feature.shape or ()), _scaler(feature)
    fill = None if feature.required or feature.default is None else float(feature.default)

    def encode(values: Sequence[Any], columns: np.ndarray, fail: Fail) -> None:
        block = _all_valid_arrays(values, shape)
        if block is None:
            block = _arrays_one_by_one(values, columns.shape, fail)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = scale(block).astype(columns.dtype)
        if columns.dtype.kind == "f":
            for bad in np.flatnonzero(~np.isfinite(scaled).all(axis=1)):
                fail(int(bad), FailureReason.NON_FINITE, f"field {name!r} holds NaN or infinite values")
        columns[:] = scaled

    def _arrays_one_by_one(values: Sequence[Any], block_shape: tuple[int, ...], fail: Fail) -> np.ndarray:
        block = np.zeros(block_shape, dtype=np.float64)
        for row, value in enumerate(values):
            if value is None:
                if fill is None:
                    fail(row, FailureReason.MISSING_FIELD, f"field {name!r} is missing or null")
                else:
                    block[row] = fill
                continue
            try:
                array = np.asarray(value)
            except (ValueError, OverflowError):  # ragged nesting (numpy 2 refuses it) or a huge integer
                fail(row, FailureReason.WRONG_SHAPE, f"field {name!r} must be a {list(shape)} array (ragged)")
                continue
            if array.dtype.kind not in "fiu":
                fail(row, FailureReason.WRONG_TYPE, f"field {name!r} must hold only numbers, got {array.dtype}")
            elif array.shape != shape:
                fail(
                    row,
                    FailureReason.WRONG_SHAPE,
                    f"field {name!r} must have shape {list(shape)}, got {list(array.shape)}",
                )
            else:
                block[row] = array.reshape(-1)
        return block

    return encode


def _all_valid_arrays(values: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray | None:
    """The whole batch as one (rows, width) float64 block when every value is a well-formed array, else None.

    One ``np.array`` over the batch is several times faster than one per record; any irregularity (a missing
    value, a ragged or mistyped array) sends the batch to the per-record path, which says what is wrong.
    """
    try:
        block = np.array(values)
    except (ValueError, OverflowError):
        return None
    if block.dtype.kind not in "fiu" or block.shape[1:] != shape:
        return None
    return block.reshape(len(values), -1).astype(np.float64, copy=False)
