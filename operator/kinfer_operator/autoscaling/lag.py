"""Lag arithmetic for one poll of a consumer group: pure functions over offsets, no Kafka client here.

Per partition, lag = end - committed, where *end* is the last stable offset (LSO) for ``read_committed``
groups (records of open transactions can't be read yet, so they aren't lag) and the high watermark otherwise.
The differences from KEDA's Kafka scaler are deliberate and documented in ``docs/autoscaling.md``:

* no committed offset: ``earliest`` → every retained record (end - log start; KEDA uses end, i.e. assumes
  the log starts at 0), ``latest`` → 1 while the partition holds any record (as KEDA: it wakes a pipeline
  scaled to zero so the group gets a position), else 0;
* a committed offset below the log start (records deleted by retention) counts from the log start;
* a remaining lag that the poller verified to be only transaction control markers (or aborted records)
  counts 0 — KEDA reports 1 per partition for ever after a transactional producer (kedacore/keda#5675).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kinfer_runtime.spec import OffsetReset


@dataclass(frozen=True)
class PartitionOffsets:
    """What the poller read for one partition of the input topic."""

    partition: int
    log_start: int  # earliest retained offset
    high_watermark: int  # log-end offset: one past the last record, control markers included
    last_stable: int  # LSO: first offset of a still-open transaction (== high watermark when none is open)
    committed: int | None  # the group's committed offset, None when it never committed
    # How many offsets at [committed, end) the poller verified to hold no data record a read_committed
    # consumer would return (commit/abort markers, aborted records). 0 when unverified.
    control_tail: int = 0


@dataclass(frozen=True)
class LagReading:
    """One poll of one pipeline: the input topic's partitions and the group's position on them."""

    topic: str
    partitions: tuple[PartitionOffsets, ...]
    assigned: frozenset[int] = field(default_factory=frozenset)  # partitions a live group member owns
    time: float = 0.0  # monotonic seconds of the poll
    # The metadata of each committed offset: the runtime's records scored per version (records/scored_counts.py).
    committed_metadata: Mapping[int, str] = field(default_factory=dict)


def end_offset(offsets: PartitionOffsets, read_committed: bool) -> int:
    """The offset a caught-up consumer reaches."""
    return offsets.last_stable if read_committed else offsets.high_watermark


def partition_lag(offsets: PartitionOffsets, reset: OffsetReset | str, read_committed: bool = True) -> int:
    """Records the group still has to consume on one partition (never negative)."""
    end = end_offset(offsets, read_committed)
    if offsets.committed is None or offsets.committed < 0:
        if OffsetReset(reset) is OffsetReset.EARLIEST:
            return max(0, end - offsets.log_start)
        return 1 if end > offsets.log_start else 0
    position = max(offsets.committed, offsets.log_start)
    raw = max(0, end - position)
    if offsets.control_tail and raw <= offsets.control_tail:
        return 0  # what is left is only markers (verified by the poller for exactly this committed/end)
    return raw


def lag_by_partition(reading: LagReading, reset: OffsetReset | str, read_committed: bool = True) -> dict[int, int]:
    return {p.partition: partition_lag(p, reset, read_committed) for p in reading.partitions}


def top_partitions(lags: dict[int, int], count: int = 5) -> list[tuple[int, int]]:
    """The partitions with most lag, largest first (ties by partition number), zero-lag ones left out."""
    ranked = sorted(((p, lag) for p, lag in lags.items() if lag > 0), key=lambda item: (-item[1], item[0]))
    return ranked[:count]


def committed_sum(reading: LagReading) -> int:
    """Σ committed offsets (partitions without one count 0): its movement over time is the consume rate."""
    return sum(p.committed for p in reading.partitions if p.committed is not None and p.committed >= 0)


def end_sum(reading: LagReading, read_committed: bool = True) -> int:
    """Σ end offsets: its movement over time is the arrival rate."""
    return sum(end_offset(p, read_committed) for p in reading.partitions)
