"""The embedded predictor on the example models: buckets and warm-up (no new shapes after load), outputs,
hot reload to a new version directory, pinned versions, and a broken version that must not replace a good one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from kinfer_runtime.predictors import bucket_sizes, build_predictor
from kinfer_runtime.predictors.base import Prediction, bucket_for, pad_rows
from kinfer_runtime.predictors.embedded import EmbeddedPredictor
from kinfer_runtime.preprocess.preprocessor import Preprocessor
from kinfer_runtime.records.predictions import encode_predictions, format_outputs
from kinfer_runtime.spec import parse_pipeline
from kinfer_runtime.spec.model_metadata import load_model_metadata
from kinfer_runtime.tools.synthetic import fraud_transactions, sensor_windows

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_buckets_are_powers_of_two_up_to_the_max_batch_size():
    assert bucket_sizes(1) == [1]
    assert bucket_sizes(8) == [1, 2, 4, 8]
    assert bucket_sizes(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert [bucket_for(n, bucket_sizes(100)) for n in (1, 3, 64, 65, 100)] == [1, 4, 64, 100, 100]
    padded = pad_rows(np.ones((3, 2), np.float32), 4)
    assert padded.shape == (4, 2) and padded[3].sum() == 0 and padded[:3].sum() == 6


@pytest.fixture
def fraud_dir(tmp_path):
    shutil.copytree(MODELS / "fraud" / "1", tmp_path / "fraud" / "1")
    return tmp_path / "fraud"


def fraud_inputs(count, seed=11):
    metadata = load_model_metadata(MODELS / "fraud" / "1")
    records, _ = fraud_transactions(count, seed)
    preprocessor = Preprocessor(metadata.features, metadata.inputs, metadata.feature_inputs)
    return preprocessor.encode([orjson.dumps(r) for r in records]).inputs


def test_mixed_batch_sizes_only_ever_run_the_warmed_up_shapes(fraud_dir):
    predictor = EmbeddedPredictor("fraud", fraud_dir, max_batch_size=64)
    predictor.load()
    model = predictor.loaded
    assert model is not None and predictor.ready() and predictor.model_version == 1
    assert model.warm_batch_sizes == {1, 2, 4, 8, 16, 32, 64}
    inputs = fraud_inputs(200)
    rng = np.random.default_rng(0)
    for rows in [*rng.integers(1, 65, 40), 64, 1, 200]:
        prediction = predictor.predict({name: array[:rows] for name, array in inputs.items()})
        assert prediction.outputs["fraud_probability"].shape == (rows,)
    assert model.batch_sizes_run == model.warm_batch_sizes


def test_the_graph_is_finalized_so_nothing_is_ever_traced_after_warm_up(fraud_dir):
    """The signature runs in a session on the loaded graph, which is finalized: 300 batches of random sizes run
    without adding a single operation, and adding one is refused outright."""
    import tensorflow as tf

    predictor = EmbeddedPredictor("fraud", fraud_dir, max_batch_size=64)
    predictor.load()
    model = predictor.loaded
    assert model is not None and model.graph.finalized
    operations = len(model.graph.get_operations())
    inputs = fraud_inputs(64)
    for rows in np.random.default_rng(1).integers(1, 65, 300):
        predictor.predict({name: array[:rows] for name, array in inputs.items()})
    assert len(model.graph.get_operations()) == operations
    with pytest.raises(RuntimeError, match="finalized"), model.graph.as_default():
        tf.constant(1.0)


def test_padding_does_not_change_a_row_s_prediction(fraud_dir):
    predictor = EmbeddedPredictor("fraud", fraud_dir, max_batch_size=256)
    predictor.load()
    inputs = fraud_inputs(37)
    together = predictor.predict(inputs).outputs["fraud_probability"]
    alone = [predictor.predict({k: v[i : i + 1] for k, v in inputs.items()}).outputs["fraud_probability"][0]
             for i in range(37)]  # fmt: skip
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    assert ((together >= 0) & (together <= 1)).all() and together.std() > 0


def test_outputs_are_formatted_with_labels(fraud_dir):
    predictor = EmbeddedPredictor("fraud", fraud_dir)
    predictor.load()
    prediction = predictor.predict(fraud_inputs(5))
    rows = format_outputs(prediction, predictor.metadata)
    threshold = predictor.metadata.labels.threshold if predictor.metadata.labels else None
    assert threshold is not None and 0 < threshold < 1
    assert len(rows) == 5
    for row, score in zip(rows, prediction.outputs["fraud_probability"], strict=True):
        assert set(row) == {"fraud_probability", "label"}
        assert isinstance(row["fraud_probability"], float) and row["fraud_probability"] == pytest.approx(float(score))
        assert row["label"] == ("fraud" if score >= threshold else "legit")
    forced = Prediction({"fraud_probability": np.array([threshold - 0.01, threshold], np.float32)}, 1)
    assert [r["label"] for r in format_outputs(forced, predictor.metadata)] == ["legit", "fraud"]


@pytest.mark.parametrize(
    "outputs",
    [
        {"fraud_probability": np.array([[0.25], [np.nan], [1e-9], [0.999]], np.float32)},  # with the label
        {"score": np.array([3, -1, 0, 7], np.int64), "flag": np.array([True, False, True, False])},
        {"embedding": np.arange(8, dtype=np.float32).reshape(4, 2), "name": np.array(["a,b", 'q"x', "%d", ""])},
        {"fraud_probability": np.empty((0, 1), np.float32)},
    ],
)
def test_encoded_predictions_are_the_json_of_the_formatted_rows(fraud_dir, outputs):
    """The loop's column-at-a-time encoding gives exactly the bytes of dumping each formatted row."""
    metadata = load_model_metadata(fraud_dir / "1")
    prediction = Prediction(outputs, 1)
    rows = format_outputs(prediction, metadata)
    assert encode_predictions(prediction, metadata) == [orjson.dumps(row) for row in rows]


