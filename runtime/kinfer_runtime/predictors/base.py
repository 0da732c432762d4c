"""The predictor contract the loop codes against, shared by the embedded and the TF Serving predictors.

A predictor turns the preprocessed input tensors of one batch into output tensors. Two failure kinds let the
loop act correctly: ``PredictorUnavailable`` is transient (the loop pauses its partitions, keeps polling to stay
in the group, and retries the same batch later, committing nothing); ``PredictionFailed`` is permanent for the
batch (the loop dead-letters each of its records with reason ``PredictionFailed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kinfer_runtime.spec.model_metadata import ModelMetadata


class PredictorUnavailable(RuntimeError):
    """The model can't be reached right now (server down, deadlines exceeded after bounded retries)."""


class PredictionFailed(RuntimeError):
    """The model refused this batch for good (wrong inputs, an error inside the graph)."""


@dataclass(frozen=True, slots=True)
class Prediction:
    outputs: dict[str, np.ndarray]  # one row per input row, in order
    model_version: int


class Predictor(Protocol):
    model_name: str

    @property
    def model_version(self) -> int:
        """The version currently serving (0 before ``load``)."""
        ...

    @property
    def metadata(self) -> ModelMetadata:
        """``kinfer.json`` of the version currently serving; rebuild the Preprocessor when it changes."""
        ...

    def load(self) -> None:
        """Load and warm up; raises on failure (nothing to serve)."""

    def ready(self) -> bool: ...

    def predict(self, inputs: dict[str, np.ndarray]) -> Prediction: ...

    def maybe_reload(self) -> bool:
        """Swap in a newer version if one is ready; True when the serving version changed."""
        ...

    def close(self) -> None: ...


def bucket_sizes(max_batch_size: int) -> list[int]:
    """Powers of two up to ``max_batch_size``, plus ``max_batch_size`` itself: the only batch sizes ever run."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch_size)
    return sizes


def bucket_for(rows: int, buckets: list[int]) -> int:
    """The smallest bucket holding ``rows`` (callers split batches larger than the last bucket)."""
    for size in buckets:
        if size >= rows:
            return size
    return buckets[-1]


def pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """``array`` grown to ``rows`` rows with zeros (padding rows' outputs are dropped after the call)."""
    if array.shape[0] == rows:
        return array
    padded = np.zeros((rows, *array.shape[1:]), dtype=array.dtype)
    padded[: array.shape[0]] = array
    return padded
