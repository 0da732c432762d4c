"""What the prediction-quality metrics cost per record, timed in one process (issue 14: at most 5 % of the loop).

Two kinfer runs with ``spec.monitoring.qualityMetrics`` on and off differ by more than this cost from one run to
the next on a shared machine (the produce stage, which the metrics do not touch, moved by 15 % between such runs).
So the bench also times the metrics' own work on the same batches, in this process, with the runtime's code: the
scoring of a 256-record batch with and without score histograms and label counts, and the drift window's count
of the batch's inputs. Divided by kinfer's loop time per record (the sum of its stages in run (d)) it is the share
of the loop they take.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

BATCH = 256
ROUNDS = 300


def per_record_us(action: Callable[[], Any]) -> float:
    """Microseconds per record of ``action`` on one batch: the best of three timings of ROUNDS calls (the
    least disturbed by the rest of the machine)."""
    action()
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(ROUNDS):
            action()
        timings.append(time.perf_counter() - started)
    return min(timings) / ROUNDS / BATCH * 1e6


def quality_cost(model_dir: Path) -> dict[str, float]:
    from kinfer_runtime.observability.metrics import RuntimeMetrics
    from kinfer_runtime.pipeline.scoring import Scorer
    from kinfer_runtime.predictors import build_predictor
    from kinfer_runtime.preprocess.preprocessor import Preprocessor
    from kinfer_runtime.quality.drift import DriftWindow, watched_features
    from kinfer_runtime.records.predictions import encode_predictions
    from kinfer_runtime.spec import parse_pipeline
    from kinfer_runtime.tools.synthetic import fraud_transactions

    pipeline = parse_pipeline({
        "apiVersion": "kinfer.io/v1alpha1",
        "kind": "InferencePipeline",
        "metadata": {"name": "cost", "namespace": "bench"},
        "spec": {
            "kafka": {"bootstrapServers": "127.0.0.1:9092"},
            "topics": {"input": {"name": "in"}, "output": {"name": "out"}, "deadLetter": {"name": "dlq"}},
            "model": {"name": "fraud", "uri": "pvc://models/fraud", "versionPolicy": "Pinned", "version": 1},
        },
    })  # fmt: skip
    predictor = build_predictor(pipeline, model_path=model_dir)
    predictor.load()
    preprocessor = Preprocessor.from_spec(pipeline.spec, predictor.metadata)
    records, _ = fraud_transactions(BATCH, seed=7)
    encoded = preprocessor.encode([orjson.dumps(r) for r in records])
    rows, metadata = list(encoded.ok), predictor.metadata
    metrics = RuntimeMetrics("bench", "cost")
    with_metrics = Scorer(predictor, encode_predictions, metrics, None, None, quality=True)
    without = Scorer(predictor, encode_predictions, metrics, None, None, quality=False)
    drift = DriftWindow(watched_features(preprocessor.feature_columns(), preprocessor.features, metadata))
    scoring_on = per_record_us(lambda: with_metrics.score([], rows, encoded.inputs, metadata))
    scoring_off = per_record_us(lambda: without.score([], rows, encoded.inputs, metadata))
    drift_us = per_record_us(lambda: drift.observe(encoded.inputs))
    predictor.close()
    return {
        "quality_scoring_us_per_record": max(0.0, scoring_on - scoring_off),
        "quality_drift_us_per_record": drift_us,
        "quality_drift_features": float(len(drift.features)),
    }
