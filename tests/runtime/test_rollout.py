"""Rollouts (spec.model.rollout): which records the candidate scores, how its predictions compare, the spec's
rules, and the Scorer on the example fraud model's two versions (1 live, 2 candidate: retrained, with other
scaling statistics and label threshold, so each version must preprocess with its own kinfer.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import generate_latest

from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.pipeline.assemble import ScoredRows, assemble_batch
from kinfer_runtime.pipeline.commits import InFlightBatch
from kinfer_runtime.pipeline.runner import RunOptions, load_candidate
from kinfer_runtime.pipeline.scoring import Scorer
from kinfer_runtime.predictors import PredictionFailed, build_predictor
from kinfer_runtime.preprocess.preprocessor import Preprocessor
from kinfer_runtime.quality.rollout import candidate_mask, compare, incompatibility
from kinfer_runtime.records.dead_letter import Failure
from kinfer_runtime.records.output import BatchContext
from kinfer_runtime.records.predictions import encode_predictions
from kinfer_runtime.spec import InferencePipeline, SpecError, parse_pipeline
from kinfer_runtime.spec.model_metadata import load_model_metadata
from kinfer_runtime.tools.synthetic import fraud_transactions
from tests.runtime.fake_kafka import FakeMessage

FRAUD = Path(__file__).resolve().parents[2] / "models" / "fraud"


def fraud_pipeline(model: dict[str, Any], serving: dict[str, Any] | None = None) -> InferencePipeline:
    return parse_pipeline({
        "apiVersion": "kinfer.io/v1alpha1",
        "kind": "InferencePipeline",
        "metadata": {"name": "fraud", "namespace": "risk"},
        "spec": {
            "kafka": {"bootstrapServers": "localhost:9092"},
            "topics": {"input": {"name": "in"}, "output": {"name": "out"}, "deadLetter": {"name": "dlq"}},
            "model": {"name": "fraud", "uri": "pvc://models/fraud", **model},
            "consumer": {"maxBatchSize": 64},
            "serving": serving or {"mode": "embedded"},
        },
    })  # fmt: skip


def test_a_key_always_lands_on_the_same_side_and_the_share_holds() -> None:
    keys = [f"card-{i}".encode() for i in range(20_000)]
    places = [(0, i) for i in range(20_000)]
    chosen = candidate_mask(keys, lambda: places, 0.1)
    assert abs(chosen.mean() - 0.1) < 0.01
    again = candidate_mask(list(reversed(keys)), lambda: places, 0.1)[::-1]
    assert (again == chosen).all()  # by key alone, wherever the record is
    assert candidate_mask(keys, lambda: places, 1.0).all()
    assert (candidate_mask(keys, lambda: places, 0.3) >= chosen).all()  # a larger share keeps the keys it had
    keyless = candidate_mask([None] * 1000, lambda: [(1, i) for i in range(1000)], 0.5)
    assert 0.4 < keyless.mean() < 0.6


def test_comparison_counts_label_agreement_and_score_differences() -> None:
    live = {"p": np.array([0.1, 0.5, 0.9, np.nan])}
    comparison = compare(live, ["a", "b", "b", "a"], {"p": np.array([0.2, 0.7, 0.4])}, ["b", "a", "b"],
                         np.array([1, 2, 3]))  # fmt: skip
    assert (comparison.agreeing, comparison.disagreeing) == (1, 2)
    assert np.allclose(comparison.differences["p"], [-0.3, -0.2])  # the NaN row is left out


def test_a_candidate_must_give_the_same_prediction_fields() -> None:
    live = load_model_metadata(FRAUD / "1")
    assert incompatibility(live, load_model_metadata(FRAUD / "2")) is None
    other = live.model_copy(update={"outputs": {"score": live.outputs["fraud_probability"]}})
    assert "outputs ['score'] differ" in (incompatibility(live, other) or "")


def test_rollout_needs_a_pinned_live_version_and_another_candidate() -> None:
    with pytest.raises(SpecError, match=r"needs model\.versionPolicy Pinned"):
        fraud_pipeline({"rollout": {"candidateVersion": 2}})
    with pytest.raises(SpecError, match="candidateVersion is the live version 1"):
        fraud_pipeline({"versionPolicy": "Pinned", "version": 1, "rollout": {"candidateVersion": 1}})
    with pytest.raises(SpecError, match="share"):
        fraud_pipeline({"versionPolicy": "Pinned", "version": 1, "rollout": {"candidateVersion": 2, "share": 1.5}})


def batch(count: int, seed: int = 5) -> list[FakeMessage]:
    records, _ = fraud_transactions(count, seed)
    messages = [FakeMessage("in", 0, i, orjson.dumps(r), f"card-{i % 97}".encode()) for i, r in enumerate(records)]
    messages[3] = FakeMessage("in", 0, 3, b"not json", b"card-3")
    return messages


def scorer_for(mode: str, share: float, metrics: RuntimeMetrics) -> tuple[Scorer, Preprocessor, Any]:
    pipeline = fraud_pipeline({"versionPolicy": "Pinned", "version": 1,
                               "rollout": {"candidateVersion": 2, "mode": mode, "share": share}})  # fmt: skip
    live = build_predictor(pipeline, model_path=FRAUD)
    live.load()
    candidate = load_candidate(pipeline, RunOptions(model_path=FRAUD), live)
    assert candidate is not None and candidate.predictor.model_version == 2
    assert candidate.rescale is not None  # version 2 differs from 1 only in its scaling statistics
    scorer = Scorer(live, encode_predictions, metrics, pipeline.spec.model.rollout, candidate)
    return scorer, Preprocessor.from_spec(pipeline.spec, live.metadata), live


def test_canary_scores_a_share_of_keys_with_the_candidate_and_its_own_preprocessing() -> None:
    metrics = RuntimeMetrics("risk", "fraud")
    scorer, preprocessor, live = scorer_for("Canary", 0.3, metrics)
    messages = batch(200)
    encoded = preprocessor.encode([m.value() for m in messages])
    (by_live, by_candidate), failures = scorer.score(messages, list(encoded.ok), encoded.inputs, live.metadata)
    assert (by_live.version, by_candidate.version) == (1, 2)
    assert [index for index, _ in failures] == []  # the malformed record failed in the live preprocessor
    assert sorted(by_live.predicted + by_candidate.predicted) == list(encoded.ok)
    sides: dict[bytes | None, int] = {}
    for version, group in ((1, by_live), (2, by_candidate)):
        for index in group.predicted:
            assert sides.setdefault(messages[index].key(), version) == version  # one version per key
    assert 0.15 < len(by_candidate.predicted) / len(encoded.ok) < 0.45
    # the candidate's rows are what version 2 alone, with its own kinfer.json, predicts for those records
    alone = build_predictor(fraud_pipeline({"versionPolicy": "Pinned", "version": 2}), model_path=FRAUD)
    alone.load()
    own = Preprocessor.from_spec(fraud_pipeline({}).spec, alone.metadata).encode(
        [messages[i].value() for i in by_candidate.predicted]
    )
    expected = [orjson.loads(row) for row in encode_predictions(alone.predict(own.inputs), alone.metadata)]
    got = [orjson.loads(row) for row in by_candidate.rows]  # from the live inputs, rescaled: equal to float32 rounding
    assert [row["label"] for row in got] == [row["label"] for row in expected]
    assert [row["fraud_probability"] for row in got] == pytest.approx(
        [row["fraud_probability"] for row in expected], abs=1e-6
    )
    # the loop hands over the live preprocessor's decoded records: the candidate reads those, not the values
    emptied = [FakeMessage(m.topic(), m.partition(), m.offset(), b"", m.key()) for m in messages]
    (again_live, again_candidate), _ = scorer.score(emptied, list(encoded.ok), encoded.inputs, live.metadata, encoded)
    assert (again_live.rows, again_candidate.rows) == (by_live.rows, by_candidate.rows)
    exposition = generate_latest(metrics.registry).decode()
    assert 'kinfer_rollout_info{candidate_version="2",live_version="1",mode="Canary"' in exposition
    assert 'model_version="2"' in exposition  # kinfer_predictions_total / kinfer_prediction_score per version


def test_shadow_publishes_the_live_predictions_and_counts_agreement() -> None:
    metrics = RuntimeMetrics("risk", "fraud")
    scorer, preprocessor, live = scorer_for("Shadow", 0.5, metrics)
    messages = batch(200)
    encoded = preprocessor.encode([m.value() for m in messages])
    groups, failures = scorer.score(messages, list(encoded.ok), encoded.inputs, live.metadata)
    assert failures == [] and len(groups) == 1 and groups[0].version == 1 and groups[0].predicted == list(encoded.ok)
    assert groups[0].rows == encode_predictions(live.predict(encoded.inputs), live.metadata)
    keys = [messages[i].key() for i in encoded.ok]
    sampled = int(candidate_mask(keys, lambda: [(0, i) for i in encoded.ok], 0.5).sum())
    compared = sum(
        metrics.registry.get_sample_value(
            "kinfer_rollout_label_agreement_total",
            {"namespace": "risk", "pipeline": "fraud", "live_version": "1", "candidate_version": "2",
             "agreement": agreement},
        ) or 0.0
        for agreement in ("agree", "disagree")
    )  # fmt: skip
    assert 0 < sampled < len(encoded.ok) and compared == sampled
    assert "kinfer_rollout_score_difference_bucket" in generate_latest(metrics.registry).decode()


def test_a_failing_shadow_candidate_changes_nothing_that_is_published() -> None:
    metrics = RuntimeMetrics("risk", "fraud")
    scorer, preprocessor, live = scorer_for("Shadow", 1.0, metrics)
    assert scorer.candidate is not None

    def refuse(_inputs: Any) -> Any:
        raise PredictionFailed("candidate refused the batch")

    scorer.candidate.predictor.predict = refuse  # type: ignore[method-assign,assignment]
    messages = batch(50)
    encoded = preprocessor.encode([m.value() for m in messages])
    groups, failures = scorer.score(messages, list(encoded.ok), encoded.inputs, live.metadata)
    assert failures == [] and groups[0].predicted == list(encoded.ok)
    failed = metrics.registry.get_sample_value(
        "kinfer_rollout_candidate_failures_total",
        {"namespace": "risk", "pipeline": "fraud", "candidate_version": "2", "reason": "PredictionFailed"},
    )
    assert failed == len(encoded.ok)


def test_a_candidate_that_cannot_load_leaves_the_live_version_serving(tmp_path: Path) -> None:
    pipeline = fraud_pipeline({"versionPolicy": "Pinned", "version": 1, "rollout": {"candidateVersion": 7}})
    live = build_predictor(pipeline, model_path=FRAUD)
    live.load()
    assert load_candidate(pipeline, RunOptions(model_path=FRAUD), live) is None
    metrics = RuntimeMetrics("risk", "fraud")
    scorer = Scorer(live, encode_predictions, metrics, pipeline.spec.model.rollout, None)
    labels = {"namespace": "risk", "pipeline": "fraud", "mode": "Canary", "live_version": "1",
              "candidate_version": "7", "share": "0.1"}  # fmt: skip
    assert metrics.registry.get_sample_value("kinfer_rollout_info", labels) == 0.0
    messages = batch(20)
    encoded = Preprocessor.from_spec(pipeline.spec, live.metadata).encode([m.value() for m in messages])
    groups, _ = scorer.score(messages, list(encoded.ok), encoded.inputs, live.metadata)
    assert len(groups) == 1 and groups[0].version == 1 and len(groups[0].predicted) == len(encoded.ok)


def test_a_tfserving_canary_is_served_both_versions_by_the_operators_config(tmp_path: Path) -> None:
    """tfserving mode: the operator's models.config serves the live and the candidate version, and each
    predictor asks for its own (here the TF Serving stand-in, tests/tfserving, serves that config)."""
    import shutil

    from kinfer_operator.builders.tfserving import models_config_text
    from tests.tfserving.server import TfServingTestServer

    for version in ("1", "2"):
        shutil.copytree(FRAUD / version, tmp_path / "fraud" / version)
    pipeline = fraud_pipeline({"uri": str(tmp_path / "fraud"), "versionPolicy": "Pinned", "version": 1,
                               "rollout": {"candidateVersion": 2, "share": 0.5}}, {"mode": "tfserving"})  # fmt: skip
    config = tmp_path / "models.config"
    config.write_text(models_config_text(pipeline))
    assert "specific { versions: 1 versions: 2 }" in config.read_text()
    server = TfServingTestServer(model_config_file=config).start()
    try:
        options = RunOptions(tfserving_endpoint=f"127.0.0.1:{server.grpc_port}")
        live = build_predictor(pipeline, tfserving_endpoint=options.tfserving_endpoint)
        live.load()
        candidate = load_candidate(pipeline, options, live)
        assert candidate is not None
        scorer = Scorer(
            live, encode_predictions, RuntimeMetrics("risk", "fraud"), pipeline.spec.model.rollout, candidate
        )
        messages = batch(100)
        encoded = Preprocessor.from_spec(pipeline.spec, live.metadata).encode([m.value() for m in messages])
        (by_live, by_candidate), _ = scorer.score(messages, list(encoded.ok), encoded.inputs, live.metadata)
        assert (by_live.version, by_candidate.version) == (1, 2) and by_live.predicted and by_candidate.predicted
        live.close()
        candidate.predictor.close()
    finally:
        server.stop()


@pytest.mark.parametrize("quality", [True, False])
def test_quality_metrics_can_be_turned_off_and_a_shadow_still_compares(quality: bool) -> None:
    """spec.monitoring.qualityMetrics false: no score histogram and no label counts, for either version; the
    shadow's comparison (which needs the live scores) is still made."""
    metrics = RuntimeMetrics("risk", "fraud")
    scorer, preprocessor, live = scorer_for("Shadow", 1.0, metrics)
    scorer.quality = quality
    messages = batch(100)
    encoded = preprocessor.encode([m.value() for m in messages])
    scorer.score(messages, list(encoded.ok), encoded.inputs, live.metadata)
    exposed = generate_latest(metrics.registry).decode()
    for version in ("1", "2"):
        histogram = f'kinfer_prediction_score_count{{model_version="{version}",namespace="risk",'
        assert (histogram in exposed) is quality
        assert (f'model_version="{version}"' in exposed.split("kinfer_predictions_total{", 1)[-1]) is quality
    versions = {"namespace": "risk", "pipeline": "fraud", "live_version": "1", "candidate_version": "2"}
    agreement = sum(
        metrics.registry.get_sample_value("kinfer_rollout_label_agreement_total", {**versions, "agreement": a}) or 0
        for a in ("agree", "disagree")
    )
    assert agreement == len(encoded.ok)


