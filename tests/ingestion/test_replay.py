"""``kinfer replay`` against the test bed's broker: dry run, selection, re-injected headers, the attempt limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from kinfer_runtime.tools import replay
from tests.ingestion.kafka_helpers import create_topic, read_topic
from tests.ingestion.pipelines import pipeline_manifest, running_pipeline, write_pipeline


def dead_letter_headers(error_class: str, attempt: int, pipeline: str = "fraud") -> list[tuple[str, bytes]]:
    """Headers of a dead-letter record, as README.md ("What comes out") lists them."""
    return [
        ("trace-id", b"t-1"),
        ("kinfer.source.topic", b"in"),
        ("kinfer.source.partition", b"0"),
        ("kinfer.source.offset", b"5"),
        ("kinfer.source.timestamp", b"1700000000000"),
        ("kinfer.error.class", error_class.encode()),
        ("kinfer.error.message", f"{error_class} at field amount".encode()),
        ("kinfer.pipeline", pipeline.encode()),
        ("kinfer.model.version", b"1"),
        ("kinfer.attempt", str(attempt).encode()),
    ]


def send(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers, partition=0)
    assert producer.flush(30) == 0


def high_watermark(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions)
    finally:
        consumer.close()


@pytest.fixture
def pipeline_file(kafka_bootstrap: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    topics = {
        "input": create_topic(kafka_bootstrap, "replay-in", partitions=2),
        "output": create_topic(kafka_bootstrap, "replay-out"),
        "deadLetter": create_topic(kafka_bootstrap, "replay-dlq", partitions=1),
    }
    manifest = pipeline_manifest("fraud", "127.0.0.1:1", topics, consumer={"maxAttempts": 3})
    return write_pipeline(tmp_path / "pipeline.yaml", manifest), topics


def test_dry_run_then_replay_by_class_then_the_attempt_limit(
    kafka_bootstrap: str, pipeline_file: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, topics = pipeline_file
    dlq, input_topic = topics["deadLetter"], topics["input"]
    first = [
        (b"k0", b"{bad json", dead_letter_headers("MalformedJson", 1)),  # offset 0
        (b"k1", b'{"amount": NaN}', dead_letter_headers("NonFinite", 1)),  # 1
        (None, None, dead_letter_headers("EmptyValue", 1)),  # 2: null key and value survive the trip
        (b"k3", b"{bad again", dead_letter_headers("MalformedJson", 3)),  # 3: attempts exhausted
        (b"k4", b"{other", dead_letter_headers("MalformedJson", 1, pipeline="not-fraud")),  # 4: not ours
        (b"k5", b"{bad json 2", dead_letter_headers("MalformedJson", 2)),  # 5
    ]
    send(kafka_bootstrap, dlq, first)
    common = [str(path), "--bootstrap-servers", kafka_bootstrap, "--no-progress"]

    assert replay.main([*common, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would replay 4 of 6 dead-letter records" in out
    assert "MalformedJson" in out and "fraud-dlq" not in out  # our topics have random names
    assert high_watermark(kafka_bootstrap, input_topic) == 0  # a dry run sends nothing

    assert replay.main([*common, "--error-class", "MalformedJson", "--error-class", "EmptyValue"]) == 0
    out = capsys.readouterr().out
    assert "replayed 3 of 6 dead-letter records" in out and "next unread dead-letter offsets: p0:6" in out
    replayed = read_topic(kafka_bootstrap, input_topic, expected=3)
    by_origin = {dict(m.headers())["kinfer.replayed-from"].decode(): m for m in replayed}
    assert sorted(by_origin) == [f"{dlq}:0:0", f"{dlq}:0:2", f"{dlq}:0:5"]
    zero, empty, five = by_origin[f"{dlq}:0:0"], by_origin[f"{dlq}:0:2"], by_origin[f"{dlq}:0:5"]
    assert (zero.key(), zero.value()) == (b"k0", b"{bad json")
    assert (empty.key(), empty.value()) == (None, None)
    assert zero.headers() == [
        ("trace-id", b"t-1"),
        ("kinfer.attempt", b"1"),
        ("kinfer.replayed-from", f"{dlq}:0:0".encode()),
    ]
    assert dict(five.headers())["kinfer.attempt"] == b"2"

    # The pipeline fails them again: the runtime dead-letters each with its attempt raised (simulated here).
    send(
        kafka_bootstrap,
        dlq,
        [
            (b"k0", b"{bad json", dead_letter_headers("MalformedJson", 2)),
            (b"k5", b"{bad json 2", dead_letter_headers("MalformedJson", 3)),
        ],
    )
    assert replay.main([*common, "--from-offset", "6"]) == 0
    out = capsys.readouterr().out
    # k0 (now attempt 2) goes once more; k5 reached maxAttempts=3 and stays in the dead-letter topic.
    assert "replayed 1 of 2 dead-letter records" in out
    assert high_watermark(kafka_bootstrap, input_topic) == 4


def test_offset_range_and_limit(
    kafka_bootstrap: str, pipeline_file: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, topics = pipeline_file
    send(
        kafka_bootstrap,
        topics["deadLetter"],
        [(f"k{i}".encode(), f"v{i}".encode(), dead_letter_headers("WrongType", 1)) for i in range(20)],
    )
    code = replay.main(
        [
            str(path),
            "--bootstrap-servers",
            kafka_bootstrap,
            "--no-progress",
            "--from-offset",
            "5",
            "--to-offset",
            "14",
            "--limit",
            "4",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "replayed 4 of 4 dead-letter records" in out and "next unread dead-letter offsets: p0:9" in out
    values = sorted(m.value() for m in read_topic(kafka_bootstrap, topics["input"], expected=4))
    assert values == [b"v5", b"v6", b"v7", b"v8"]


def test_time_range_selects_nothing_in_the_future(
    kafka_bootstrap: str, pipeline_file: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, topics = pipeline_file
    send(kafka_bootstrap, topics["deadLetter"], [(b"k", b"v", dead_letter_headers("WrongType", 1))])
    assert (
        replay.main([str(path), "--bootstrap-servers", kafka_bootstrap, "--no-progress", "--since", "1h", "--dry-run"])
        == 0
    )
    assert "would replay 1 of 1" in capsys.readouterr().out
    assert (
        replay.main(
            [
                str(path),
                "--bootstrap-servers",
                kafka_bootstrap,
                "--no-progress",
                "--since",
                "2999-01-01T00:00:00Z",
                "--dry-run",
            ]
        )
        == 0
    )
    assert "would replay 0 of 0" in capsys.readouterr().out


def test_round_trip_with_the_runtime_ends_at_max_attempts(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad records go to the dead-letter topic, are replayed, fail again with the attempt raised, and stop."""
    topics = {
        "input": create_topic(kafka_bootstrap, "roundtrip-in", partitions=2),
        "output": create_topic(kafka_bootstrap, "roundtrip-out", partitions=1),
        "deadLetter": create_topic(kafka_bootstrap, "roundtrip-dlq", partitions=1),
    }
    name = f"rt-{topics['input'][-8:]}"
    manifest = pipeline_manifest(name, kafka_bootstrap, topics, consumer={"maxAttempts": 3, "maxBatchWaitMs": 5})
    path = write_pipeline(tmp_path / "pipeline.yaml", manifest)
    good = [b'{"amount": 12.5, "hour": 3, "merchant_category": "grocery", "country": "DE", "channel": "web"}'] * 20
    bad = [b"{broken", b'{"amount": "twelve", "hour": 3}', b'{"hour": 4}']
    send(kafka_bootstrap, topics["input"], [(f"k{i}".encode(), v, [("trace-id", b"t-9")]) for i, v in
                                            enumerate(good + bad)])  # fmt: skip
    common = [str(path), "--bootstrap-servers", kafka_bootstrap, "--no-progress"]

    with running_pipeline(path, kafka_bootstrap, tmp_path / "run.log"):
        dead = read_topic(kafka_bootstrap, topics["deadLetter"], expected=3, timeout_s=120)
        assert sorted(m.value() for m in dead) == sorted(bad)
        assert read_topic(kafka_bootstrap, topics["output"], expected=20, timeout_s=60)
        for round_number, (start, replayed) in enumerate([(0, 3), (3, 3), (6, 0)], start=1):
            assert replay.main([*common, "--from-offset", str(start)]) == 0
            assert f"replayed {replayed} of 3 dead-letter records" in capsys.readouterr().out
            expected_dead = 3 * min(round_number + 1, 3)
            dead = read_topic(kafka_bootstrap, topics["deadLetter"], expected=expected_dead, timeout_s=60)
            assert len(dead) == expected_dead
        # After the third failure the records stay in the dead-letter topic: 3 generations, attempts 1, 2, 3.
        attempts = sorted(int(dict(m.headers())["kinfer.attempt"]) for m in dead)
        assert attempts == [1, 1, 1, 2, 2, 2, 3, 3, 3]
        last = [m for m in dead if dict(m.headers())["kinfer.attempt"] == b"3"]
        assert sorted(m.value() for m in last) == sorted(bad)
        assert all(dict(m.headers())["trace-id"] == b"t-9" for m in last)  # the producer's own headers survive
        assert {dict(m.headers())["kinfer.replayed-from"].decode().rsplit(":", 1)[-1] for m in last} == {"3", "4", "5"}
