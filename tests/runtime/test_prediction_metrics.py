"""What the model's owners see of its outputs: score histograms and label counts per model version."""

from __future__ import annotations

import numpy as np
from prometheus_client import generate_latest

from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.predictors.base import Prediction
from kinfer_runtime.records.predictions import score_columns
from kinfer_runtime.spec.model_metadata import load_model_metadata
from tests.runtime.integration.harness import FRAUD_MODEL


def test_score_columns_are_the_numeric_outputs_and_the_labels() -> None:
    metadata = load_model_metadata(FRAUD_MODEL / "2")
    assert metadata.labels is not None and metadata.labels.threshold is not None
    cut = metadata.labels.threshold
    prediction = Prediction({"fraud_probability": np.array([[cut - 0.01], [cut + 0.01], [0.99]], np.float32)}, 2)
    scores, labels = score_columns(prediction, metadata)
    assert list(scores) == ["fraud_probability"] and scores["fraud_probability"].dtype == np.float64
    assert scores["fraud_probability"].shape == (3,)
    assert labels == ["legit", "fraud", "fraud"]


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels}")


def test_scores_and_labels_are_counted_per_model_version() -> None:
    metrics = RuntimeMetrics("ns", "p")
    metrics.observe_predictions(1, {"score": np.array([0.02, 0.3, 0.97, np.nan])}, ["a", "b", "b"])
    metrics.observe_predictions(2, {"score": np.array([0.5])}, ["a"])
    text = generate_latest(metrics.registry).decode()
    bucket = "kinfer_prediction_score_bucket"
    assert sample(text, bucket, output="score", model_version="1", le="0.025") == 1
    assert sample(text, bucket, output="score", model_version="1", le="0.3") == 2
    assert sample(text, bucket, output="score", model_version="1", le="+Inf") == 3, "the NaN is not counted"
    assert sample(text, "kinfer_prediction_score_sum", model_version="1") == np.float64(0.02 + 0.3 + 0.97)
    assert sample(text, bucket, output="score", model_version="2", le="+Inf") == 1
    assert sample(text, "kinfer_predictions_total", label="b", model_version="1") == 2
    assert sample(text, "kinfer_predictions_total", label="a", model_version="2") == 1
