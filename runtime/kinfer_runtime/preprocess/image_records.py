"""Image records (``spec.preprocessing.format: image``): each value is an encoded image (PNG, JPEG, or any format
Pillow reads) that becomes one example of the model's only input, shape [height, width, channels].

Per record, Pillow decodes in C, converts to RGB (3 channels) or grayscale (1) and, unless ``image.resize`` is
false, resizes (bilinear) to the input's size; then the batch is stacked and scaled in one numpy operation: no
Python loop per pixel. A value that is not an image, or that declares more than ``image.maxPixels`` pixels
(checked from its header, before decoding), is left out as ``ImageDecodeError``; one of another size with
``resize: false`` as ``WrongShape``; the loop dead-letters its original bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from kinfer_runtime.preprocess.columns import FailureReason
from kinfer_runtime.preprocess.input_plan import PreprocessorError
from kinfer_runtime.preprocess.preprocessor import EncodedBatch
from kinfer_runtime.preprocess.record_reading import RecordFailure, only_input, read_each
from kinfer_runtime.spec import ImageFormatSpec, InferencePipelineSpec
from kinfer_runtime.spec.model_metadata import ModelMetadata


class ImagePreprocessor:
    """The :class:`~kinfer_runtime.preprocess.preprocessor.Preprocessor` interface for encoded images."""

    features: list[Any] = []  # no named fields: no feature spec, no drift window

    def __init__(self, input_name: str, dtype: str, row_shape: tuple[int, ...], settings: ImageFormatSpec,
                 max_record_bytes: int = 1_048_576) -> None:  # fmt: skip
        if len(row_shape) != 3 or row_shape[2] not in (1, 3):
            raise PreprocessorError(
                f"preprocessing.format image needs a model input of shape [height, width, 1 or 3]; {input_name!r} "
                f"has {list(row_shape)}"
            )
        self.input_name, self.dtype, self.row_shape = input_name, np.dtype(dtype), row_shape
        self.height, self.width, channels = row_shape
        self.mode = "RGB" if channels == 3 else "L"
        self.settings, self.max_record_bytes = settings, max_record_bytes

    @classmethod
    def from_spec(cls, spec: InferencePipelineSpec, metadata: ModelMetadata) -> ImagePreprocessor:
        name, info = only_input(metadata, "image")
        settings = spec.preprocessing.image or ImageFormatSpec()
        return cls(name, info.dtype, tuple(info.row_shape), settings, spec.preprocessing.max_record_bytes)

    def encode(self, values: Sequence[bytes | str | None]) -> EncodedBatch:
        pixels, positions, failures = read_each(values, self._decode, self.max_record_bytes)
        rows = np.stack(pixels) if pixels else np.empty((0, self.height, self.width), dtype=np.uint8)
        return self._finish(rows, positions, failures)

    def encode_documents(self, docs: Sequence[np.ndarray]) -> EncodedBatch:
        """``encode`` for images decoded already (another version's ``EncodedBatch.documents``)."""
        rows = np.stack(list(docs)) if docs else np.empty((0, self.height, self.width), dtype=np.uint8)
        return self._finish(rows, list(range(len(docs))), {})

    def feature_columns(self) -> list[tuple[str, str, int, int]]:
        return []

    def _decode(self, index: int, data: bytes) -> tuple[np.ndarray, RecordFailure | None]:
        from PIL import Image, UnidentifiedImageError

        none = np.empty(0)
        try:
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                width, height = image.size
                if width * height > self.settings.max_pixels:
                    return none, RecordFailure(index, FailureReason.IMAGE_DECODE_ERROR,
                                               f"{width}x{height} pixels, above image.maxPixels "
                                               f"{self.settings.max_pixels}")  # fmt: skip
                if (height, width) != (self.height, self.width) and not self.settings.resize:
                    return none, RecordFailure(index, FailureReason.WRONG_SHAPE,
                                               f"{width}x{height} pixels; the model takes {self.width}x"
                                               f"{self.height} (image.resize is false)")  # fmt: skip
                converted = image.convert(self.mode)
                if converted.size != (self.width, self.height):
                    converted = converted.resize((self.width, self.height), Image.Resampling.BILINEAR)
                return np.asarray(converted, dtype=np.uint8), None
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
            return none, RecordFailure(index, FailureReason.IMAGE_DECODE_ERROR,
                                       f"not an image Pillow can decode: {error}")  # fmt: skip

    def _finish(self, rows: np.ndarray, positions: list[int], failures: dict[int, RecordFailure]) -> EncodedBatch:
        """Scale the stacked 8-bit images into the model's dtype and shape; ``rows[i]`` is record ``positions[i]``."""
        scaled = rows.reshape(len(rows), *self.row_shape).astype(self.dtype) * self.dtype.type(self.settings.scale)
        encoded = EncodedBatch({self.input_name: scaled}, positions, sorted(failures.values(), key=lambda f: f.index))
        encoded.documents, encoded.positions = list(rows), positions
        return encoded
