"""Hot reload through the real loop: a new version directory appears under the model path while records flow;
``kinfer run`` loads and warms it up in the background, swaps it in between batches, and every output says which
version computed it (value and header). Nothing is lost or duplicated across the swap."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from tests.runtime.integration.harness import (
    FRAUD_MODEL,
    RuntimeProcess,
    SteadyProducer,
    TopicReader,
    create_topics,
    manifest,
)


def version_of(message: object) -> tuple[int, bytes | None]:
    value = orjson.loads(message.value())  # type: ignore[attr-defined]
    header = dict(message.headers() or []).get("kinfer.model.version")  # type: ignore[attr-defined]
    return int(value["model"]["version"]), header


@pytest.mark.timing
def test_new_model_version_is_swapped_in_while_records_flow(kafka_bootstrap: str, tmp_path: Path) -> None:
    model_dir = tmp_path / "models" / "fraud"
    shutil.copytree(FRAUD_MODEL / "1", model_dir / "1")
    topics = create_topics(kafka_bootstrap, partitions=2, prefix="reload")
    serving = {"mode": "embedded", "embedded": {"reloadCheckSeconds": 0.5}}
    runtime = RuntimeProcess(manifest("hot-reload", kafka_bootstrap, topics, serving=serving), tmp_path,
                             kafka_bootstrap, model_path=model_dir)  # fmt: skip
    reader = TopicReader(kafka_bootstrap, [topics.output, topics.dead_letter], keep_messages=True)
    output = reader.seen[topics.output]
    producer = SteadyProducer(kafka_bootstrap, topics.input, rate=500)
    try:
        runtime.start()
        runtime.wait_ready()
        producer.start()
        reader.wait_for(lambda: output.total >= 1000, timeout=120, describe="outputs from version 1")
        # Publish version 2 the safe way: copy under a temporary name, then rename into place.
        shutil.copytree(FRAUD_MODEL / "2", model_dir / ".incoming-2")
        (model_dir / ".incoming-2").rename(model_dir / "2")
        reader.wait_for(
            lambda: any(version_of(m)[0] == 2 for m in output.messages[-200:]), timeout=120, describe="version 2"
        )
        produced_during_swap = output.total
        reader.wait_for(lambda: output.total >= produced_during_swap + 1000, timeout=120, describe="more outputs")
        producer.stop()
        reader.wait_for(lambda: set(output.keys) >= producer.acked, timeout=120, describe="every acked input")
        assert runtime.metric("kinfer_model_version") == 2
        assert runtime.terminate() == 0, runtime.log_tail()
        reader.poll(1.0)
    finally:
        producer.stop()
        runtime.stop()
        reader.close()

    versions = [version_of(m) for m in output.messages]
    assert all(header == str(version).encode() for version, header in versions)
    numbers = [version for version, _ in versions]
    assert numbers[0] == 1 and numbers[-1] == 2
    # Per partition, once version 2 answers, version 1 never does again.
    for partition in {m.partition() for m in output.messages}:
        in_partition = [v for (v, _), m in zip(versions, output.messages, strict=True) if m.partition() == partition]
        assert in_partition == sorted(in_partition)
    assert set(output.keys) == producer.acked and max(output.keys.values()) == 1
    assert reader.totals()[topics.dead_letter] == 0