def test_a_shadow_topic_gets_the_candidates_predictions_with_the_inputs_keys() -> None:
    """topics.shadow set: the candidate's rows of the sampled records come back flagged, and the assembled batch
    produces them to the shadow topic after one output or dead letter per input; they are neither outputs (not
    counted as records out) nor inputs' replacements (a refused one dead-letters nothing)."""
    metrics = RuntimeMetrics("risk", "fraud")
    scorer, preprocessor, live = scorer_for("Shadow", 0.5, metrics)
    scorer.shadow_topic = True
    messages = batch(200)
    encoded = preprocessor.encode([m.value() for m in messages])
    groups, failures = scorer.score(messages, list(encoded.ok), encoded.inputs, live.metadata)
    failures += [(3, Failure("MalformedJson", "not json"))]
    assert [g.shadow for g in groups] == [False, True] and groups[1].version == 2
    shadow = groups[1]
    keys = [messages[i].key() for i in encoded.ok]
    sampled = candidate_mask(keys, lambda: [(0, i) for i in encoded.ok], 0.5)
    assert shadow.predicted == [i for i, chosen in zip(encoded.ok, sampled, strict=True) if chosen]
    context = BatchContext("fraud", "fraud", 1, "in", 0.1, 0.1)
    assembled = assemble_batch(
        messages, groups[0].predicted, groups[0].rows, failures, context, output_topic="out", dead_letter_topic="dlq",
        now_ms=1.7e12, shadow=ScoredRows(BatchContext("fraud", "fraud", 2, "in", 0.1, 0.1), shadow.predicted,
                                         shadow.rows), shadow_topic="shadow")  # fmt: skip
    topics = [r.topic for r in assembled.records]
    assert topics.count("out") + topics.count("dlq") == len(messages)
    assert topics[len(messages) :] == ["shadow"] * len(shadow.predicted)
    for index, record in zip(shadow.predicted, assembled.records[len(messages) :], strict=True):
        assert record.shadow and record.key == messages[index].key()
        assert dict(record.headers)["kinfer.model.version"] == b"2"
        value = orjson.loads(record.value or b"{}")
        assert value["model"]["version"] == 2 and value["source"]["offset"] == index
    assert assembled.input_of(len(messages)) is None and assembled.input_of(0) is messages[0]
    in_flight = InFlightBatch(0, assembled.next_offsets, assembled.records, assembled.output_timestamps_s)
    for index in range(len(assembled.records)):
        in_flight.delivery_callback(index)(None, None)
    assert (in_flight.acked_outputs, in_flight.acked_shadow) == (len(encoded.ok), len(shadow.predicted))
