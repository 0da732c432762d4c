"""A batch run (``kinfer score --topic-range --output-topic --progress-group``) on the bed's broker: outputs as the
live pipeline publishes them, dead letters with their original bytes, and a run stopped part way resumed by the
next one over the same range, so every input is published exactly once.

This is what the Job of a pipeline's ``spec.batch`` run executes (tests/cluster/test_batch.py runs it on a pod).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from kinfer_runtime.tools import score
from kinfer_runtime.tools.batch_progress import Committed, progress
from kinfer_runtime.tools.produce import send_records
from kinfer_runtime.tools.sources import OutgoingRecord, records_from_rows
from kinfer_runtime.tools.synthetic import fraud_transactions
from tests.ingestion.kafka_helpers import create_topic, read_topic
from tests.ingestion.pipelines import pipeline_manifest, write_pipeline

GOOD = 500
BAD = [b"{not json", b'{"amount": "12"}', b"\xff\xfe"]
FIRST_RUN = 230


def group_commits(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, Committed]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: Committed(tp.offset, tp.metadata) for tp in found}
    finally:
        consumer.close()


def test_a_batch_run_publishes_like_the_live_pipeline_and_resumes_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = {
        "input": create_topic(kafka_bootstrap, "batch-in", partitions=3),
        "output": create_topic(kafka_bootstrap, "batch-live-out", partitions=1),
        "deadLetter": create_topic(kafka_bootstrap, "batch-dlq", partitions=1),
    }
    backfill = create_topic(kafka_bootstrap, "batch-out", partitions=3)
    name = f"batch-{topics['input'][-8:]}"
    path = write_pipeline(tmp_path / "pipeline.yaml", pipeline_manifest(name, kafka_bootstrap, topics))
    rows, _ = fraud_transactions(GOOD, seed=5)
    records = list(records_from_rows(rows, key_field="card_id"))
    for index, value in enumerate(BAD):
        records.insert(50 + 100 * index, OutgoingRecord(value=value, key=f"bad-{index}".encode()))
    sent = send_records(Producer({"bootstrap.servers": kafka_bootstrap}), topics["input"], records)
    assert sent.ok and sent.delivered == GOOD + len(BAD)

    group = f"kinfer-batch-{name}"
    common = [str(path), "--topic-range", "--output-topic", backfill, "--progress-group", group, "--no-progress"]
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert score.main([*common, "--limit", str(FIRST_RUN), "--summary-file", str(first)]) == 0
    stopped = progress(group_commits(kafka_bootstrap, group, topics["input"], 3))
    assert stopped == (FIRST_RUN, GOOD + len(BAD))
    # More input after the first attempt planned its range: a resumed run keeps that range.
    late = send_records(Producer({"bootstrap.servers": kafka_bootstrap}), topics["input"], records[:40])
    assert late.ok
    assert score.main([*common, "--summary-file", str(second)]) == 0

    summaries = [orjson.loads(first.read_bytes()), orjson.loads(second.read_bytes())]
    assert [s["records"] for s in summaries] == [FIRST_RUN, GOOD + len(BAD) - FIRST_RUN]
    assert sum(s["scored"] for s in summaries) == GOOD
    assert sum(sum(s["failed"].values()) for s in summaries) == len(BAD)
    assert progress(group_commits(kafka_bootstrap, group, topics["input"], 3)) == (GOOD + len(BAD),) * 2

    outputs = read_topic(kafka_bootstrap, backfill, expected=GOOD + 1, timeout_s=20)
    sources = Counter(
        (headers["kinfer.source.partition"], headers["kinfer.source.offset"])
        for headers in (dict(m.headers()) for m in outputs)
    )
    assert len(outputs) == GOOD and max(sources.values()) == 1  # each input published once, over two attempts
    value = orjson.loads(outputs[0].value())
    assert set(value) == {"prediction", "model", "source", "timings_ms"}
    assert value["model"] == {"name": "fraud", "version": int(next(iter(summaries[1]["modelVersions"])))}
    assert dict(outputs[0].headers())["kinfer.pipeline"] == name.encode()
    assert {m.key() for m in outputs} <= {r.key for r in records}

    dead = read_topic(kafka_bootstrap, topics["deadLetter"], expected=len(BAD), timeout_s=20)
    assert sorted(m.value() for m in dead) == sorted(BAD)
    reasons = {m.key(): dict(m.headers())["kinfer.error.class"] for m in dead}
    assert reasons == {b"bad-0": b"MalformedJson", b"bad-1": b"WrongType", b"bad-2": b"NotUtf8"}
