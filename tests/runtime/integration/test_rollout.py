"""A canary through the real loop and a real broker: ``kinfer run`` with version 1 live and version 2 as the
candidate for 30 % of keys. Every input gets one output; every output says, in its value and its header, which
version scored it; a key is scored by the same version every time, across a restart; the runtime's metrics count
predictions per version; and promoting (version 2 pinned, no rollout) moves every key to version 2. The counts per
version that the commits carry are read back as the operator reads them (its lag poller, a real AdminClient) and
turned into the status's ``scoredByVersion``: exact across a restart, a redelivery counted once."""

from __future__ import annotations

import copy
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from kinfer_operator.autoscaling.poller import KafkaLagPoller
from kinfer_operator.status.document import rollout_status, scored_by_version, scored_partitions
from kinfer_runtime.spec import parse_pipeline
from tests.runtime.integration.harness import (
    FRAUD_MODEL,
    RuntimeProcess,
    TopicReader,
    create_topics,
    manifest,
    produce,
    transactions,
)

KEYS = 1500


def predictions_by_version(runtime: RuntimeProcess) -> dict[int, float]:
    status, body = runtime.get("/metrics")
    assert status == 200
    counts: dict[int, float] = defaultdict(float)
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "kinfer_predictions_total":
                counts[int(sample.labels["model_version"])] += sample.value
    return dict(counts)


def committed_counts(bootstrap: str, pipeline: dict[str, Any]) -> tuple[dict[str, int] | None, dict[str, Any] | None]:
    """``status.scoredByVersion`` and ``status.rollout`` as the operator computes them from the group's commits."""
    parsed = parse_pipeline(pipeline)
    poller = KafkaLagPoller({"bootstrap.servers": bootstrap})
    try:
        reading = poller.read(parsed.spec.topics.input.name, parsed.spec.consumer_group(parsed.metadata.name), False)
    finally:
        poller.close()
    partitions = scored_partitions(reading.committed_metadata)
    return scored_by_version(partitions), rollout_status(parsed, partitions)


def run_phase(pipeline: dict[str, Any], workdir: Path, bootstrap: str, model_dir: Path, topic: str,
              rounds: int, reader: TopicReader, output_topic: str) -> tuple[float, dict[int, float]]:  # fmt: skip
    """One ``kinfer run`` that scores ``rounds`` times every key; returns kinfer_rollout_info and the counts."""
    workdir.mkdir()
    runtime = RuntimeProcess(pipeline, workdir, bootstrap, model_path=model_dir)
    output = reader.seen[output_topic]
    expected = output.total + rounds * KEYS
    try:
        runtime.start()
        runtime.wait_ready()
        for _ in range(rounds):
            produce(bootstrap, topic, transactions(KEYS))
        reader.wait_for(lambda: output.total >= expected, timeout=120, describe=f"{expected} outputs")
        info, counts = runtime.metric("kinfer_rollout_info"), predictions_by_version(runtime)
        assert runtime.terminate() == 0, runtime.log_tail()
    finally:
        runtime.stop()
    return info, counts


