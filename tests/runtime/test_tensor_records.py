"""Tensor records (``spec.preprocessing.format: tensor``): raw little-endian bytes and .npy files become the
model's one input; every other value is left out with its reason, the good ones keep their order."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from kinfer_runtime.preprocess.input_plan import PreprocessorError
from kinfer_runtime.preprocess.tensor_records import TensorPreprocessor
from kinfer_runtime.spec import SpecError
from tests.runtime.example_pipelines import example_pipeline, example_preprocessor


def preprocessor(**tensor: Any) -> TensorPreprocessor:
    spec = {"format": "tensor", **({"tensor": tensor} if tensor else {})}
    built = example_preprocessor("sensor-anomaly", 1, spec)
    assert isinstance(built, TensorPreprocessor)
    return built


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def windows(count: int) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(count, 32, 3)).astype(np.float32)


def test_raw_records_are_read_in_one_pass_as_the_models_input() -> None:
    rows = windows(64)
    encoded = preprocessor().encode([row.astype("<f4").tobytes() for row in rows])
    assert encoded.ok == list(range(64)) and encoded.failures == []
    assert encoded.inputs["window"].shape == (64, 32, 3) and encoded.inputs["window"].dtype == np.float32
    assert np.array_equal(encoded.inputs["window"], rows)


def test_every_bad_value_is_left_out_with_its_reason() -> None:
    rows = windows(10)
    nan = rows[5].copy()
    nan[3, 1] = np.nan
    corrupt = npy(rows[0])[:12] + b"{'descr': nonsense}" + b" " * 100
    values: list[bytes | None] = [
        rows[0].tobytes(),  # 0 raw
        npy(rows[1]),  # 1 .npy
        rows[2].tobytes()[:-4],  # 2 one element short
        npy(rows[3].astype(np.float64)),  # 3 .npy of another dtype
        npy(rows[4].reshape(3, 32)),  # 4 .npy of another shape
        nan.tobytes(),  # 5 NaN
        corrupt,  # 6 a .npy header NumPy refuses
        b"",  # 7 empty
        None,  # 8 a tombstone
        rows[9].tobytes(),  # 9 raw
    ]
    encoded = preprocessor().encode(values)
    assert encoded.ok == [0, 1, 9]
    assert np.array_equal(encoded.inputs["window"], rows[[0, 1, 9]])
    reasons = {failure.index: failure.reason.value for failure in encoded.failures}
    assert reasons == {2: "WrongShape", 3: "WrongType", 4: "WrongShape", 5: "NonFinite", 6: "MalformedTensor",
                       7: "EmptyValue", 8: "EmptyValue"}  # fmt: skip
    assert all(failure.message for failure in encoded.failures)


def test_records_of_another_dtype_and_shape_are_converted_to_the_models() -> None:
    rows = windows(4).astype(np.float64)
    encoded = preprocessor(dtype="float64", shape=[96]).encode([row.reshape(96).tobytes() for row in rows])
    assert encoded.ok == [0, 1, 2, 3] and encoded.inputs["window"].dtype == np.float32
    assert np.allclose(encoded.inputs["window"], rows)


def test_a_candidate_reads_the_live_versions_decoded_rows() -> None:
    live = preprocessor()
    rows = windows(6)
    encoded = live.encode([row.tobytes() for row in rows[:3]] + [b"short"] + [row.tobytes() for row in rows[4:]])
    again = preprocessor().encode_documents(encoded.decoded([0, 4, 5]))
    assert again.ok == [0, 1, 2] and np.array_equal(again.inputs["window"], rows[[0, 4, 5]])


def test_a_tensor_spec_that_cannot_fill_the_input_is_refused() -> None:
    with pytest.raises(PreprocessorError, match=r"holds 95 elements; model input 'window' takes 96"):
        preprocessor(shape=[95])
    with pytest.raises(SpecError, match=r"features and preprocessing\.hook do not apply"):
        example_pipeline(
            "sensor-anomaly", {"format": "tensor", "features": [{"name": "window", "type": "array", "shape": [32, 3]}]}
        )
    with pytest.raises(SpecError, match=r"needs preprocessing\.format tensor"):
        example_pipeline("sensor-anomaly", {"tensor": {"dtype": "float32"}})
