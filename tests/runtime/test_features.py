"""Preprocessing: feature encoding and scaling, spec overrides, the hook, and every bad-record reason."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest

from kinfer_runtime.preprocess.preprocessor import FailureReason, Preprocessor, PreprocessorError, merge_features
from kinfer_runtime.spec import FeatureSpec, parse_pipeline
from kinfer_runtime.spec.model_metadata import ModelMetadata, TensorInfo, load_model_metadata

MODELS = Path(__file__).resolve().parents[2] / "models"

FEATURES = [
    FeatureSpec(name="amount", required=True, scaling="standard", mean=10.0, std=2.0),
    FeatureSpec(name="hour", default=12, scaling="minMax", min=0, max=24),
    FeatureSpec(name="channel", type="categorical", vocabulary=["pos", "web"], encoding="oneHot"),
    FeatureSpec(name="country", type="categorical", vocabulary=["US", "DE", "FR"], default="DE"),
]
INPUTS = {"x": TensorInfo(shape=[None, 6])}


def encode(values, features=FEATURES, inputs=INPUTS, **kwargs):
    return Preprocessor(features, inputs, **kwargs).encode(values)


def test_numeric_and_categorical_columns_are_scaled_and_encoded():
    batch = encode([b'{"amount": 14, "hour": 6, "channel": "web", "country": "FR"}', b'{"amount": 8.0}'])
    assert batch.ok == [0, 1] and batch.failures == []
    x = batch.inputs["x"]
    assert x.dtype == np.float32 and x.shape == (2, 6)
    # amount (14-10)/2, hour 6/24, channel one-hot [pos, web, unknown], country index
    np.testing.assert_allclose(x[0], [2.0, 0.25, 0, 1, 0, 2])
    # defaults: hour 12 → 0.5, channel missing → unknown column, country default "DE" → 1
    np.testing.assert_allclose(x[1], [-1.0, 0.5, 0, 0, 1, 1])


def test_unknown_category_uses_the_unknown_bucket_unless_rejected():
    batch = encode([b'{"amount": 1, "channel": "atm", "country": "XX"}'])
    np.testing.assert_allclose(batch.inputs["x"][0, 2:], [0, 0, 1, 3])
    strict = [*FEATURES[:3], FeatureSpec(name="country", type="categorical", vocabulary=["US"], reject_unknown=True)]
    batch = encode([b'{"amount": 1, "country": "XX"}', b'{"amount": 1, "country": "US"}'], features=strict,
                   inputs={"x": TensorInfo(shape=[None, 6])})  # fmt: skip
    assert batch.ok == [1]
    assert [(f.index, f.reason) for f in batch.failures] == [(0, FailureReason.UNKNOWN_CATEGORY)]


BAD_RECORDS: dict[FailureReason, list[bytes | None]] = {
    FailureReason.EMPTY_VALUE: [None, b"", b"   "],
    FailureReason.NOT_UTF8: [b'{"amount": "\xff\xfe"}'],
    FailureReason.MALFORMED_JSON: [b'{"amount": 1', b"amount=1", b'{"amount": 1}}'],
    FailureReason.NOT_AN_OBJECT: [b"[1, 2]", b"42", b'"text"', b"null"],
    FailureReason.MISSING_FIELD: [b'{"hour": 3}', b'{"amount": null}'],
    FailureReason.WRONG_TYPE: [b'{"amount": "12"}', b'{"amount": true}', b'{"amount": [1]}',
                               b'{"amount": 1, "channel": 2.5}'],
    FailureReason.NON_FINITE: [b'{"amount": NaN}', b'{"amount": Infinity}', b'{"amount": 1, "hour": -Infinity}',
                               b'{"amount": 1e400}', b'{"amount": 1e60}'],
    FailureReason.RECORD_TOO_LARGE: [orjson.dumps({"amount": 1, "pad": "x" * 2000})],
}  # fmt: skip


@pytest.mark.parametrize("reason", list(BAD_RECORDS))
def test_bad_records_get_their_reason_and_good_ones_still_encode(reason):
    good = b'{"amount": 12, "channel": "pos"}'
    values = [good, *BAD_RECORDS[reason], good]
    batch = encode(values, max_record_bytes=1000)
    assert batch.ok == [0, len(values) - 1]
    assert [f.index for f in batch.failures] == list(range(1, len(values) - 1))
    assert {f.reason for f in batch.failures} == {reason}, batch.failures
    assert all(f.message for f in batch.failures)
    assert batch.inputs["x"].shape == (2, 6)
    np.testing.assert_allclose(batch.inputs["x"][1], batch.inputs["x"][0])


def test_only_the_first_problem_of_a_record_is_reported():
    batch = encode([b'{"amount": "x", "channel": 5.5}'])
    assert [(f.reason, "amount" in f.message) for f in batch.failures] == [(FailureReason.WRONG_TYPE, True)]


ARRAY = [FeatureSpec(name="window", type="array", required=True, shape=[4, 2], scaling="standard", mean=1, std=2)]
ARRAY_INPUTS = {"window": TensorInfo(shape=[None, 4, 2])}


def test_array_feature_fills_a_tensor_input_with_its_shape():
    window = [[1, 3], [5, 7], [1, 1], [3, 3]]
    batch = encode([orjson.dumps({"window": window})] * 3, features=ARRAY, inputs=ARRAY_INPUTS)
    assert batch.inputs["window"].shape == (3, 4, 2)
    np.testing.assert_allclose(batch.inputs["window"][2], (np.array(window) - 1) / 2)


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ([[1, 2]] * 3, FailureReason.WRONG_SHAPE),
        ([[1, 2, 3]] * 4, FailureReason.WRONG_SHAPE),
        ([[1, 2], [3], [1, 1], [3, 3]], FailureReason.WRONG_SHAPE),
        ([[1, "a"]] * 4, FailureReason.WRONG_TYPE),
        ([[1, None]] * 4, FailureReason.WRONG_TYPE),
        (None, FailureReason.MISSING_FIELD),
        ([[1, 2], [3, 4], [5, 6], [7, float("nan")]], FailureReason.NON_FINITE),
    ],
)
def test_bad_arrays(window, reason):
    good = orjson.dumps({"window": [[0, 0]] * 4})
    bad = orjson.dumps({"window": window}) if window is None or not _has_nan(window) else _nan_json(window)
    batch = encode([good, bad], features=ARRAY, inputs=ARRAY_INPUTS)
    assert batch.ok == [0]
    assert [(f.index, f.reason) for f in batch.failures] == [(1, reason)]


def _has_nan(window):
    return any(isinstance(v, float) and math.isnan(v) for row in window for v in row)


def _nan_json(window):
    return ("{" + '"window": ' + str(window).replace("nan", "NaN") + "}").encode()


def test_hook_sees_decoded_records_and_can_fix_or_reject_them():
    def hook(records):
        return [ValueError("no amount") if "cents" not in r else {**r, "amount": r["cents"] / 100} for r in records]

    batch = encode([b'{"cents": 1400}', b'{"euros": 3}', b"{bad"], hook=hook)
    assert batch.ok == [0]
    np.testing.assert_allclose(batch.inputs["x"][0, 0], (14 - 10) / 2)
    assert [(f.index, f.reason) for f in batch.failures] == [
        (1, FailureReason.HOOK_ERROR),
        (2, FailureReason.MALFORMED_JSON),
    ]

    def broken(records):
        raise RuntimeError("boom")

    batch = encode([b'{"amount": 1}'] * 2, hook=broken)
    assert batch.ok == [] and {f.reason for f in batch.failures} == {FailureReason.HOOK_ERROR}
    assert batch.inputs["x"].shape == (0, 6)


def test_hook_is_imported_from_the_spec(tmp_path, monkeypatch):
    (tmp_path / "my_hooks.py").write_text("def double(records):\n    for r in records:\n        r['amount'] *= 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    metadata = ModelMetadata(name="m", version=1, inputs=INPUTS, features=FEATURES, outputs=INPUTS)
    pipeline = _pipeline({"hook": "my_hooks:double"})
    batch = Preprocessor.from_spec(pipeline.spec, metadata).encode([b'{"amount": 11}'])
    assert batch.inputs["x"][0, 0] == pytest.approx((22 - 10) / 2)


def test_spec_features_override_the_model_metadata():
    metadata = load_model_metadata(MODELS / "fraud" / "1")
    override = FeatureSpec(name="amount", required=True, scaling="minMax", min=0, max=1000)
    pipeline = _pipeline({"features": [override.to_wire()]})
    preprocessor = Preprocessor.from_spec(pipeline.spec, metadata)
    record = b'{"amount": 250, "hour": 1, "channel": "pos", "merchant_category": "fuel"}'
    batch = preprocessor.encode([record])
    assert batch.inputs["dense"][0, 0] == pytest.approx(0.25)
    assert batch.inputs["merchant_category"].dtype == np.int64
    vocabulary = metadata.features[-1].vocabulary or []
    assert batch.inputs["merchant_category"][0, 0] == vocabulary.index("fuel")


def test_a_spec_that_cannot_fill_the_inputs_is_refused_at_compile_time():
    with pytest.raises(PreprocessorError, match="give"):
        Preprocessor(FEATURES[:2], INPUTS)
    with pytest.raises(PreprocessorError, match="not mapped"):
        Preprocessor(FEATURES, {"a": TensorInfo(shape=[None, 1]), "b": TensorInfo(shape=[None, 5])})
    with pytest.raises(PreprocessorError, match="not defined"):
        Preprocessor(FEATURES, INPUTS, {"x": ["amount", "nope"]})


def test_merge_features_replaces_by_name_and_appends_new_ones():
    extra = FeatureSpec(name="extra")
    merged = merge_features(FEATURES, [FeatureSpec(name="hour"), extra])
    assert [f.name for f in merged] == ["amount", "hour", "channel", "country", "extra"]
    assert merged[1].default is None and merged[1].min is None  # replaced whole, not merged field by field


def test_example_models_metadata_encode_their_synthetic_records():
    from kinfer_runtime.tools.synthetic import fraud_transactions, sensor_windows

    for name, (records, _) in {"fraud": fraud_transactions(50, 3), "sensor-anomaly": sensor_windows(50, 3)}.items():
        metadata = load_model_metadata(MODELS / name / "1")
        batch = Preprocessor(metadata.features, metadata.inputs, metadata.feature_inputs).encode(
            [orjson.dumps(r) for r in records]
        )
        assert batch.failures == [] and len(batch.ok) == 50
        for input_name, info in metadata.inputs.items():
            assert batch.inputs[input_name].shape == (50, *info.row_shape)


def _pipeline(preprocessing):
    return parse_pipeline(
        {
            "apiVersion": "kinfer.io/v1alpha1",
            "kind": "InferencePipeline",
            "metadata": {"name": "p"},
            "spec": {
                "kafka": {"bootstrapServers": "localhost:9092"},
                "topics": {"input": {"name": "in"}, "output": {"name": "out"}, "deadLetter": {"name": "dlq"}},
                "model": {"name": "fraud", "uri": str(MODELS / "fraud")},
                "preprocessing": preprocessing,
            },
        }
    )


def test_numeric_features_encoded_together_equal_each_encoded_alone():
    """A batch whose numeric values are all numbers takes preprocess/columns.py encode_numeric_block (one array
    operation for all numeric features); it must give each column what the feature's own encoder gives, as a
    batch with one bad record does (that one takes every encoder's own path)."""
    features = [*FEATURES, FeatureSpec(name="raw"), FeatureSpec(name="small", scaling="standard", mean=0.5, std=3)]
    inputs = {"x": TensorInfo(shape=[None, 8])}
    rng = np.random.default_rng(11)
    records = [{"amount": float(a), "hour": int(h), "raw": float(r), "small": int(s), "channel": "pos"}
               for a, h, r, s in zip(rng.normal(10, 5, 300), rng.integers(0, 24, 300), rng.normal(0, 1e6, 300),
                                     rng.integers(-9, 9, 300), strict=True)]  # fmt: skip
    preprocessor = Preprocessor(features, inputs)
    assert preprocessor.plans[0].block is not None and len(preprocessor.plans[0].block.columns) == 4
    together = preprocessor.encode([orjson.dumps(r) for r in records])
    alone = preprocessor.encode([orjson.dumps(r) for r in records] + [b'{"amount": "ten"}'])
    assert together.ok == list(range(300)) and alone.ok == list(range(300))
    assert [f.reason for f in alone.failures] == [FailureReason.WRONG_TYPE]
    np.testing.assert_array_equal(together.inputs["x"], alone.inputs["x"])
