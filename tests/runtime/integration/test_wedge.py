"""One record must not wedge a partition: records the producer or a topic refuses, and a dead-letter topic deleted
mid-run, against a real broker with ``kinfer run`` (docs/runtime.md, "Delivery failures").

- A 1.2 MB record (over ``maxRecordBytes`` and over what the producer may send) is dead-lettered with a truncated
  value, its size and its SHA-256; a 1,040,000-byte malformed record (admitted by ``maxRecordBytes``, over
  librdkafka's default ``message.max.bytes``) is dead-lettered whole; a good record whose output the output topic
  refuses (``max.message.bytes``) is dead-lettered as ``OutputRefused``. Good records before and after are
  predicted, and the process never stops.
- The dead-letter topic is deleted while records flow: the runtime holds the records it cannot deliver, pauses
  its input, commits nothing past them, says why on ``/readyz`` and in its metrics, stays live without spinning,
  and carries on once the topic is back. Every input ends with an output or a dead letter.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.runtime.integration.harness import (
    GOOD_TRANSACTION,
    RuntimeProcess,
    TopicReader,
    Topics,
    manifest,
    produce,
    transactions,
)

BIG = 1_200_000  # over maxRecordBytes (1,048,576) and over anything the producer sends
MID = 1_040_000  # admitted by maxRecordBytes, over librdkafka's default message.max.bytes (1,000,000)
HEADER = 300_000  # a header this large makes the output larger than the output topic takes
OUTPUT_TOPIC_MAX = 200_000
TRUNCATED_BYTES = 65_536


def header(message: Any, name: str) -> bytes | None:
    for key, value in message.headers() or []:
        if key == name:
            return bytes(value)
    return None


def create(bootstrap: str, topics: Topics, partitions: int, configs: dict[str, dict[str, str]]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(t, partitions, 1, config=configs.get(t, {})) for t in (topics.input, topics.output,
                                                                          topics.dead_letter)]
    )  # fmt: skip
    for future in futures.values():
        future.result(30)


def new_topics(prefix: str) -> Topics:
    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return Topics(f"{tag}-in", f"{tag}-out", f"{tag}-dlq")


def every_input_accounted(reader: TopicReader, topics: Topics, keys: set[bytes]) -> bool:
    seen = set(reader.seen[topics.output].keys) | set(reader.seen[topics.dead_letter].keys)
    return keys <= seen


@pytest.mark.parametrize("delivery", ["atLeastOnce", "exactlyOnce"])
def test_records_too_large_to_deliver_are_dead_lettered_and_the_runtime_carries_on(
    kafka_bootstrap: str, tmp_path: Path, delivery: str
) -> None:
    topics = new_topics("large")
    create(kafka_bootstrap, topics, 2, {
        topics.input: {"max.message.bytes": "2000000"},
        topics.output: {"max.message.bytes": str(OUTPUT_TOPIC_MAX)},
        topics.dead_letter: {"max.message.bytes": "1200000"},
    })  # fmt: skip
    big = orjson.dumps(dict(GOOD_TRANSACTION, note="x" * BIG))
    mid = b'{"amount": ' + b"1" * (MID - 12) + b"x"  # malformed JSON of MID bytes
    assert len(mid) == MID
    with_header = (b"header-0", orjson.dumps(GOOD_TRANSACTION), [("trace", b"t" * HEADER)])
    before, after = transactions(300), transactions(300, start=300)
    name = "wedge-large-eos" if delivery == "exactlyOnce" else "wedge-large"
    runtime = RuntimeProcess(manifest(name, kafka_bootstrap, topics, delivery=delivery), tmp_path, kafka_bootstrap)
    reader = TopicReader(kafka_bootstrap, [topics.output, topics.dead_letter], keep_messages=True,
                         committed_only=delivery == "exactlyOnce")  # fmt: skip
    keys = {key for key, _ in before + after} | {b"big-0", b"mid-0", b"header-0"}
    try:
        runtime.start()
        runtime.wait_ready()
        produce(kafka_bootstrap, topics.input, before)
        reader.wait_for(lambda: reader.totals()[topics.output] >= len(before), 120, "outputs before")
        records: list[tuple[Any, ...]] = [(b"big-0", big), (b"mid-0", mid), with_header, *after]
        produce(kafka_bootstrap, topics.input, records, **{"message.max.bytes": 4_000_000})
        reader.wait_for(lambda: every_input_accounted(reader, topics, keys) or not runtime.alive(), 120,
                        "an output or a dead letter for every input")  # fmt: skip
        assert runtime.alive(), runtime.log_tail()
        assert runtime.get("/readyz")[0] == 200 and runtime.get("/healthz")[0] == 200
        failures = runtime.metric("kinfer_delivery_failures_total")
        truncated = runtime.metric("kinfer_dead_letters_truncated_total")
        assert runtime.terminate() == 0, runtime.log_tail()
        reader.poll(1.0)
    finally:
        runtime.stop()
        reader.close()

    dead = {m.key(): m for m in reader.seen[topics.dead_letter].messages}
    assert set(dead) == {b"big-0", b"mid-0", b"header-0"}
    assert set(reader.seen[topics.output].keys) == {key for key, _ in before + after}

    big_letter = dead[b"big-0"]
    assert header(big_letter, "kinfer.error.class") == b"RecordTooLarge"
    assert header(big_letter, "kinfer.truncated") == b"value"
    assert header(big_letter, "kinfer.original.size") == str(len(big)).encode()
    assert header(big_letter, "kinfer.original.sha256") == hashlib.sha256(big).hexdigest().encode()
    assert big_letter.value() == big[:TRUNCATED_BYTES]

    mid_letter = dead[b"mid-0"]
    assert header(mid_letter, "kinfer.error.class") == b"MalformedJson"
    assert mid_letter.value() == mid, "a record maxRecordBytes admits is dead-lettered whole"
    assert header(mid_letter, "kinfer.truncated") is None

    refused = dead[b"header-0"]
    assert header(refused, "kinfer.error.class") == b"OutputRefused"
    assert refused.value() == with_header[1] and header(refused, "trace") == with_header[2][0][1]
    assert b"MSG_SIZE_TOO_LARGE" in (header(refused, "kinfer.error.message") or b"")

    assert truncated == 1
    assert failures >= 2  # the big dead letter (by the producer) and the large output (by the broker)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    # read_uncommitted: asks without require_stable, so an open transaction's pending offsets (exactly-once,
    # records held) do not make the broker answer UNSTABLE_OFFSET_COMMIT until the call times out.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_uncommitted"})  # fmt: skip
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in offsets}


def wait(condition: Any, timeout: float, describe: str, runtime: RuntimeProcess) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert runtime.alive(), f"kinfer run exited while waiting for {describe}:\n{runtime.log_tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {describe}:\n{runtime.log_tail()}"
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("delivery", ["atLeastOnce", "exactlyOnce"])
def test_a_deleted_dead_letter_topic_holds_its_records_until_it_is_back(
    private_kafka: Any, tmp_path: Path, delivery: str
) -> None:
    bootstrap = private_kafka.bootstrap_servers
    topics = new_topics("gone")
    create(bootstrap, topics, 2, {})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = "wedge-gone-eos" if delivery == "exactlyOnce" else "wedge-gone"
    pipeline = manifest(name, bootstrap, topics, delivery=delivery)
    group = pipeline["spec"]["consumer"]["group"]
    runtime = RuntimeProcess(pipeline, tmp_path, bootstrap)
    reader = TopicReader(bootstrap, [topics.output, topics.dead_letter], keep_messages=True,
                         committed_only=delivery == "exactlyOnce")  # fmt: skip
    first = [*transactions(200), (b"bad-0", b"{oops")]
    second = [*transactions(100, start=200), (b"bad-1", b"{oops again"), *transactions(100, start=300)]
    keys = {record[0] for record in first + second}
    try:
        runtime.start()
        runtime.wait_ready()
        produce(bootstrap, topics.input, first)
        reader.wait_for(lambda: every_input_accounted(reader, topics, {r[0] for r in first}), 120, "first records")

        admin.delete_topics([topics.dead_letter])[topics.dead_letter].result(30)
        wait(lambda: topics.dead_letter not in admin.list_topics(timeout=10).topics, 60, "the deletion", runtime)
        produce(bootstrap, topics.input, second)
        wait(lambda: runtime.get("/readyz")[0] == 503, 120, "/readyz to say the records are held", runtime)
        status, reason = runtime.get("/readyz")
        assert topics.dead_letter in reason, reason
        print(f"/readyz while the topic is gone: {status} {reason.strip()}")

        cpu, iterations, since = runtime.cpu_seconds(), runtime.metric("kinfer_loop_iterations_total"), time.monotonic()
        time.sleep(20)
        held_s = time.monotonic() - since
        passes_per_s = (runtime.metric("kinfer_loop_iterations_total") - iterations) / held_s
        cpu_share = (runtime.cpu_seconds() - cpu) / held_s
        assert runtime.alive(), runtime.log_tail()
        assert runtime.get("/healthz")[0] == 200, "held records are no reason to restart the pod"
        assert runtime.get("/readyz")[0] == 503
        assert runtime.metric("kinfer_delivery_held") == 1
        assert runtime.metric("kinfer_delivery_failures_total") >= 1
        print(f"held: {passes_per_s:.0f} loop passes/s, {cpu_share:.2f} cores")
        assert passes_per_s < 100 and cpu_share < 0.3, "holding must not spin"
        # Nothing past bad-1 is committed: its partition's committed offset is at most bad-1's offset.
        bad_partition, bad_offset = locate(bootstrap, topics.input, b"bad-1")
        assert committed(bootstrap, group, topics.input, 2)[bad_partition] <= bad_offset
        assert b"bad-1" not in reader.seen[topics.dead_letter].keys

        admin.create_topics([NewTopic(topics.dead_letter, 2, 1)])[topics.dead_letter].result(30)
        # The first reader's positions in the deleted topic are past the new one's end: a reader of its own.
        again = TopicReader(bootstrap, [topics.dead_letter], committed_only=delivery == "exactlyOnce")
        try:

            def accounted() -> bool:
                seen = set(reader.seen[topics.output].keys) | set(reader.seen[topics.dead_letter].keys)
                return keys <= seen | set(again.seen[topics.dead_letter].keys) or not runtime.alive()

            wait_reading([reader, again], accounted, 120, "every input after the topic is back")
            assert runtime.alive(), runtime.log_tail()
            wait(lambda: runtime.get("/readyz")[0] == 200, 30, "/readyz to recover", runtime)
            assert runtime.metric("kinfer_delivery_held") == 0
            assert runtime.terminate() == 0, runtime.log_tail()
            assert b"bad-1" in again.seen[topics.dead_letter].keys
        finally:
            again.close()
    finally:
        runtime.stop()
        reader.close()


def wait_reading(readers: list[TopicReader], condition: Any, timeout: float, describe: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {describe}: {[r.totals() for r in readers]}"
        for reader in readers:
            reader.poll(0.25)


def locate(bootstrap: str, topic: str, key: bytes) -> tuple[int, int]:
    """(partition, offset) of the record with ``key`` in ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"locate-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(2)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None and message.key() == key:
                    return message.partition() or 0, message.offset() or 0
    finally:
        consumer.close()
    raise AssertionError(f"{key!r} not found in {topic}")
