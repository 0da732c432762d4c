"""The typed way of decoding a batch (preprocess/typed_decoding.py) gives what the general way gives, and hands
every batch it cannot read whole to the general way, which says what is wrong with which record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from kinfer_runtime.preprocess.preprocessor import EncodedBatch, Preprocessor
from kinfer_runtime.preprocess.typed_decoding import TypedDecoder
from kinfer_runtime.spec import FeatureSpec
from kinfer_runtime.spec.model_metadata import load_model_metadata
from kinfer_runtime.tools.synthetic import fraud_transactions

FRAUD = Path(__file__).resolve().parents[2] / "models" / "fraud" / "1"


def preprocessors(**changes: dict[str, object]) -> tuple[Preprocessor, Preprocessor]:
    """The fraud model's preprocessing twice: the typed way where a batch allows, and the general way only."""
    metadata = load_model_metadata(FRAUD)
    features = [feature.model_copy(update=changes.get(feature.name, {})) for feature in metadata.features]
    typed = Preprocessor(features, metadata.inputs, metadata.feature_inputs)
    general = Preprocessor(features, metadata.inputs, metadata.feature_inputs)
    general.typed = None
    return typed, general


def same(a: EncodedBatch, b: EncodedBatch) -> None:
    assert a.ok == b.ok
    assert [(f.index, f.reason, f.message) for f in a.failures] == [(f.index, f.reason, f.message) for f in b.failures]
    assert a.inputs.keys() == b.inputs.keys()
    for name in a.inputs:
        assert a.inputs[name].dtype == b.inputs[name].dtype
        np.testing.assert_array_equal(a.inputs[name], b.inputs[name])


def values(records: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(record) for record in records]


def test_the_usual_batch_is_decoded_the_typed_way_into_the_same_tensors() -> None:
    typed, general = preprocessors()
    records, _ = fraud_transactions(300, seed=7)
    records[3]["hour"] = 7  # an integer where the data has floats elsewhere: the same float64
    records[4]["amount"] = 12  # ditto, for a feature the data holds as floats
    records[5]["country"] = "XX"  # an unknown category is not a failure unless the feature says so
    batch = values(records)
    fast = typed.encode(batch)
    assert fast.undecoded is batch and not fast.documents  # the typed way was taken: no dict was built
    slow = general.encode(batch)
    assert slow.undecoded is None and len(slow.documents) == len(records)
    same(fast, slow)
    # Another version (a canary) asking for the records gets the dicts the general way would have kept.
    assert fast.decoded([5, 0, 299]) == slow.decoded([5, 0, 299]) == [records[5], records[0], records[299]]


@pytest.mark.parametrize(
    "odd",
    [
        {"amount": None},  # null
        {"amount": True},  # a boolean is not a number here
        {"amount": "12.5"},  # a string is not a number
        {"country": 3},  # an integer category code: read as its text, the general way only
        {"country": None},
        {"merchant_risk": [0.5]},
    ],
)
def test_a_record_of_another_shape_sends_the_batch_the_general_way(odd: dict[str, Any]) -> None:
    typed, general = preprocessors()
    records, _ = fraud_transactions(20, seed=1)
    records[11].update(odd)
    batch = values(records)
    assert typed.typed is not None and typed.typed.decode(batch) is None
    encoded = typed.encode(batch)
    assert encoded.undecoded is None
    same(encoded, general.encode(batch))


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"   ",
        b"[1, 2]",
        b'{"amount": 1',
        b'{"amount": NaN, "hour": 1}',
        b'{"amount": 1e999}',
        b"\xff\xfe",
        b'{"amount": 5.0, "hour": 3}',  # features missing
        b'{"x": ' + b"[" * 1000 + b"]" * 1000 + b"}",  # deeper than msgspec goes (orjson reads it)
    ],
)
def test_unreadable_records_are_found_by_the_general_way(value: bytes | None) -> None:
    typed, general = preprocessors()
    batch: list[Any] = values(fraud_transactions(5, seed=2)[0])
    batch.insert(2, value)
    encoded = typed.encode(batch)
    assert encoded.undecoded is None
    same(encoded, general.encode(batch))
    assert 2 not in encoded.ok


def test_a_value_over_the_size_limit_goes_the_general_way() -> None:
    metadata = load_model_metadata(FRAUD)
    typed = Preprocessor(metadata.features, metadata.inputs, metadata.feature_inputs, max_record_bytes=400)
    batch = values(fraud_transactions(3, seed=4)[0])
    assert typed.encode(batch).undecoded is batch
    batch[1] = batch[1][:-1] + b', "padding": "' + b"x" * 400 + b'"}'
    encoded = typed.encode(batch)
    assert encoded.undecoded is None and [f.index for f in encoded.failures] == [1]


def test_a_value_finite_as_read_but_not_once_scaled_fails_alike() -> None:
    typed, general = preprocessors(amount={"std": 1e-30})
    records, _ = fraud_transactions(6, seed=5)
    records[2]["amount"] = 1e300
    batch = values(records)
    encoded = typed.encode(batch)
    assert encoded.undecoded is batch  # read the typed way; the scaled value overflows
    same(encoded, general.encode(batch))
    assert [(f.index, f.reason) for f in encoded.failures] == [(2, "NonFinite")]


def test_features_read_by_name_whatever_the_name() -> None:
    features = [
        FeatureSpec(name="a b", type="numeric"),
        FeatureSpec(name="class", type="categorical", vocabulary=["x", "y"]),
    ]
    decoder = TypedDecoder.for_features(features, 1000)
    assert decoder is not None
    records = decoder.decode([b'{"a b": 2, "class": "y", "other": {"n": [1]}}'])
    assert records is not None
    assert records == {"a b": (2.0,), "class": ("y",)}


def test_array_features_and_hooks_always_go_the_general_way() -> None:
    features = [FeatureSpec(name="a", type="numeric"), FeatureSpec(name="v", type="array", shape=[2])]
    assert TypedDecoder.for_features(features, 1000) is None
    metadata = load_model_metadata(FRAUD)
    hooked = Preprocessor(metadata.features, metadata.inputs, metadata.feature_inputs, hook=lambda docs: None)
    assert hooked.typed is None
