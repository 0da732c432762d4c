"""Reading a bounded range of a topic without joining any consumer group (``kinfer replay``, ``kinfer score``).

Partitions are assigned by hand to a consumer with a throwaway group id that never commits, so a live
pipeline's group is never touched. The end of each range is fixed before reading starts (at the high
watermark at the latest): records appended while we read, such as records replayed and failed again, are not
read in the same run, which is what keeps a replay from chasing its own tail.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

Range = tuple[int, int]  # [start, end) offsets
_UNREADABLE = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED)


@dataclass(frozen=True)
class RangeBounds:
    """What a user asked for; None means unbounded on that side. Offsets inclusive, times as epoch ms."""

    partitions: frozenset[int] = frozenset()
    from_offset: int | None = None
    to_offset: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None


def partition_ranges(
    watermarks: dict[int, tuple[int, int]],
    bounds: RangeBounds,
    since_offsets: dict[int, int] | None = None,
    until_offsets: dict[int, int] | None = None,
) -> dict[int, Range]:
    """The [start, end) range to read per partition; empty ranges are left out.

    ``since_offsets``/``until_offsets`` are the broker's answers to offsets_for_times (-1: no record that late,
    meaning the end of the partition).
    """
    ranges = {}
    for partition, (low, high) in sorted(watermarks.items()):
        if bounds.partitions and partition not in bounds.partitions:
            continue
        start, end = low, high
        if bounds.from_offset is not None:
            start = max(start, bounds.from_offset)
        if bounds.to_offset is not None:
            end = min(end, bounds.to_offset + 1)
        if since_offsets is not None and partition in since_offsets:
            since = since_offsets[partition]
            start = max(start, high if since < 0 else since)
        if until_offsets is not None and partition in until_offsets:
            until = until_offsets[partition]
            end = min(end, high if until < 0 else until)
        if start < end:
            ranges[partition] = (start, end)
    return ranges


def range_consumer(config: dict[str, Any], purpose: str, group: str | None = None) -> Consumer:
    """A consumer in a group of its own that never commits; read_committed so aborted writes are not read.

    ``group``: a group to commit a batch run's progress to (tools/batch_progress.py); never joined either."""
    settings = dict(config)
    settings.update(
        {
            "group.id": group or f"kinfer-{purpose}-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    return Consumer(settings)


def plan_ranges(consumer: Consumer, topic: str, bounds: RangeBounds, timeout_s: float = 30.0) -> dict[int, Range]:
    """Asks the broker for the partitions, watermarks and (if times are given) offsets of ``topic``."""
    metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise ValueError(f"topic {topic!r} not found: {metadata.error if metadata else 'no metadata'}")
    watermarks = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s, cached=False)
        for p in metadata.partitions
    }

    def offsets_at(ms: int | None) -> dict[int, int] | None:
        if ms is None:
            return None
        found = consumer.offsets_for_times([TopicPartition(topic, p, ms) for p in watermarks], timeout=timeout_s)
        return {tp.partition: tp.offset for tp in found}

    return partition_ranges(watermarks, bounds, offsets_at(bounds.since_ms), offsets_at(bounds.until_ms))


def read_ranges(
    consumer: Consumer,
    topic: str,
    ranges: dict[int, Range],
    idle_timeout_s: float = 15.0,
    on_idle: Callable[[dict[int, int]], None] | None = None,
) -> Iterator[Any]:
    """Every message of the ranges, partition by partition interleaved as the broker returns them.

    Stops when each partition reached its end, or after ``idle_timeout_s`` without a message (an open
    transaction holding back read_committed readers, say); ``on_idle`` then gets the offsets not reached.
    """
    position = {p: start for p, (start, _) in ranges.items()}
    pending = {p for p, (start, end) in ranges.items() if start < end}
    if not pending:
        return
    consumer.assign([TopicPartition(topic, p, position[p]) for p in sorted(pending)])
    last_progress = time.monotonic()
    while pending:
        messages: list[Any] = consumer.consume(500, timeout=0.5)
        if not messages and time.monotonic() - last_progress > idle_timeout_s:
            if on_idle is not None:
                on_idle({p: position[p] for p in pending})
            return
        for message in messages:
            error = message.error()
            partition = message.partition()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    _finish(consumer, topic, partition, pending)
                    continue
                if error.fatal() or error.code() in _UNREADABLE:
                    raise KafkaException(error)
                continue  # transient (a broker reconnecting): the idle timeout bounds how long we wait
            last_progress = time.monotonic()
            if partition not in pending:
                continue
            end = ranges[partition][1]
            if message.offset() >= end:
                _finish(consumer, topic, partition, pending)
                continue
            position[partition] = message.offset() + 1
            yield message
            if position[partition] >= end:
                _finish(consumer, topic, partition, pending)


def _finish(consumer: Consumer, topic: str, partition: int, pending: set[int]) -> None:
    if partition in pending:
        pending.discard(partition)
        consumer.pause([TopicPartition(topic, partition)])