def test_canary_scores_a_share_of_keys_with_the_candidate_then_promotion_moves_all(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    model_dir = tmp_path / "models" / "fraud"
    for version in ("1", "2"):
        shutil.copytree(FRAUD_MODEL / version, model_dir / version)
    topics = create_topics(kafka_bootstrap, partitions=2, prefix="canary")
    canary = manifest("canary", kafka_bootstrap, topics)
    canary["spec"]["model"] |= {"versionPolicy": "Pinned", "version": 1,
                                "rollout": {"candidateVersion": 2, "mode": "Canary", "share": 0.3}}  # fmt: skip
    promoted = copy.deepcopy(canary)
    promoted["spec"]["model"] |= {"version": 2}
    del promoted["spec"]["model"]["rollout"]
    reader = TopicReader(kafka_bootstrap, [topics.output, topics.dead_letter], keep_messages=True)
    output = reader.seen[topics.output]
    try:
        args = (kafka_bootstrap, model_dir, topics.input)
        info, counts = run_phase(canary, tmp_path / "canary", *args, 2, reader, topics.output)  # every key twice
        before_restart = len(output.messages)
        run_phase(canary, tmp_path / "restarted", *args, 1, reader, topics.output)
        before_promotion = len(output.messages)
        canary_status = committed_counts(kafka_bootstrap, canary)
        _, promoted_counts = run_phase(promoted, tmp_path / "promoted", *args, 1, reader, topics.output)
        promoted_status = committed_counts(kafka_bootstrap, promoted)
        reader.poll(1.0)
    finally:
        reader.close()

    assert output.total == 4 * KEYS and reader.totals()[topics.dead_letter] == 0
    versions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for number, message in enumerate(output.messages):
        version = orjson.loads(message.value())["model"]["version"]
        assert dict(message.headers() or [])["kinfer.model.version"] == str(version).encode()
        if number < before_promotion:
            versions_of_key[message.key()].add(version)
        else:
            assert version == 2  # promoted: every key
    assert all(len(versions) == 1 for versions in versions_of_key.values())  # a key sees one version, restart or not
    candidate_keys = sum(1 for versions in versions_of_key.values() if versions == {2})
    assert 0.2 < candidate_keys / KEYS < 0.4
    assert info == 1.0
    assert counts == {1: 2 * (KEYS - candidate_keys), 2: 2 * candidate_keys}
    assert promoted_counts == {2: KEYS}
    assert before_restart == 2 * KEYS
    scored, rollout = canary_status
    assert scored == {"1": 3 * (KEYS - candidate_keys), "2": 3 * candidate_keys}, "carried on across the restart"
    assert rollout is not None and rollout["candidateLoadedPartitions"] == rollout["reportingPartitions"] == 2
    assert promoted_status == ({"1": 3 * (KEYS - candidate_keys), "2": 3 * candidate_keys + KEYS}, None)


def metric_sum(runtime: RuntimeProcess, name: str) -> float:
    status, body = runtime.get("/metrics")
    assert status == 200
    return sum(s.value for f in text_string_to_metric_families(body) for s in f.samples if s.name == name)


def test_a_shadow_scores_every_record_and_publishes_only_the_live_predictions(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Version 2 shadows version 1 on every record: each input has exactly one output, by version 1; the
    candidate scored and was compared on every record; nothing of it reached the output or dead-letter topic, and
    the shadow topic got exactly one prediction of version 2 per input, with the input's key."""
    model_dir = tmp_path / "models" / "fraud"
    for version in ("1", "2"):
        shutil.copytree(FRAUD_MODEL / version, model_dir / version)
    topics = create_topics(kafka_bootstrap, partitions=2, prefix="shadow")
    shadow_topic = f"{topics.input}-shadow"
    with AdminClient({"bootstrap.servers": kafka_bootstrap}) as admin:
        admin.create_topics([NewTopic(shadow_topic, 2, 1)])[shadow_topic].result(30)
    shadow = manifest("shadow", kafka_bootstrap, topics)
    shadow["spec"]["topics"]["shadow"] = {"name": shadow_topic}
    shadow["spec"]["model"] |= {"versionPolicy": "Pinned", "version": 1,
                                "rollout": {"candidateVersion": 2, "mode": "Shadow", "share": 1.0}}  # fmt: skip
    reader = TopicReader(kafka_bootstrap, [topics.output, topics.dead_letter, shadow_topic], keep_messages=True)
    output, candidate = reader.seen[topics.output], reader.seen[shadow_topic]
    runtime = RuntimeProcess(shadow, tmp_path, kafka_bootstrap, model_path=model_dir)
    try:
        runtime.start()
        runtime.wait_ready()
        produce(kafka_bootstrap, topics.input, transactions(KEYS))
        reader.wait_for(lambda: min(output.total, candidate.total) >= KEYS, timeout=120,
                        describe=f"{KEYS} outputs and shadow predictions")  # fmt: skip
        compared = metric_sum(runtime, "kinfer_rollout_label_agreement_total")
        failed = metric_sum(runtime, "kinfer_rollout_candidate_failures_total")
        assert runtime.terminate() == 0, runtime.log_tail()
        reader.poll(2.0)  # anything published twice would arrive now
        scored, _ = committed_counts(kafka_bootstrap, shadow)
    finally:
        runtime.stop()
        reader.close()
    keys = [message.key() for message in output.messages]
    assert output.total == KEYS and len(set(keys)) == KEYS, "an input without an output, or with two"
    assert reader.totals()[topics.dead_letter] == 0
    assert {orjson.loads(m.value())["model"]["version"] for m in output.messages} == {1}
    assert (compared, failed) == (KEYS, 0), "the candidate scored and was compared on every record"
    places = [orjson.loads(m.value())["source"] for m in candidate.messages]
    assert candidate.total == KEYS and len({(p["partition"], p["offset"]) for p in places}) == KEYS
    assert sorted(m.key() for m in candidate.messages) == sorted(keys)
    assert {orjson.loads(m.value())["model"]["version"] for m in candidate.messages} == {2}
    assert {dict(m.headers() or [])["kinfer.model.version"] for m in candidate.messages} == {b"2"}
    assert scored == {"1": KEYS, "2": KEYS}, "the commits count the shadow's records too"
