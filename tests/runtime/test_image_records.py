"""Image records (``spec.preprocessing.format: image``): PNG and JPEG values become the shapes model's input,
resized and scaled; whatever is not a usable image is left out with its reason."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from kinfer_runtime.preprocess.image_records import ImagePreprocessor
from kinfer_runtime.spec import SpecError
from kinfer_runtime.tools.synthetic import shape_images
from tests.runtime.example_pipelines import example_pipeline, example_preprocessor


def preprocessor(**image: Any) -> ImagePreprocessor:
    spec = {"format": "image", **({"image": image} if image else {})}
    built = example_preprocessor("shapes", 1, spec)
    assert isinstance(built, ImagePreprocessor)
    return built


def encoded(pixels: np.ndarray, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=kind)
    return buffer.getvalue()


def test_png_images_become_the_models_input_scaled_to_0_1() -> None:
    images, _ = shape_images(16, seed=3)
    batch = preprocessor().encode([encoded(image) for image in images])
    assert batch.ok == list(range(16)) and batch.failures == []
    assert batch.inputs["image"].shape == (16, 32, 32, 3) and batch.inputs["image"].dtype == np.float32
    assert np.allclose(batch.inputs["image"], images / 255.0)  # PNG is lossless


def test_other_sizes_and_formats_are_resized_and_converted() -> None:
    images, _ = shape_images(2, seed=4)
    large = np.repeat(np.repeat(images[0], 2, axis=0), 2, axis=1)  # 64x64
    gray = np.asarray(Image.fromarray(images[1]).convert("L"))
    batch = preprocessor().encode([encoded(large, "JPEG"), encoded(gray)])
    assert batch.ok == [0, 1] and batch.inputs["image"].shape == (2, 32, 32, 3)
    assert np.abs(batch.inputs["image"][0] - images[0] / 255.0).mean() < 0.05  # JPEG and resizing lose a little
    assert np.allclose(batch.inputs["image"][1, :, :, 0], batch.inputs["image"][1, :, :, 2])  # gray → RGB


def test_every_unusable_value_is_left_out_with_its_reason() -> None:
    images, _ = shape_images(4, seed=5)
    png = encoded(images[0])
    values: list[bytes | None] = [
        png,  # 0
        png[: len(png) // 2],  # 1 truncated
        b"GIF89a not really",  # 2 a header and nothing behind it
        b"",  # 3
        encoded(np.zeros((40, 40, 3), dtype=np.uint8)),  # 4 another size: resized by default
        encoded(np.zeros((5000, 4000), dtype=np.uint8)),  # 5 more pixels than maxPixels allows
    ]
    batch = preprocessor(maxPixels=10_000_000).encode(values)
    assert batch.ok == [0, 4]
    reasons = {failure.index: failure.reason.value for failure in batch.failures}
    assert reasons == {1: "ImageDecodeError", 2: "ImageDecodeError", 3: "EmptyValue", 5: "ImageDecodeError"}
    assert "above image.maxPixels" in next(f.message for f in batch.failures if f.index == 5)
    strict = preprocessor(resize=False).encode([values[0], values[4]])
    assert strict.ok == [0] and [f.reason.value for f in strict.failures] == ["WrongShape"]


def test_a_candidate_reads_the_live_versions_decoded_images() -> None:
    images, _ = shape_images(3, seed=6)
    live = preprocessor().encode([encoded(image) for image in images])
    again = preprocessor().encode_documents(live.decoded([2, 0]))
    assert np.array_equal(again.inputs["image"], live.inputs["image"][[2, 0]])


def test_image_settings_need_format_image() -> None:
    with pytest.raises(SpecError, match=r"needs preprocessing\.format image"):
        example_pipeline("shapes", {"image": {"resize": False}})


def test_an_image_in_a_base64_json_field_reads_like_the_bytes_and_bad_ones_say_why() -> None:
    import base64

    import orjson

    images, _ = shape_images(3, seed=6)
    png = encoded(images[0])
    field = preprocessor(field="image")
    values: list[bytes | None] = [
        orjson.dumps({"image": base64.b64encode(png).decode(), "camera": 7}),  # 0
        orjson.dumps({"image": base64.urlsafe_b64encode(encoded(images[1])).decode()}),  # 1 URL-safe alphabet
        b"{not json",  # 2
        b"[1, 2]",  # 3
        orjson.dumps({"camera": 7}),  # 4
        orjson.dumps({"image": 12}),  # 5
        orjson.dumps({"image": "not base64!"}),  # 6
        orjson.dumps({"image": base64.b64encode(b"not an image").decode()}),  # 7
        png,  # 8 the bytes alone: not JSON
    ]
    batch = field.encode(values)
    assert batch.ok == [0, 1]
    assert np.allclose(batch.inputs["image"][0], preprocessor().encode([png]).inputs["image"][0])
    reasons = {failure.index: failure.reason.value for failure in batch.failures}
    assert reasons == {
        2: "MalformedJson",
        3: "NotAnObject",
        4: "MissingField",
        5: "WrongType",
        6: "ImageDecodeError",
        7: "ImageDecodeError",
        8: "MalformedJson",
    }
