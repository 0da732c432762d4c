"""Input drift (kinfer_runtime.quality.drift): training statistics, bucket counts, PSI, the sliding window, and the
fraud model's own statistics against records drawn like its training data and records drawn from a shifted
distribution."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from prometheus_client import generate_latest

from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.preprocess.preprocessor import Preprocessor
from kinfer_runtime.quality.bucket_plan import BucketPlan
from kinfer_runtime.quality.drift import (
    MIN_RECORDS,
    WINDOW_RECORDS,
    DriftWindow,
    WatchedFeature,
    bucket_counts,
    psi,
    training_statistics,
    watched_features,
)
from kinfer_runtime.spec import FeatureSpec
from kinfer_runtime.spec.model_metadata import FeatureStatistics, ModelMetadata, load_model_metadata
from kinfer_runtime.tools.synthetic import fraud_transactions
from tests.runtime.integration.harness import FRAUD_MODEL

NUMERIC = FeatureSpec(name="x")
COLOUR = FeatureSpec(name="colour", type="categorical", vocabulary=["red", "green"], encoding="oneHot")
SIZE = FeatureSpec(name="size", type="categorical", vocabulary=["s", "m", "l"], encoding="index")


def test_training_statistics_cut_a_numeric_column_at_its_deciles() -> None:
    column = np.random.default_rng(1).normal(50, 10, size=(20_000, 1))
    statistics = training_statistics(column, NUMERIC)
    assert statistics is not None and statistics.kind == "numeric"
    assert len(statistics.edges) == 9 and statistics.edges == sorted(statistics.edges)
    assert statistics.shares == pytest.approx([0.1] * 10, abs=1e-3)
    assert 48 < statistics.edges[4] < 52  # the median


def test_categorical_statistics_have_a_bucket_for_unknown_values_in_both_encodings() -> None:
    one_hot = np.array([[1, 0, 0]] * 3 + [[0, 1, 0]] * 1, dtype=np.float32)  # 3 red, 1 green, no unknown
    assert training_statistics(one_hot, COLOUR).shares == [0.75, 0.25, 0.0]  # type: ignore[union-attr]
    index = np.array([[0], [1], [1], [2], [3]])  # 3 is unknown (len(vocabulary))
    assert training_statistics(index, SIZE).shares == [0.2, 0.4, 0.2, 0.2]  # type: ignore[union-attr]
    assert training_statistics(np.zeros((4, 6)), FeatureSpec(name="w", type="array", shape=[6])) is None


def test_shares_rounded_to_six_places_never_make_the_unknown_bucket_negative() -> None:
    # 1/6, 1/6, 4/6 round to 0.166667, 0.166667, 0.666667: one millionth more than 1 before the unknown bucket.
    index = np.array([[0], [1], [2], [2], [2], [2]])
    statistics = training_statistics(index, SIZE)
    assert statistics is not None and statistics.shares == [0.166667, 0.166667, 0.666667, 0.0]


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shifted_one() -> None:
    rng = np.random.default_rng(2)
    statistics = training_statistics(rng.normal(0, 1, size=(50_000, 1)), NUMERIC)
    assert statistics is not None
    expected = np.asarray(statistics.shares)
    same = psi(expected, bucket_counts(rng.normal(0, 1, size=(5_000, 1)), statistics))
    moved = psi(expected, bucket_counts(rng.normal(1, 1, size=(5_000, 1)), statistics))
    assert same < 0.02, same
    assert moved > 0.25, moved
    assert psi(expected, np.zeros(10)) == pytest.approx(0.0)  # nothing counted yet: no evidence of drift


def window_for(statistics: FeatureStatistics) -> DriftWindow:
    return DriftWindow([WatchedFeature("x", "dense", 0, 1, statistics)])


def test_the_window_reports_nothing_until_it_holds_enough_records_then_slides() -> None:
    rng = np.random.default_rng(3)
    statistics = training_statistics(rng.normal(0, 1, size=(50_000, 1)), NUMERIC)
    assert statistics is not None
    window = window_for(statistics)
    window.observe({"dense": rng.normal(3, 1, size=(MIN_RECORDS - 1, 1))})
    assert window.psi() == {}
    for _ in range(WINDOW_RECORDS // 250):  # a window of shifted records, in batches of 250
        window.observe({"dense": rng.normal(3, 1, size=(250, 1))})
    assert window.psi()["x"] > 1.0
    for _ in range(WINDOW_RECORDS // 250 + 4):  # then a window and a slot of undisturbed ones
        window.observe({"dense": rng.normal(0, 1, size=(250, 1))})
    assert window.psi()["x"] < 0.02, "the shifted records have left the window"
    assert WINDOW_RECORDS <= window.records() <= WINDOW_RECORDS * 1.1


def test_the_batches_of_the_slot_being_filled_count_as_soon_as_the_window_is_read() -> None:
    statistics = FeatureStatistics(kind="numeric", edges=[0.0], shares=[0.5, 0.5])
    window = window_for(statistics)
    for _ in range(3):  # 300 records: the slot of 1,000 is not full, nothing is counted yet
        window.observe({"dense": np.full((100, 1), 5.0)})
    window.observe({"dense": np.full((400, 1), -5.0)})
    assert window.records() == 700 and len(window.slots) == 0
    assert [list(c) for c in window.counts()] == [[400, 300]]
    window.observe({"dense": np.full((300, 1), 5.0)})  # the slot is full: counted once and kept
    assert len(window.slots) == 1 and list(window.slots[0][1]) == [400, 600]
    assert [list(c) for c in window.counts()] == [[400, 600]] and window.records() == 1_000


def test_a_feature_is_watched_only_with_statistics_and_served_as_trained() -> None:
    statistics = FeatureStatistics(kind="numeric", edges=[0.0], shares=[0.5, 0.5])
    metadata = ModelMetadata(name="m", version=1, inputs={"dense": {"shape": [None, 4]}},
                             outputs={"y": {"shape": [None]}}, features=[NUMERIC, COLOUR],
                             training_statistics={"x": statistics})  # fmt: skip
    columns = Preprocessor([NUMERIC, COLOUR], metadata.inputs).feature_columns()
    assert columns == [("x", "dense", 0, 1), ("colour", "dense", 1, 4)]
    (watched,) = watched_features(columns, [NUMERIC, COLOUR], metadata)
    assert (watched.name, watched.start, watched.stop) == ("x", 0, 1)
    rescaled = FeatureSpec(name="x", scaling="standard", mean=3, std=2)  # the pipeline overrides the scaling
    assert watched_features(columns, [rescaled, COLOUR], metadata) == []


def test_kinfer_json_refuses_statistics_that_cannot_be_right() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        FeatureStatistics(kind="categorical", shares=[0.5, 0.6])
    with pytest.raises(ValueError, match="edges"):
        FeatureStatistics(kind="numeric", edges=[1.0, 2.0], shares=[0.5, 0.5])
    with pytest.raises(ValueError, match="not features"):
        ModelMetadata(name="m", version=1, inputs={"dense": {"shape": [None, 1]}}, outputs={"y": {"shape": [None]}},
                      features=[NUMERIC],
                      training_statistics={"z": {"kind": "categorical", "shares": [1, 0]}})  # fmt: skip


def fraud_window(records: list[dict[str, object]]) -> dict[str, float]:
    metadata = load_model_metadata(FRAUD_MODEL / "2")
    preprocessor = Preprocessor(metadata.features, metadata.inputs, metadata.feature_inputs)
    window = DriftWindow(watched_features(preprocessor.feature_columns(), preprocessor.features, metadata))
    assert {f.name for f in window.features} == {f.name for f in metadata.features}
    for start in range(0, len(records), 256):
        window.observe(preprocessor.encode([orjson.dumps(r) for r in records[start : start + 256]]).inputs)
    return window.psi()


def test_the_fraud_models_statistics_tell_its_own_data_from_shifted_data() -> None:
    records, _ = fraud_transactions(WINDOW_RECORDS, seed=99)  # drawn like the training data, another seed
    undisturbed = fraud_window(records)
    assert max(undisturbed.values()) < 0.05, undisturbed
    shifted = fraud_window([{**r, "amount": r["amount"] * 4, "channel": "online"} for r in records])
    assert shifted["amount"] > 0.25 and shifted["channel"] > 0.25, shifted
    assert shifted["hour"] < 0.05 and shifted["country"] < 0.05, "the other features did not move"


def test_the_drift_gauge_drops_features_it_no_longer_reports() -> None:
    metrics = RuntimeMetrics("ns", "p")
    metrics.set_drift({"amount": 0.4, "hour": 0.01}, 5_000)
    text = generate_latest(metrics.registry).decode()
    assert 'kinfer_feature_drift_psi{feature="amount",namespace="ns",pipeline="p"} 0.4' in text
    metrics.set_drift({}, 10)  # a new model version: its window is filling
    text = generate_latest(metrics.registry).decode()
    assert "kinfer_feature_drift_psi{" not in text
    assert 'kinfer_drift_window_records{namespace="ns",pipeline="p"} 10.0' in text


def test_a_batch_is_counted_as_bucket_counts_counts_each_feature() -> None:
    """quality/bucket_plan.py counts every feature of a tensor together; each feature's buckets must equal
    bucket_counts' for that feature alone: the fraud model's numeric, one-hot and index features, on records
    with unknown categories and values beyond every edge; then a numeric feature with values on its edges."""
    metadata = load_model_metadata(FRAUD_MODEL / "2")
    preprocessor = Preprocessor(metadata.features, metadata.inputs, metadata.feature_inputs)
    features = watched_features(preprocessor.feature_columns(), preprocessor.features, metadata)
    records, _ = fraud_transactions(1_000, seed=5)
    for i, record in enumerate(records[:40]):
        record.update(country="ZZ", merchant_category="unheard-of") if i % 2 else record.update(amount=1e9)
    inputs = preprocessor.encode([orjson.dumps(r) for r in records]).inputs
    plan = BucketPlan(features)
    counts, rows = plan.count(inputs)
    assert rows == 1_000 and len(features) == 7
    for feature, counted in zip(features, plan.split(counts), strict=True):
        tensor = inputs[feature.input]
        alone = bucket_counts(tensor.reshape(len(tensor), -1)[:, feature.start : feature.stop], feature.statistics)
        assert counted.tolist() == alone.tolist(), feature.name

    on_edges = FeatureStatistics(kind="numeric", edges=[-1.0, 0.0, 0.5, 2.0], shares=[0.2] * 5)
    values = np.array([[-3.0], [-1.0], [0.0], [0.25], [0.5], [2.0], [7.0], [0.5]], dtype=np.float32)
    counts, _ = BucketPlan([WatchedFeature("x", "dense", 0, 1, on_edges)]).count({"dense": values})
    assert counts.tolist() == bucket_counts(values, on_edges).tolist() == [1, 1, 2, 2, 2]
