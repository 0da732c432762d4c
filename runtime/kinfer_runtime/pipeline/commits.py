"""At-least-once bookkeeping: which input offsets may be committed, given which outputs the broker has acked.

Batches are produced in consume order and their delivery reports arrive in any order; an input offset becomes
committable only when its batch *and every batch before it* has every output and dead-letter record
acknowledged. So the committable offsets are those of the longest fully-acknowledged prefix of the in-flight
batches. Delivery reports are served on the loop's own thread (``producer.poll``), so nothing here is locked.
Pure: no Kafka client is touched, which is what lets the ordering rules be unit-tested.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from kinfer_runtime.pipeline.outgoing import BatchRecords

TopicPartitionKey = tuple[str, int]


@dataclass
class InFlightBatch:
    """A produced batch waiting for its delivery reports."""

    sequence: int
    next_offsets: dict[TopicPartitionKey, int]  # per input partition: the offset after the batch's last record
    records: BatchRecords
    output_timestamps_s: np.ndarray  # input timestamps (seconds) of the output records, for end-to-end latency
    pending: int = 0
    failed: list[int] = field(default_factory=list)
    acked_outputs: int = 0
    acked_shadow: int = 0
    acked_dead_letters: dict[str, int] = field(default_factory=dict)
    fatal_error: Any = None
    # The input of record i (for a refused output, whose input is dead-lettered instead), when known.
    source: Callable[[int], Any] | None = None
    # Only a failed delivery writes these: the last error of each failed record, and how often it was retried.
    errors: dict[int, Any] | None = None
    attempts: dict[int, int] | None = None
    # Per input partition, records each model version scored: committed with the offsets (records/scored_counts.py).
    scored: dict[TopicPartitionKey, dict[int, int]] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.pending == 0 and not self.failed

    def input_of(self, index: int) -> Any:
        """The input message of record ``index``, or None when not known."""
        return self.source(index) if self.source is not None else None

    def delivery_callback(self, index: int) -> Callable[[Any, Any], None]:
        """The ``on_delivery`` for record ``index`` (confluent-kafka passes (error, message))."""
        return partial(self.delivered, index)

    def delivered(self, index: int, error: Any, _message: Any) -> None:
        """Record ``index``'s delivery report. Produced with ``partial(batch.delivered, i)``: a partial is made in
        C, where a closure per record cost a Python call each (3 % of the loop in a py-spy profile)."""
        self.pending -= 1
        if error is not None:
            self.failed.append(index)
            if self.errors is None:
                self.errors = {}
            self.errors[index] = error
            if getattr(error, "fatal", lambda: False)():
                self.fatal_error = error
            return
        reason = self.records.reasons[index]
        if reason is None:
            if self.records.shadows[index]:
                self.acked_shadow += 1
            else:
                self.acked_outputs += 1
        else:
            self.acked_dead_letters[reason] = self.acked_dead_letters.get(reason, 0) + 1

    def take_failed(self) -> list[int]:
        """Indices whose delivery failed, to be produced again (their batch stays uncommittable until then)."""
        failed, self.failed = self.failed, []
        return failed

    def error_of(self, index: int) -> Any:
        """The error of record ``index``'s last failed delivery (None if it has none)."""
        return None if self.errors is None else self.errors.get(index)

    def attempt(self, index: int) -> int:
        """Count one more retry of record ``index``; the count so far."""
        if self.attempts is None:
            self.attempts = {}
        count = self.attempts[index] = self.attempts.get(index, 0) + 1
        return count


