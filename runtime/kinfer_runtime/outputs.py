"""Model outputs → the ``prediction`` object of each output record, as described by the model's metadata.

Per row, each signature output becomes a field of the same name: a number when the output has one value per
row (shape ``[null]`` or ``[null, 1]``), otherwise a (nested) list. With ``labels`` in the metadata a class
name is added: ``names[score >= threshold]`` for a binary score, ``names[argmax]`` for one column per class.
Conversion is vectorised (``ndarray.tolist`` per output), then zipped into one dict per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kinfer_runtime.model_metadata import ModelMetadata
from kinfer_runtime.predictors.base import Prediction


def format_outputs(prediction: Prediction, metadata: ModelMetadata) -> list[dict[str, Any]]:
    """One JSON-able dict per row of the prediction (native Python floats, ints, strings and lists)."""
    names = list(prediction.outputs)
    if not names:
        return []
    columns: list[list[Any]] = []
    for name in names:
        array = np.asarray(prediction.outputs[name])
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        columns.append(array.tolist())
    labels = metadata.labels
    if labels is not None and labels.output in prediction.outputs:
        names.append(labels.field)
        columns.append(_label_column(np.asarray(prediction.outputs[labels.output]), labels.names, labels.threshold))
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _label_column(scores: np.ndarray, label_names: list[str], threshold: float | None) -> list[str]:
    scores = scores.reshape(scores.shape[0], -1)
    if threshold is not None or scores.shape[1] == 1:
        cut = 0.5 if threshold is None else threshold
        chosen = (scores[:, -1] >= cut).astype(np.int64)
    else:
        chosen = np.argmax(scores, axis=1)
    lookup = np.asarray(label_names, dtype=object)
    return lookup[np.minimum(chosen, len(label_names) - 1)].tolist()