def test_sensor_model_scores_anomalies_higher():
    predictor = EmbeddedPredictor("sensor-anomaly", MODELS / "sensor-anomaly", max_batch_size=128)
    predictor.load()
    metadata = predictor.metadata
    records, labels = sensor_windows(400, 5, anomaly_rate=0.25)
    batch = Preprocessor(metadata.features, metadata.inputs).encode([orjson.dumps(r) for r in records])
    scores = np.concatenate(
        [predictor.predict({"window": batch.inputs["window"][i : i + 128]}).outputs["anomaly_score"]
         for i in range(0, 400, 128)]
    )  # fmt: skip
    assert scores[labels == 1].mean() > 3 * scores[labels == 0].mean()
    rows = format_outputs(Prediction({"anomaly_score": scores}, 1), metadata)
    flagged = np.array([row["label"] == "anomaly" for row in rows])
    assert flagged[labels == 1].mean() > 0.5 and flagged[labels == 0].mean() < 0.1


def test_hot_reload_swaps_in_a_new_version_after_warming_it_up(fraud_dir):
    predictor = EmbeddedPredictor("fraud", fraud_dir, reload_check_seconds=0.01)
    predictor.load()
    inputs = fraud_inputs(16)
    before = predictor.predict(inputs)
    assert before.model_version == 1
    assert predictor.maybe_reload() is False  # nothing new yet
    shutil.copytree(MODELS / "fraud" / "2", fraud_dir / "2")
    assert _reload(predictor) is True
    after = predictor.predict(inputs)
    assert after.model_version == 2 and predictor.model_version == 2 and predictor.metadata.version == 2
    assert not np.allclose(before.outputs["fraud_probability"], after.outputs["fraud_probability"])
    assert predictor.loaded is not None and predictor.loaded.batch_sizes_run == predictor.loaded.warm_batch_sizes


def test_a_broken_new_version_keeps_the_current_one_serving(fraud_dir):
    predictor = EmbeddedPredictor("fraud", fraud_dir, reload_check_seconds=0.01)
    predictor.load()
    (fraud_dir / "3").mkdir()
    (fraud_dir / "3" / "saved_model.pb").write_bytes(b"half-copied")
    (fraud_dir / "3" / "kinfer.json").write_bytes((fraud_dir / "1" / "kinfer.json").read_bytes())
    assert _reload(predictor) is False
    assert predictor.model_version == 1 and predictor.predict(fraud_inputs(2)).model_version == 1


def test_pinned_version_ignores_newer_ones(fraud_dir):
    shutil.copytree(MODELS / "fraud" / "2", fraud_dir / "2")
    predictor = EmbeddedPredictor("fraud", fraud_dir, pinned_version=1, reload_check_seconds=0.01)
    predictor.load()
    assert predictor.model_version == 1 and _reload(predictor) is False and predictor.model_version == 1


def test_missing_model_directory_fails_load_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"saved_model\.pb"):
        EmbeddedPredictor("fraud", tmp_path / "nothing").load()


def test_build_predictor_follows_the_spec(fraud_dir):
    manifest = {
        "apiVersion": "kinfer.io/v1alpha1",
        "kind": "InferencePipeline",
        "metadata": {"name": "fraud"},
        "spec": {
            "kafka": {"bootstrapServers": "localhost:9092"},
            "topics": {"input": {"name": "in"}, "output": {"name": "out"}, "deadLetter": {"name": "dlq"}},
            "model": {"name": "fraud", "uri": "pvc://models/fraud"},
            "consumer": {"maxBatchSize": 32},
        },
    }
    predictor = build_predictor(parse_pipeline(manifest), model_path=fraud_dir)
    assert isinstance(predictor, EmbeddedPredictor) and predictor.buckets[-1] == 32
    predictor.load()
    assert predictor.predict(fraud_inputs(3)).outputs["fraud_probability"].shape == (3,)


def _reload(predictor, timeout=60.0):
    """Drive maybe_reload as the loop does until the background load has finished or failed."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predictor.maybe_reload():
            return True
        predictor.wait_for_reload(timeout=1.0)
        if predictor._loader is None and predictor._loaded_next is None and time.monotonic() > deadline - timeout + 0.5:
            return predictor.maybe_reload()
        time.sleep(0.02)
    return False
