"""At-least-once bookkeeping: only the fully acknowledged prefix of in-flight batches is committable."""

from __future__ import annotations

import numpy as np

from kinfer_runtime.pipeline.commits import BatchTracker, CommitPacer, merge_offsets
from kinfer_runtime.pipeline.outgoing import BatchRecords, Outgoing

NO_TIMES = np.empty(0)


def records(n: int, reason: str | None = None) -> list[Outgoing]:
    return [Outgoing("out", None, b"v", [], reason) for _ in range(n)]


class Error:
    def __init__(self, fatal: bool = False):
        self._fatal = fatal

    def fatal(self) -> bool:
        return self._fatal


def test_a_later_batch_acked_first_waits_for_the_earlier_one() -> None:
    tracker = BatchTracker()
    first = tracker.add({("in", 0): 10}, BatchRecords.of(records(2)), NO_TIMES)
    second = tracker.add({("in", 0): 20, ("in", 1): 5}, BatchRecords.of(records(1)), NO_TIMES)
    second.delivery_callback(0)(None, None)
    assert tracker.pop_completed() == []
    first.delivery_callback(0)(None, None)
    assert tracker.pop_completed() == [] and tracker.pending_records() == 1
    first.delivery_callback(1)(None, None)
    completed = tracker.pop_completed()
    assert completed == [first, second] and len(tracker) == 0
    assert merge_offsets(completed) == {("in", 0): 20, ("in", 1): 5}


def test_a_failed_delivery_blocks_the_batch_until_it_is_produced_again() -> None:
    tracker = BatchTracker()
    batch = tracker.add({("in", 0): 3}, BatchRecords.of(records(2) + records(1, "MalformedJson")), NO_TIMES)
    batch.delivery_callback(0)(None, None)
    batch.delivery_callback(1)(Error(), None)
    batch.delivery_callback(2)(None, None)
    assert tracker.pop_completed() == [] and tracker.with_failures() == [batch]
    assert batch.fatal_error is None
    assert batch.take_failed() == [1] and batch.failed == []
    batch.pending += 1  # produced again
    assert tracker.pop_completed() == []
    batch.delivery_callback(1)(None, None)
    assert tracker.pop_completed() == [batch]
    assert batch.acked_outputs == 2 and batch.acked_dead_letters == {"MalformedJson": 1}


def test_fatal_delivery_errors_are_kept_and_lost_partitions_never_committed() -> None:
    tracker = BatchTracker()
    batch = tracker.add({("in", 0): 3, ("in", 1): 9}, BatchRecords.of(records(1)), NO_TIMES)
    batch.delivery_callback(0)(Error(fatal=True), None)
    assert batch.fatal_error is not None
    tracker.forget_partitions([("in", 1)])
    assert batch.next_offsets == {("in", 0): 3}


def test_records_in_flight_count_every_record_until_its_batch_completes() -> None:
    tracker = BatchTracker()
    first = tracker.add({("in", 0): 3}, BatchRecords.of(records(3)), NO_TIMES)
    tracker.add({("in", 0): 5}, BatchRecords.of(records(1, "MalformedJson") + records(1)), NO_TIMES)
    assert tracker.records_in_flight() == 5
    for index in range(3):
        first.delivery_callback(index)(None, None)
    assert tracker.records_in_flight() == 5  # acknowledged, but its batch is not popped yet
    tracker.pop_completed()
    assert tracker.records_in_flight() == 2


def test_commits_wait_for_a_batch_worth_of_records_or_the_interval() -> None:
    pacer = CommitPacer(max_records=256, interval_s=0.1)
    pacer.acknowledged({("in", 0): 11}, records=10, now=5.0)
    pacer.acknowledged({("in", 0): 21, ("in", 1): 4}, records=14, now=5.02)
    assert pacer.take_due(now=5.05) == {}  # 24 records, 50 ms: not yet
    assert pacer.take_due(now=5.11) == {("in", 0): 21, ("in", 1): 4}  # the oldest waited the interval
    assert pacer.take_due(now=5.2) == {}  # nothing new acknowledged: nothing to commit
    pacer.acknowledged({("in", 1): 300}, records=256, now=6.0)
    assert pacer.take_due(now=6.0) == {("in", 1): 300}  # a full batch's worth: at once


def test_offsets_only_move_forward_and_forgotten_partitions_are_not_committed() -> None:
    pacer = CommitPacer(max_records=2, interval_s=1.0)
    pacer.acknowledged({("in", 0): 50, ("in", 1): 7}, records=1, now=0.0)
    pacer.acknowledged({("in", 0): 40}, records=1, now=0.1)
    pacer.forget_partitions([("in", 1)])
    assert pacer.take_due(now=0.1) == {("in", 0): 50}
    pacer.acknowledged({("in", 2): 9}, records=1, now=0.2)
    pacer.forget_partitions([("in", 2)])
    assert pacer.take_due(now=5.0) == {}
