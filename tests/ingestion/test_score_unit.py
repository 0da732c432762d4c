"""Unit tests of ``kinfer score``'s batching, error mapping and output writers (a stand-in predictor, no TF)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow.parquet as pq

from kinfer_runtime.predictors.base import Prediction, PredictionFailed
from kinfer_runtime.spec import parse_pipeline
from kinfer_runtime.spec.model_metadata import load_model_metadata
from kinfer_runtime.tools.score import describe_outcomes, score_batches
from kinfer_runtime.tools.score_inputs import ScoreInput
from kinfer_runtime.tools.score_sinks import ScoreWriter, flatten
from tests.ingestion.pipelines import REPO, pipeline_manifest

METADATA = load_model_metadata(REPO / "models" / "fraud" / "1")
PIPELINE = parse_pipeline(pipeline_manifest("fraud", "x:1", {"input": "i", "output": "o", "deadLetter": "d"}))
GOOD = {"amount": 10.0, "hour": 3, "merchant_category": "grocery", "country": "DE", "channel": "web"}


class RowNumberPredictor:
    """Returns each row's first input column as its score, so results can be traced back to their rows."""

    model_version = 1
    metadata = METADATA

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls: list[int] = []
        self.fail_on_call = fail_on_call

    def predict(self, inputs: dict[str, np.ndarray]) -> Prediction:
        self.calls.append(len(next(iter(inputs.values()))))
        if self.fail_on_call == len(self.calls):
            raise PredictionFailed("model rejected the batch")
        dense = inputs["dense"]
        return Prediction({"fraud_probability": dense[:, 0].astype(np.float32)}, model_version=1)


def inputs_for(values: list[bytes | None]) -> list[ScoreInput]:
    return [ScoreInput(v, {"file": "f", "record": i + 1}) for i, v in enumerate(values)]


def test_every_input_gets_one_result_in_order_with_failures_in_place() -> None:
    values: list[bytes | None] = [orjson.dumps({**GOOD, "amount": float(i)}) for i in range(7)]
    values[2], values[5] = b"{oops", None
    predictor = RowNumberPredictor()
    results = list(score_batches(PIPELINE, inputs_for(values), predictor, batch_size=3))
    assert predictor.calls == [2, 2, 1]  # batches of 3 inputs, minus the failures
    assert [r["source"]["record"] for r in results] == [1, 2, 3, 4, 5, 6, 7]
    assert results[2]["error"]["class"] == "MalformedJson" and results[5]["error"]["class"] == "EmptyValue"
    scores = [r["prediction"]["fraud_probability"] for r in results if "prediction" in r]
    assert scores == sorted(scores) and len(set(scores)) == 5  # amount increases with the record number
    assert results[0]["model"] == {"name": "fraud", "version": 1}


def test_a_failed_model_call_marks_only_that_batch() -> None:
    values: list[bytes | None] = [orjson.dumps(GOOD)] * 4
    results = list(score_batches(PIPELINE, inputs_for(values), RowNumberPredictor(fail_on_call=2), batch_size=2))
    assert ["error" in r for r in results] == [False, False, True, True]
    assert results[2]["error"] == {"class": "PredictionFailed", "message": "model rejected the batch"}


def test_parquet_writer_handles_errors_before_the_first_prediction(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    writer = ScoreWriter.open(str(path))
    writer.rows_per_group = 2
    writer.write(
        {
            "error": {"class": "MalformedJson", "message": "m"},
            "source": {"topic": "t", "partition": 0, "offset": 1, "timestamp_ms": 5},
        }
    )
    writer.write({"error": {"class": "EmptyValue", "message": "e"}, "source": {"file": "f", "record": 2}})
    writer.write(
        {
            "prediction": {"p": 0.5, "label": "x"},
            "model": {"name": "m", "version": 3},
            "key": "k",
            "source": {"file": "f", "record": 3},
        }
    )
    writer.close()
    rows = pq.read_table(path).to_pylist()
    assert [r["error_class"] for r in rows] == ["MalformedJson", "EmptyValue", None]
    assert rows[2]["prediction_p"] == 0.5 and rows[2]["prediction_label"] == "x" and rows[0]["prediction_p"] is None
    assert (rows[0]["source_topic"], rows[0]["source_offset"], rows[2]["source_record"]) == ("t", 1, 3)


def test_flatten_and_summary_line() -> None:
    flat = flatten({"prediction": {"score": [1, 2]}, "model": {"name": "m", "version": 2}, "source": {"file": "f"}})
    assert flat["prediction_score"] == [1, 2] and flat["model_version"] == 2 and flat["error_class"] is None
    outcomes: Counter[str] = Counter({"scored": 98, "MalformedJson": 2})
    assert describe_outcomes(outcomes, 1.234, "o.jsonl") == (
        "scored 98 of 100 records in 1.23 s → o.jsonl; not scorable: MalformedJson 2"
    )


def test_jsonl_writer(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    writer = ScoreWriter.open(str(path))
    result: dict[str, Any] = {"prediction": {"p": np.float32(0.25)}, "source": {"file": "f", "record": 1}}
    writer.write(result)
    writer.close()
    assert orjson.loads(path.read_bytes()) == {"prediction": {"p": 0.25}, "source": {"file": "f", "record": 1}}


def test_results_can_go_to_a_folder_that_does_not_exist_yet(tmp_path: Path) -> None:
    """A batch run writes to a fresh claim: out/ is not there before the first run."""
    for name in ("scores.parquet", "scores.jsonl"):
        writer = ScoreWriter.open(str(tmp_path / "out" / name))
        writer.write({"prediction": {"p": 0.5}, "model": {"name": "m", "version": 1}, "source": {"record": 1}})
        writer.close()
        assert (tmp_path / "out" / name).stat().st_size > 0
