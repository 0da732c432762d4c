"""Image records (``spec.preprocessing.format: image``): each value is an encoded image (PNG, JPEG, or any format
Pillow reads) that becomes one example of the model's only input, shape [height, width, channels].

Per record, Pillow decodes in C, converts to RGB (3 channels) or grayscale (1) and, unless ``image.resize`` is
false, resizes (bilinear) to the input's size; then the batch is stacked and scaled in one numpy operation: no
Python loop per pixel. A value that is not an image, or that declares more than ``image.maxPixels`` pixels
(checked from its header, before decoding), is left out as ``ImageDecodeError``; one of another size with
``resize: false`` as ``WrongShape``; the loop dead-letters its original bytes.

With ``image.field``, the value is a JSON object whose field holds the image in base64 (what a producer that
only speaks JSON sends): a value that is not such an object fails as JSON records do (``MalformedJson``,
``NotAnObject``, ``MissingField``, ``WrongType``), and a field that is not base64 as ``ImageDecodeError``.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from kinfer_runtime.preprocess.columns import FailureReason, short_repr
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
        if self.settings.field is not None:
            data, failure = self._from_field(index, data, self.settings.field)
            if failure is not None:
                return none, failure
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

    @staticmethod
    def _from_field(index: int, data: bytes, name: str) -> tuple[bytes, RecordFailure | None]:
        """The image bytes of a JSON record's base64 field."""
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            return b"", RecordFailure(index, FailureReason.MALFORMED_JSON, f"malformed JSON: {error}")
        if type(document) is not dict:
            return b"", RecordFailure(index, FailureReason.NOT_AN_OBJECT, "the record must be a JSON object")
        text = document.get(name)
        if text is None:
            return b"", RecordFailure(index, FailureReason.MISSING_FIELD, f"field {name!r} (the image) is missing")
        if type(text) is not str:
            message = f"field {name!r} must be a base64 string, got {short_repr(text)}"
            return b"", RecordFailure(index, FailureReason.WRONG_TYPE, message)
        try:
            alphabet = b"-_" if "-" in text or "_" in text else None
            return base64.b64decode(text, altchars=alphabet, validate=True), None
        except (binascii.Error, ValueError) as error:
            return b"", RecordFailure(index, FailureReason.IMAGE_DECODE_ERROR, f"field {name!r} is not base64: {error}")

    def _finish(self, rows: np.ndarray, positions: list[int], failures: dict[int, RecordFailure]) -> EncodedBatch:
        """Scale the stacked 8-bit images into the model's dtype and shape; ``rows[i]`` is record ``positions[i]``."""
        scaled = rows.reshape(len(rows), *self.row_shape).astype(self.dtype) * self.dtype.type(self.settings.scale)
        encoded = EncodedBatch({self.input_name: scaled}, positions, sorted(failures.values(), key=lambda f: f.index))
        encoded.documents, encoded.positions = list(rows), positions
        return encoded
