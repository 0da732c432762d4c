"""A canary through the real loop and a real broker: ``kinfer run`` with version 1 live and version 2 as the
candidate for 30 % of keys. Every input gets one output; every output says, in its value and its header, which
version scored it; a key seen twice is scored by the same version both times; and the runtime's metrics count
predictions per version."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.runtime.integration.harness import (
    FRAUD_MODEL,
    RuntimeProcess,
    TopicReader,
    create_topics,
    manifest,
    produce,
    transactions,
)


def predictions_by_version(runtime: RuntimeProcess) -> dict[int, float]:
    status, body = runtime.get("/metrics")
    assert status == 200
    counts: dict[int, float] = defaultdict(float)
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "kinfer_predictions_total":
                counts[int(sample.labels["model_version"])] += sample.value
    return dict(counts)


def test_canary_scores_a_share_of_keys_with_the_candidate(kafka_bootstrap: str, tmp_path: Path) -> None:
    model_dir = tmp_path / "models" / "fraud"
    for version in ("1", "2"):
        shutil.copytree(FRAUD_MODEL / version, model_dir / version)
    topics = create_topics(kafka_bootstrap, partitions=2, prefix="canary")
    pipeline = manifest("canary", kafka_bootstrap, topics)
    pipeline["spec"]["model"] |= {"versionPolicy": "Pinned", "version": 1,
                                  "rollout": {"candidateVersion": 2, "mode": "Canary", "share": 0.3}}  # fmt: skip
    runtime = RuntimeProcess(pipeline, tmp_path, kafka_bootstrap, model_path=model_dir)
    reader = TopicReader(kafka_bootstrap, [topics.output, topics.dead_letter], keep_messages=True)
    output = reader.seen[topics.output]
    records = transactions(1500)
    try:
        runtime.start()
        runtime.wait_ready()
        produce(kafka_bootstrap, topics.input, records)
        produce(kafka_bootstrap, topics.input, records)  # every key a second time
        reader.wait_for(lambda: output.total >= 3000, timeout=120, describe="3,000 outputs")
        rollout_info = runtime.metric("kinfer_rollout_info")
        by_version = predictions_by_version(runtime)
        assert runtime.terminate() == 0, runtime.log_tail()
        reader.poll(1.0)
    finally:
        runtime.stop()
        reader.close()

    assert output.total == 3000 and reader.totals()[topics.dead_letter] == 0
    versions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for message in output.messages:
        version = orjson.loads(message.value())["model"]["version"]
        assert dict(message.headers() or [])["kinfer.model.version"] == str(version).encode()
        versions_of_key[message.key()].add(version)
    assert all(len(versions) == 1 for versions in versions_of_key.values())  # a key sees one version
    candidate_keys = sum(1 for versions in versions_of_key.values() if versions == {2})
    assert 0.2 < candidate_keys / len(versions_of_key) < 0.4
    assert rollout_info == 1.0
    assert by_version == {1: 2 * (1500 - candidate_keys), 2: 2 * candidate_keys}
