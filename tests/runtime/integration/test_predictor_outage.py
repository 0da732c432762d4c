"""The model server goes away mid-stream (``serving.mode: tfserving`` against the gRPC PredictionService test
server): the runtime pauses its partitions without leaving the group or spinning, dead-letters nothing, and
once the server is back every record gets exactly one output."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.integration.harness import (
    FRAUD_MODEL,
    RuntimeProcess,
    TopicReader,
    create_topics,
    manifest,
    produce,
    transactions,
)
from tests.tfserving_server import TfServingTestServer

OUTAGE_S = 12.0


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[TfServingTestServer]:
    base = tmp_path / "served" / "fraud"
    shutil.copytree(FRAUD_MODEL / "1", base / "1")
    server = TfServingTestServer(base, "fraud").start()
    yield server
    server.stop()


def test_predictor_outage_pauses_and_recovers_without_loss(
    kafka_bootstrap: str, tmp_path: Path, model_server: TfServingTestServer
) -> None:
    topics = create_topics(kafka_bootstrap, partitions=3, prefix="outage")
    serving = {"mode": "tfserving", "tfserving": {"timeoutMs": 500, "maxRetries": 1, "restFallback": False}}
    pipeline = manifest("outage", kafka_bootstrap, topics, serving=serving)
    runtime = RuntimeProcess(pipeline, tmp_path, kafka_bootstrap, pod_name="outage-0",
                             model_path=model_server.model_base_path,
                             extra_args=("--tfserving-endpoint", model_server.endpoint))  # fmt: skip
    reader = TopicReader(kafka_bootstrap, [topics.output, topics.dead_letter])
    output = reader.seen[topics.output]
    try:
        runtime.start()
        produce(kafka_bootstrap, topics.input, transactions(3_000))
        reader.wait_for(lambda: len(output.keys) >= 3_000, timeout=120, describe="outputs before the outage")

        model_server.stop_grpc()
        produce(kafka_bootstrap, topics.input, transactions(3_000, start=3_000))
        deadline = time.monotonic() + 60
        while runtime.metric("kinfer_predictor_unavailable_total") < 1:
            assert time.monotonic() < deadline, runtime.log_tail()
            time.sleep(0.2)
        cpu_before, started = runtime.cpu_seconds(), time.monotonic()
        at_pause = reader.totals()
        time.sleep(OUTAGE_S)  # the outage itself
        outage_cpu = runtime.cpu_seconds() - cpu_before
        reader.poll(0.5)
        during = reader.totals()
        assert runtime.get("/healthz")[0] == 200 and runtime.alive()
        model_server.start_grpc()

        reader.wait_for(lambda: len(output.keys) >= 6_000, timeout=120, describe="every output after recovery")
        assert runtime.terminate(60) == 0, runtime.log_tail()
        reader.poll(1.0)
    finally:
        runtime.stop()
        reader.close()
    print(f"outage {OUTAGE_S:.0f}s (from {started:.0f}): runtime CPU {outage_cpu:.2f}s; outputs {at_pause} -> {during}")
    assert during == at_pause, "records were output or dead-lettered while the model server was down"
    assert outage_cpu < 0.25 * OUTAGE_S
    assert set(output.keys) == {f"k-{n}".encode() for n in range(6_000)}
    assert max(output.keys.values()) == 1
    assert reader.totals()[topics.dead_letter] == 0
