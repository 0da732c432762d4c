"""``kinfer run`` in tfserving mode against the TF Serving stand-in (official PredictionService protos), with
a model-server outage mid-stream: partitions pause without leaving the group, nothing is dead-lettered or lost,
and the stream resumes when the server returns, both after UNAVAILABLE answers and after its port was closed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.runtime.integration.harness import (
    RuntimeProcess,
    TopicReader,
    create_topics,
    manifest,
    produce,
    transactions,
)
from tests.testbed import REPO_ROOT
from tests.tfserving import TfServingTestServer

pytestmark = pytest.mark.testbed
BATCH = 2000


def test_model_server_outages_pause_the_stream_and_lose_nothing(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "models" / "fraud"
    shutil.copytree(REPO_ROOT / "models" / "fraud" / "1", model_dir / "1")
    server = TfServingTestServer(model_dir, "fraud").start()
    monkeypatch.setenv("KINFER_TFSERVING_ENDPOINT", server.endpoint)
    topics = create_topics(kafka_bootstrap, partitions=2, prefix="tfs")
    pipeline = manifest("tfserving-outage", kafka_bootstrap, topics)
    pipeline["spec"]["serving"] = {
        "mode": "tfserving",
        "tfserving": {"timeoutMs": 500, "maxRetries": 2, "restFallback": False, "restPort": server.rest_port},
    }
    runtime = RuntimeProcess(pipeline, tmp_path, kafka_bootstrap, model_path=model_dir)
    reader = TopicReader(kafka_bootstrap, [topics.output, topics.dead_letter])
    outputs = lambda: reader.totals()[topics.output]  # noqa: E731
    try:
        runtime.start()
        runtime.wait_ready()
        produce(kafka_bootstrap, topics.input, transactions(BATCH))
        reader.wait_for(lambda: outputs() >= BATCH, timeout=120, describe="first outputs")

        for outage, (down, up) in enumerate(
            [
                (lambda: setattr(server, "unavailable", True), lambda: setattr(server, "unavailable", False)),
                (server.stop_grpc, server.start_grpc),
            ],
            start=1,
        ):
            unavailable_before = runtime.metric("kinfer_predictor_unavailable_total")
            down()
            produce(kafka_bootstrap, topics.input, transactions(BATCH, start=outage * BATCH))
            deadline = time.monotonic() + 60
            while runtime.metric("kinfer_predictor_unavailable_total") <= unavailable_before:
                assert time.monotonic() < deadline, f"outage {outage} not noticed:\n{runtime.log_tail()}"
                time.sleep(0.2)
            reader.poll(1.0)
            stalled = outputs()
            time.sleep(2.0)
            reader.poll(0.5)
            assert outputs() == stalled, "records were predicted while the model server was down"
            assert runtime.alive() and runtime.get("/healthz")[0] == 200, runtime.log_tail()
            up()
            reader.wait_for(lambda: outputs() >= (outage + 1) * BATCH, timeout=120, describe="recovery")  # noqa: B023
        assert runtime.terminate() == 0, runtime.log_tail()
        reader.poll(1.0)
    finally:
        runtime.stop()
        reader.close()
        server.stop()

    seen = reader.seen[topics.output]
    assert set(seen.keys) == {key for key, _ in transactions(3 * BATCH)}
    assert reader.totals()[topics.dead_letter] == 0
