"""The tfserving predictor against the TF Serving stand-in (tests/tfserving/: the official PredictionService
protos, not the real server) serving the fraud SavedModel: same outputs as in-process, deadlines, bounded
retries, outage and recovery, REST fallback, permanent errors, and a new version rolled out on the server."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from kinfer_runtime.predictors import PredictionFailed, PredictorUnavailable
from kinfer_runtime.predictors.embedded import EmbeddedPredictor
from kinfer_runtime.predictors.tfserving import BACKOFF_CAP_SECONDS, TfServingPredictor, backoff_seconds
from kinfer_runtime.preprocess.preprocessor import Preprocessor
from kinfer_runtime.spec import TfServingSpec
from kinfer_runtime.spec.model_metadata import load_model_metadata
from kinfer_runtime.tools.synthetic import fraud_transactions
from tests.tfserving import TfServingTestServer

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / "fraud"
    shutil.copytree(MODELS / "fraud" / "1", base / "1")
    return base


@pytest.fixture(scope="module")
def server(model_dir):
    server = TfServingTestServer(model_dir, "fraud").start()
    yield server
    server.stop()


@pytest.fixture
def healthy(server):
    """Every test starts (and leaves the next one) with a healthy server."""
    server.unavailable, server.delay_seconds = False, 0.0
    if not server.grpc_running:
        server.start_grpc()
    yield server
    server.unavailable, server.delay_seconds = False, 0.0
    if not server.grpc_running:
        server.start_grpc()


def make_predictor(server, model_dir, **settings):
    defaults = {"timeout_ms": 1000, "max_retries": 2, "rest_port": server.rest_port, "rest_fallback": False}
    spec = TfServingSpec(**{**defaults, **settings})
    predictor = TfServingPredictor("fraud", server.endpoint, spec, model_dir=model_dir, rng=random.Random(1))
    predictor.load()
    return predictor


@pytest.fixture(scope="module")
def inputs():
    metadata = load_model_metadata(MODELS / "fraud" / "1")
    records, _ = fraud_transactions(40, 21)
    preprocessor = Preprocessor(metadata.features, metadata.inputs, metadata.feature_inputs)
    return preprocessor.encode([orjson.dumps(r) for r in records]).inputs


@pytest.fixture(scope="module")
def expected(inputs):
    embedded = EmbeddedPredictor("fraud", MODELS / "fraud", pinned_version=1)
    embedded.load()
    return embedded.predict(inputs).outputs["fraud_probability"]


def test_backoff_is_jittered_and_capped():
    rng = random.Random(3)
    for attempt in range(12):
        waits = [backoff_seconds(attempt, rng) for _ in range(50)]
        assert all(0 <= w <= min(BACKOFF_CAP_SECONDS, 0.05 * 2**attempt) for w in waits)
        assert len(set(waits)) > 40  # jittered, not one fixed delay


def test_grpc_predictions_match_the_embedded_model(healthy, model_dir, inputs, expected):
    predictor = make_predictor(healthy, model_dir)
    assert predictor.ready() and predictor.model_version == 1
    prediction = predictor.predict(inputs)
    assert prediction.model_version == 1
    np.testing.assert_allclose(prediction.outputs["fraud_probability"], expected, rtol=1e-5, atol=1e-6)
    predictor.close()


def test_unavailable_server_is_retried_then_reported_and_recovers(healthy, model_dir, inputs, expected):
    predictor = make_predictor(healthy, model_dir, max_retries=3, timeout_ms=10_000)  # no deadline hits on a busy box
    healthy.unavailable = True
    calls = healthy.predict_calls
    with pytest.raises(PredictorUnavailable, match="UNAVAILABLE"):
        predictor.predict(inputs)
    assert healthy.predict_calls - calls == 4  # one call and maxRetries retries, then give up
    assert not predictor.ready()
    healthy.unavailable = False
    np.testing.assert_allclose(predictor.predict(inputs).outputs["fraud_probability"], expected, rtol=1e-5)
    assert predictor.ready()


def test_a_stalled_server_hits_the_deadline(healthy, model_dir, inputs):
    predictor = make_predictor(healthy, model_dir, timeout_ms=150, max_retries=1)
    healthy.delay_seconds = 1.0
    with pytest.raises(PredictorUnavailable, match="DEADLINE_EXCEEDED"):
        predictor.predict(inputs)
    healthy.delay_seconds = 0.0
    assert predictor.predict(inputs).outputs["fraud_probability"].shape == (40,)


def test_closed_grpc_port_then_restart_on_the_same_port(healthy, model_dir, inputs, expected):
    predictor = make_predictor(healthy, model_dir, timeout_ms=300, max_retries=2)
    healthy.stop_grpc()
    with pytest.raises(PredictorUnavailable):
        predictor.predict(inputs)
    healthy.start_grpc()
    prediction = _eventually(lambda: predictor.predict(inputs))
    np.testing.assert_allclose(prediction.outputs["fraud_probability"], expected, rtol=1e-5)


def test_rest_fallback_when_grpc_is_unreachable(healthy, model_dir, inputs, expected):
    predictor = make_predictor(healthy, model_dir, timeout_ms=300, max_retries=1, rest_fallback=True)
    healthy.stop_grpc()
    rest_calls = healthy.rest_calls
    prediction = predictor.predict(inputs)
    np.testing.assert_allclose(prediction.outputs["fraud_probability"], expected, rtol=1e-5)
    assert healthy.rest_calls == rest_calls + 1
    grpc_calls = healthy.predict_calls
    predictor.predict(inputs)  # REST is now preferred for a while: no gRPC attempts
    assert healthy.rest_calls == rest_calls + 2 and healthy.predict_calls == grpc_calls
    healthy.stop_rest()
    with pytest.raises(PredictorUnavailable, match="REST"):
        predictor.predict(inputs)
    healthy.start_rest()
    healthy.start_grpc()
    predictor.rest_preferred_seconds = 0.0  # instead of waiting 30 s for gRPC to be tried again

    def back_on_grpc():
        calls = healthy.predict_calls
        prediction = predictor.predict(inputs)
        if healthy.predict_calls == calls:
            raise PredictorUnavailable("answered over REST")
        return prediction

    assert _eventually(back_on_grpc).model_version == 1


def test_rest_successes_do_not_extend_the_rest_window(healthy, model_dir, inputs):
    """Only the fallback opens the REST window: REST calls answered inside it must not push its end, or a
    consumer that fell back once stays on REST (one pod behind the Service name) for as long as REST answers."""
    import time

    predictor = make_predictor(healthy, model_dir, timeout_ms=300, max_retries=0, rest_fallback=True)
    predictor.rest_preferred_seconds = 1.0
    healthy.unavailable = True
    predictor.predict(inputs)  # gRPC refuses, REST answers: REST is preferred for the next second
    window_end = time.monotonic() + 1.0  # the window opened before this line
    healthy.unavailable = False
    grpc_calls, rest_calls = healthy.predict_calls, healthy.rest_calls
    while time.monotonic() < window_end - 0.2:  # REST keeps answering inside the window
        predictor.predict(inputs)
        time.sleep(0.2)
    time.sleep(max(0.0, window_end + 0.05 - time.monotonic()))
    assert healthy.rest_calls > rest_calls and healthy.predict_calls == grpc_calls
    predictor.predict(inputs)
    assert healthy.predict_calls == grpc_calls + 1  # the window closed: gRPC again


def test_a_batch_the_model_refuses_fails_at_once(healthy, model_dir, inputs):
    predictor = make_predictor(healthy, model_dir, max_retries=4)
    calls = healthy.predict_calls
    wrong = {"dense": inputs["dense"][:, :5], "merchant_category": inputs["merchant_category"]}
    with pytest.raises(PredictionFailed, match="INVALID_ARGUMENT"):
        predictor.predict(wrong)
    assert healthy.predict_calls == calls + 1  # no retries for a permanent error


def test_only_kinfer_json_is_needed_locally(healthy, model_dir, tmp_path, inputs, expected):
    local = tmp_path / "metadata-only" / "fraud"
    (local / "1").mkdir(parents=True)
    shutil.copy(model_dir / "1" / "kinfer.json", local / "1" / "kinfer.json")
    predictor = make_predictor(healthy, local)
    np.testing.assert_allclose(predictor.predict(inputs).outputs["fraud_probability"], expected, rtol=1e-5)


def test_load_with_the_server_down_waits_for_it(healthy, model_dir, inputs):
    healthy.unavailable = True
    predictor = make_predictor(healthy, model_dir, max_retries=0)
    assert not predictor.ready() and predictor.model_version == 1
    healthy.unavailable = False
    predictor.predict(inputs)
    assert predictor.ready()


def test_new_version_on_the_server_updates_the_version_and_metadata(healthy, model_dir, inputs, expected):
    predictor = make_predictor(healthy, model_dir)
    assert predictor.maybe_reload() is False
    shutil.copytree(MODELS / "fraud" / "2", model_dir / "2")
    healthy.refresh()  # TF Serving's file-system poll, now rather than within a second
    try:
        prediction = predictor.predict(inputs)
        assert prediction.model_version == 2
        assert not np.allclose(prediction.outputs["fraud_probability"], expected)
        assert predictor.maybe_reload() is True and predictor.metadata.version == 2
        assert predictor.maybe_reload() is False
    finally:
        shutil.rmtree(model_dir / "2")
        healthy.refresh()  # back to version 1 (latest, num_versions 1)


def _eventually(call, timeout=30.0):
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except PredictorUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
