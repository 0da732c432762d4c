"""Records that are the model's input itself (``spec.preprocessing.format: tensor``): a batch of byte values → one
input tensor, plus a reason for every bad record.

A value is either the raw little-endian bytes of one example (``tensor.dtype`` and ``tensor.shape``, by default
the model input's) or a ``.npy`` file (NumPy's own header says dtype and shape; both must match). The batch path
joins the raw values and reads them with one ``np.frombuffer``: no Python loop per element. What cannot be read
is left out with a stable reason (``WrongShape``: another size or shape; ``WrongType``: a .npy of another dtype;
``MalformedTensor``: a .npy header NumPy refuses; ``NonFinite``: NaN or infinity in a float tensor), and the loop
dead-letters its original bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from math import prod
from typing import Any

import numpy as np

from kinfer_runtime.preprocess.columns import FailureReason
from kinfer_runtime.preprocess.input_plan import PreprocessorError
from kinfer_runtime.preprocess.preprocessor import EncodedBatch
from kinfer_runtime.preprocess.record_reading import RecordFailure, only_input, read_each
from kinfer_runtime.spec import InferencePipelineSpec
from kinfer_runtime.spec.model_metadata import ModelMetadata

NPY_MAGIC = b"\x93NUMPY"


class TensorPreprocessor:
    """The :class:`~kinfer_runtime.preprocess.preprocessor.Preprocessor` interface for tensor records."""

    features: list[Any] = []  # no named fields: no feature spec, no drift window

    def __init__(
        self, input_name: str, model_dtype: str, row_shape: tuple[int, ...], record_dtype: str,
        record_shape: tuple[int, ...], *, max_record_bytes: int = 1_048_576,
    ) -> None:  # fmt: skip
        if prod(record_shape) != prod(row_shape):
            raise PreprocessorError(
                f"preprocessing.tensor.shape {list(record_shape)} holds {prod(record_shape)} elements; model input "
                f"{input_name!r} takes {prod(row_shape)} per example (shape {list(row_shape)})"
            )
        self.input_name, self.row_shape = input_name, row_shape
        self.model_dtype = np.dtype(model_dtype)
        self.record_dtype = np.dtype(record_dtype).newbyteorder("<")
        self.record_shape = record_shape
        self.row_bytes = prod(record_shape) * self.record_dtype.itemsize
        self.max_record_bytes = max_record_bytes

    @classmethod
    def from_spec(cls, spec: InferencePipelineSpec, metadata: ModelMetadata) -> TensorPreprocessor:
        name, info = only_input(metadata, "tensor")
        tensor = spec.preprocessing.tensor
        dtype = tensor.dtype.value if tensor is not None and tensor.dtype is not None else info.dtype
        shape = tuple(tensor.shape) if tensor is not None and tensor.shape else tuple(info.row_shape)
        limit = spec.preprocessing.max_record_bytes
        return cls(name, info.dtype, tuple(info.row_shape), dtype, shape, max_record_bytes=limit)

    def encode(self, values: Sequence[bytes | str | None]) -> EncodedBatch:
        size = self.row_bytes
        if values and all(type(v) is bytes and len(v) == size for v in values):  # the common case: one read
            joined = b"".join(values)  # type: ignore[arg-type]  # every value is bytes: checked just above
            rows = np.frombuffer(joined, dtype=self.record_dtype).reshape(len(values), *self.record_shape)
            return self._finish(rows, list(range(len(values))), {})
        kept, positions, failures = read_each(values, self._read, self.max_record_bytes)
        rows = np.stack(kept) if kept else np.empty((0, *self.record_shape), dtype=self.record_dtype)
        return self._finish(rows, positions, failures)

    def encode_documents(self, docs: Sequence[np.ndarray]) -> EncodedBatch:
        """``encode`` for records read already (another version's ``EncodedBatch.documents``)."""
        return self.encode([np.ascontiguousarray(doc, dtype=self.record_dtype).tobytes() for doc in docs])

    def feature_columns(self) -> list[tuple[str, str, int, int]]:
        return []

    def _read(self, index: int, data: bytes) -> tuple[np.ndarray, RecordFailure | None]:
        none = np.empty(0)
        if len(data) == self.row_bytes:
            return np.frombuffer(data, dtype=self.record_dtype).reshape(self.record_shape), None
        if not data.startswith(NPY_MAGIC):
            return none, RecordFailure(index, FailureReason.WRONG_SHAPE,
                                       f"{len(data)} bytes, not the {self.row_bytes} of a {self._described} tensor "
                                       "nor a .npy file")  # fmt: skip
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            return none, RecordFailure(index, FailureReason.MALFORMED_TENSOR, f"unreadable .npy: {error}")
        if array.dtype.newbyteorder("<") != self.record_dtype:
            return none, RecordFailure(index, FailureReason.WRONG_TYPE,
                                       f".npy of {array.dtype}, expected {self.record_dtype.name}")  # fmt: skip
        if tuple(array.shape) != self.record_shape:
            expected = list(self.record_shape)
            return none, RecordFailure(index, FailureReason.WRONG_SHAPE,
                                       f".npy of shape {list(array.shape)}, expected {expected}")  # fmt: skip
        return array, None

    @property
    def _described(self) -> str:
        return f"{self.record_dtype.name} {list(self.record_shape)}"

    def _finish(self, rows: np.ndarray, positions: list[int], failures: dict[int, RecordFailure]) -> EncodedBatch:
        """Finite check, the model's dtype and shape; ``rows[i]`` is the record at ``positions[i]``."""
        if rows.dtype.kind == "f" and len(rows):
            finite = np.isfinite(rows.reshape(len(rows), -1)).all(axis=1)
            if not finite.all():
                for row in np.flatnonzero(~finite):
                    failures[positions[row]] = RecordFailure(
                        positions[row], FailureReason.NON_FINITE, "the tensor holds NaN or infinity"
                    )
                rows, positions = rows[finite], [p for p, ok in zip(positions, finite, strict=True) if ok]
        inputs = {self.input_name: rows.reshape(len(rows), *self.row_shape).astype(self.model_dtype, copy=False)}
        encoded = EncodedBatch(inputs, positions, sorted(failures.values(), key=lambda f: f.index))
        encoded.documents, encoded.positions = list(rows), positions
        return encoded