class BatchTracker:
    """The in-flight batches, oldest first."""

    def __init__(self) -> None:
        self.batches: deque[InFlightBatch] = deque()
        self._sequence = 0

    def add(
        self,
        next_offsets: dict[TopicPartitionKey, int],
        records: BatchRecords,
        output_timestamps_s: np.ndarray,
        source: Callable[[int], Any] | None = None,
        scored: dict[TopicPartitionKey, dict[int, int]] | None = None,
    ) -> InFlightBatch:
        self._sequence += 1
        batch = InFlightBatch(
            self._sequence, next_offsets, records, output_timestamps_s, len(records), source=source, scored=scored or {}
        )
        self.batches.append(batch)
        return batch

    def __len__(self) -> int:
        return len(self.batches)

    def pending_records(self) -> int:
        return sum(batch.pending for batch in self.batches)

    def records_in_flight(self) -> int:
        """Records of the batches not yet completed (acknowledged ones included until their batch completes)."""
        return sum(len(batch.records) for batch in self.batches)

    def with_failures(self) -> list[InFlightBatch]:
        return [batch for batch in self.batches if batch.failed]

    def pop_completed(self) -> list[InFlightBatch]:
        """Remove and return the fully acknowledged prefix."""
        completed = []
        while self.batches and self.batches[0].done:
            completed.append(self.batches.popleft())
        return completed

    def forget_partitions(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Lost partitions (another member owns them now): their offsets must never be committed by us."""
        lost = set(partitions)
        for batch in self.batches:
            for key in lost & batch.next_offsets.keys():
                del batch.next_offsets[key]
            for key in lost & batch.scored.keys():
                del batch.scored[key]


def merge_offsets(batches: Iterable[InFlightBatch]) -> dict[TopicPartitionKey, int]:
    """The offsets to commit after these (ordered) batches: per partition the highest next offset."""
    merged: dict[TopicPartitionKey, int] = {}
    for batch in batches:
        advance_offsets(merged, batch.next_offsets)
    return merged


def advance_offsets(target: dict[TopicPartitionKey, int], offsets: dict[TopicPartitionKey, int]) -> None:
    """Raise ``target``'s offsets to ``offsets`` where those are higher (an offset to commit never goes back)."""
    for key, offset in offsets.items():
        if offset > target.get(key, -1):
            target[key] = offset


def first_offsets(messages: Iterable[Any]) -> dict[TopicPartitionKey, int]:
    """Per partition, the lowest offset among ``messages`` (``confluent_kafka.Message``): where reading them
    again starts."""
    first: dict[TopicPartitionKey, int] = {}
    for message in messages:
        key, offset = (message.topic() or "", message.partition() or 0), message.offset() or 0
        first[key] = min(first.get(key, offset), offset)
    return first


class CommitPacer:
    """When to send the asynchronous commit of what has been acknowledged.

    Committing after every completed batch sent hundreds of offset commits a second when the loop closes small
    batches (a few thousand records/s), each a write to ``__consumer_offsets`` on the broker. So acknowledged
    offsets are gathered and committed once a batch's worth of records (``max_records``) is waiting, or the
    oldest has waited ``interval_s``. What a kill can redeliver grows by less than one batch: fewer than
    ``max_records`` acknowledged records, or ``interval_s`` of them at a rate that fills no batch in that time.
    """

    def __init__(self, max_records: int, interval_s: float) -> None:
        self.max_records = max_records
        self.interval_s = interval_s
        self.offsets: dict[TopicPartitionKey, int] = {}
        self.records = 0
        self.since = 0.0  # when the oldest acknowledged, uncommitted batch completed

    def acknowledged(self, offsets: dict[TopicPartitionKey, int], records: int, now: float) -> None:
        """Batches of ``records`` records completed at ``now``; ``offsets`` are the next offsets after them."""
        if not self.offsets and not self.records:
            self.since = now
        advance_offsets(self.offsets, offsets)
        self.records += records

    def take_due(self, now: float) -> dict[TopicPartitionKey, int]:
        """The offsets to commit now (then forgotten here), or nothing yet."""
        if not self.offsets or (self.records < self.max_records and now - self.since < self.interval_s):
            return {}
        due, self.offsets, self.records = self.offsets, {}, 0
        return due

    def forget_partitions(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Revoked or lost partitions: their offsets are committed (or dropped) by the rebalance, not here."""
        for key in partitions:
            self.offsets.pop(key, None)
        if not self.offsets:
            self.records = 0
