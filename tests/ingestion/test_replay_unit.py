"""Unit tests of replay's pure parts: header rewriting, selection, report, time parsing, offset ranges."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kinfer_runtime.kafka.topic_range import RangeBounds, partition_ranges
from kinfer_runtime.tools.replay import selected_records
from kinfer_runtime.tools.replay_plan import (
    DeadLetter,
    ReplayReport,
    Selection,
    parse_time_ms,
    replay_headers,
    skip_reason,
)


class FakeMessage:
    """Only what DeadLetter.from_message reads: the confluent-kafka Message accessors."""

    def __init__(self, offset: int, headers: list[tuple[str, Any]], value: bytes | None = b"{}", partition: int = 0):
        self._offset, self._headers, self._value, self._partition = offset, headers, value, partition

    def topic(self) -> str:
        return "fraud-dlq"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def key(self) -> bytes:
        return b"card-1"

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, Any]]:
        return self._headers


def dlq_headers(
    error_class: str = "MalformedJson", attempt: int = 1, pipeline: str = "fraud"
) -> list[tuple[str, bytes]]:
    return [
        ("trace-id", b"abc"),
        ("kinfer.source.topic", b"fraud-in"),
        ("kinfer.source.partition", b"2"),
        ("kinfer.source.offset", b"41"),
        ("kinfer.source.timestamp", b"1700000000000"),
        ("kinfer.error.class", error_class.encode()),
        ("kinfer.error.message", b"line 1: unexpected character"),
        ("kinfer.pipeline", pipeline.encode()),
        ("kinfer.model.version", b"1"),
        ("kinfer.attempt", str(attempt).encode()),
    ]


def test_dead_letter_is_decoded_from_its_headers() -> None:
    dead = DeadLetter.from_message(FakeMessage(7, dlq_headers("WrongType", 2), partition=1))
    assert (dead.error_class, dead.attempt, dead.pipeline, dead.position) == ("WrongType", 2, "fraud", "fraud-dlq:1:7")
    assert dead.error_message == "line 1: unexpected character"
    bare = DeadLetter.from_message(FakeMessage(0, [("x", None)], value=None))
    assert (bare.error_class, bare.attempt, bare.pipeline, bare.value) == ("(none)", 1, None, None)


def test_replay_headers_keep_the_originals_and_the_attempt() -> None:
    dead = DeadLetter.from_message(FakeMessage(7, [*dlq_headers(attempt=2), ("kinfer.replayed-from", b"old:0:1")]))
    assert replay_headers(dead) == [
        ("trace-id", b"abc"),
        ("kinfer.attempt", b"2"),
        ("kinfer.replayed-from", b"fraud-dlq:0:7"),
    ]


def test_selection_by_pipeline_class_and_attempts() -> None:
    selection = Selection(pipeline="fraud", max_attempts=3, error_classes=frozenset({"MalformedJson"}))
    decide = lambda h: skip_reason(DeadLetter.from_message(FakeMessage(0, h)), selection)  # noqa: E731
    assert decide(dlq_headers("MalformedJson", 1)) is None
    assert decide(dlq_headers("MalformedJson", 2)) is None
    assert decide(dlq_headers("MalformedJson", 3)) == "attempts exhausted"
    assert decide(dlq_headers("NonFinite", 1)) == "other error class"
    assert decide(dlq_headers("MalformedJson", 1, pipeline="other")) == "other pipeline"
    every_class = Selection(pipeline="fraud", max_attempts=1)
    assert skip_reason(DeadLetter.from_message(FakeMessage(0, dlq_headers("NonFinite", 1))), every_class) == (
        "attempts exhausted"
    )


def test_selected_records_counts_everything_and_stops_at_the_limit() -> None:
    messages = [FakeMessage(i, dlq_headers("MalformedJson" if i % 2 else "NonFinite", 1 + i // 4)) for i in range(12)]
    report = ReplayReport(sample_size=2)
    everything = list(selected_records(iter(messages), Selection("fraud", max_attempts=3), report))
    # Offsets 0-7 have attempts 1-2 (replayable), 8-11 attempt 3 (exhausted).
    assert [dict(r.headers)["kinfer.replayed-from"] for r in everything] == [
        f"fraud-dlq:0:{i}".encode() for i in range(8)
    ]
    assert report.read == 12 and report.total_replayable == 8
    assert report.skipped == {("NonFinite", "attempts exhausted"): 2, ("MalformedJson", "attempts exhausted"): 2}
    assert report.next_offsets == {0: 12} and len(report.samples) == 2
    table = report.table().splitlines()
    assert table[1].split() == ["MalformedJson", "4", "2", "0"]
    assert table[-1].split() == ["total", "8", "4"]
    assert "fraud-dlq:0:0 NonFinite attempt=1" in report.sample_lines()[0]

    limited = ReplayReport()
    assert len(list(selected_records(iter(messages), Selection("fraud", max_attempts=3), limited, limit=5))) == 5
    assert limited.read == 5 and limited.next_offsets == {0: 5}  # resume from offset 5


def test_parse_time_ms() -> None:
    now = 1_700_000_000_000
    assert parse_time_ms("1699999999000", now) == 1_699_999_999_000
    assert parse_time_ms("30m", now) == now - 30 * 60 * 1000
    assert parse_time_ms("1.5h", now) == now - 5_400_000
    expected = int(datetime(2026, 11, 25, 22, 0, tzinfo=UTC).timestamp() * 1000)
    assert parse_time_ms("2026-11-25T22:00:00Z", now) == expected
    assert parse_time_ms("2026-11-25T22:00:00", now) == expected
    assert parse_time_ms("2026-11-25T23:00:00+01:00", now) == expected
    with pytest.raises(ValueError, match="cannot read time"):
        parse_time_ms("yesterday", now)


def test_partition_ranges() -> None:
    watermarks = {0: (0, 100), 1: (50, 60), 2: (0, 0)}
    assert partition_ranges(watermarks, RangeBounds()) == {0: (0, 100), 1: (50, 60)}
    assert partition_ranges(watermarks, RangeBounds(partitions=frozenset({1}))) == {1: (50, 60)}
    # Inclusive offsets, clamped to what the partition still holds.
    assert partition_ranges(watermarks, RangeBounds(from_offset=10, to_offset=54)) == {0: (10, 55), 1: (50, 55)}
    assert partition_ranges(watermarks, RangeBounds(from_offset=200)) == {}
    # Times: offsets_for_times answers -1 where no record is that late (= the end of the partition).
    assert partition_ranges(watermarks, RangeBounds(since_ms=1), since_offsets={0: 40, 1: -1}) == {0: (40, 100)}
    assert partition_ranges(watermarks, RangeBounds(until_ms=1), until_offsets={0: 5, 1: -1}) == {
        0: (0, 5),
        1: (50, 60),
    }
