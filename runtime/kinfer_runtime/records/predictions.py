"""Model outputs → the ``prediction`` object of each output record, as described by the model's metadata.

Per row, each signature output becomes a field of the same name: a number when the output has one value per
row (shape ``[null]`` or ``[null, 1]``), otherwise a (nested) list. With ``labels`` in the metadata a class
name is added: ``names[score >= threshold]`` for a binary score, ``names[argmax]`` for one column per class.
Conversion is vectorised (``ndarray.tolist`` per output), then zipped into one dict per row.

The loop itself needs the JSON bytes of each object, not the dicts: :func:`encode_predictions` gives exactly
``orjson.dumps(format_outputs(...)[i])`` per row, but encodes whole columns at once (one ``orjson.dumps`` of a
numeric column, split at its commas; one encoding per distinct label), which makes it several times faster.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
import orjson

from kinfer_runtime.predictors.base import Prediction
from kinfer_runtime.spec.model_metadata import ModelMetadata


def format_outputs(prediction: Prediction, metadata: ModelMetadata) -> list[dict[str, Any]]:
    """One JSON-able dict per row of the prediction (native Python floats, ints, strings and lists)."""
    names, arrays = prediction_columns(prediction, metadata)
    if not names:
        return []
    columns = [array.tolist() for array in arrays]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


class EncodedPredictions(Sequence[bytes]):
    """The JSON of each row's prediction object, kept as a %-format ``template`` with one ``%b`` per field and
    the encoded ``columns`` (one list of JSON bytes per field): row i is ``template % (column[i] for each column)``.
    The loop splices the template into its output template (pipeline/assemble.py), so a row's prediction is never
    built on its own."""

    def __init__(self, template: bytes, columns: list[list[bytes]]) -> None:
        self.template, self.columns = template, columns

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return list(self)[index]
        return self.template % tuple(column[index] for column in self.columns)

    def __iter__(self) -> Iterator[bytes]:
        return map(self.template.__mod__, zip(*self.columns, strict=True))

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented

    __hash__ = None  # type: ignore[assignment]


def encode_predictions(prediction: Prediction, metadata: ModelMetadata) -> EncodedPredictions:
    """The JSON of each row's prediction object, byte for byte what ``orjson.dumps`` makes of
    :func:`format_outputs`' dicts."""
    names, arrays = prediction_columns(prediction, metadata)
    if not names:
        return EncodedPredictions(b"{}", [])
    template = b"{" + b",".join(orjson.dumps(name).replace(b"%", b"%%") + b":%b" for name in names) + b"}"
    return EncodedPredictions(template, [_encode_column(array) for array in arrays])


def score_columns(prediction: Prediction, metadata: ModelMetadata) -> tuple[dict[str, np.ndarray], list[str]]:
    """What the prediction-quality metrics count: every numeric output with one value per row (as float64), and
    the label of each row (empty without ``labels`` in the metadata)."""
    names, arrays = prediction_columns(prediction, metadata)
    label_field = metadata.labels.field if metadata.labels is not None else None
    scores = {name: array.astype(np.float64) for name, array in zip(names, arrays, strict=True)
              if name != label_field and array.ndim == 1 and array.dtype.kind in "fiu"}  # fmt: skip
    labels = arrays[names.index(label_field)].tolist() if label_field in names else []
    return scores, labels


def prediction_columns(prediction: Prediction, metadata: ModelMetadata) -> tuple[list[str], list[np.ndarray]]:
    """Field names and one array per field (a row per input): the outputs, ``[n, 1]`` squeezed, then the label."""
    names = list(prediction.outputs)
    arrays: list[np.ndarray] = []
    for name in names:
        array = np.asarray(prediction.outputs[name])
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        arrays.append(array)
    labels = metadata.labels
    if names and labels is not None and labels.output in prediction.outputs:
        names.append(labels.field)
        scores = np.asarray(prediction.outputs[labels.output])
        arrays.append(_label_column(scores, labels.names, labels.threshold))
    return names, arrays


def _encode_column(array: np.ndarray) -> list[bytes]:
    values = array.tolist()
    if array.ndim == 1 and array.dtype.kind in "fiub":
        # Numbers and booleans never contain a comma: encode the column once and split it.
        return orjson.dumps(values)[1:-1].split(b",") if values else []
    if array.ndim == 1 and set(map(type, values)) <= {str}:  # C-level: no Python code per row
        encoded = {value: orjson.dumps(value) for value in set(values)}  # labels: a handful of distinct values
        return list(map(encoded.__getitem__, values))
    return [orjson.dumps(value) for value in values]


def _label_column(scores: np.ndarray, label_names: list[str], threshold: float | None) -> np.ndarray:
    """The chosen label of each row, as an object array of str."""
    if scores.shape[0] == 0:
        return np.empty(0, dtype=object)
    scores = scores.reshape(scores.shape[0], -1)
    if threshold is not None or scores.shape[1] == 1:
        cut = 0.5 if threshold is None else threshold
        chosen = (scores[:, -1] >= cut).astype(np.int64)
    else:
        chosen = np.argmax(scores, axis=1)
    lookup = np.asarray(label_names, dtype=object)
    return lookup[np.minimum(chosen, len(label_names) - 1)]
