"""Progress of a consumer group across polls: stuck partitions and consume/arrival rates (pure, time passed in).

A partition is *stuck* when a live group member owns it, it has lag, and its committed offset has not moved
for ``stuck_polls`` consecutive polls: a poison record or a wedged consumer, which more replicas can't fix.
Ownership matters: with no consumer running every partition's offset stands still, and that lag must scale
*out*, not be ignored (KEDA's ``excludePersistentLag`` can't tell the two apart).

The per-replica consume rate comes from committed-offset movement between polls, taken only while the
group had lag at both ends of the interval (an idle group's movement is the arrival rate, not its capacity)
and the offsets moved (a group that doesn't move is stuck or paused, which ``stuck`` reports; it says nothing
about how fast a replica drains), smoothed with an exponentially weighted mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kinfer_operator.autoscaling.lag import LagReading, committed_sum, end_sum

RATE_SMOOTHING = 0.3  # weight of the newest interval in the moving averages


@dataclass
class _PartitionHistory:
    committed: int | None = None
    unchanged_polls: int = 0


@dataclass
class GroupProgress:
    """Mutable per-pipeline memory of earlier polls. Feed every poll to ``observe``."""

    stuck_polls: int = 5
    _partitions: dict[int, _PartitionHistory] = field(default_factory=dict)
    _last_time: float | None = None
    _last_committed: int = 0
    _last_end: int = 0
    _last_lag: int = 0
    _last_replicas: int = 0
    per_replica_rate: float | None = None  # records/s one replica consumes (None until measured)
    arrival_rate: float | None = None  # records/s produced into the topic
    stuck: frozenset[int] = frozenset()

    def observe(self, reading: LagReading, lags: dict[int, int], replicas: int, read_committed: bool = True) -> None:
        """Update stuck partitions and rates with one poll (``lags`` from ``lag_by_partition``)."""
        stuck = set()
        for offsets in reading.partitions:
            history = self._partitions.setdefault(offsets.partition, _PartitionHistory())
            moved = offsets.committed != history.committed
            history.unchanged_polls = 0 if moved else history.unchanged_polls + 1
            history.committed = offsets.committed
            owned = offsets.partition in reading.assigned
            # unchanged_polls counts intervals, so N polls without progress means N-1 unchanged intervals
            if owned and lags.get(offsets.partition, 0) > 0 and history.unchanged_polls >= self.stuck_polls - 1:
                stuck.add(offsets.partition)
        self.stuck = frozenset(stuck)
        total_lag = sum(lags.values())
        committed, end = committed_sum(reading), end_sum(reading, read_committed)
        if self._last_time is not None and reading.time > self._last_time:
            elapsed = reading.time - self._last_time
            arrival = max(0, end - self._last_end) / elapsed
            self.arrival_rate = _smooth(self.arrival_rate, arrival)
            consumed = committed - self._last_committed
            busy = self._last_lag > 0 and total_lag > 0
            if busy and consumed > 0 and self._last_replicas > 0 and replicas > 0:
                replicas_mean = (self._last_replicas + replicas) / 2
                self.per_replica_rate = _smooth(self.per_replica_rate, consumed / elapsed / replicas_mean)
        self._last_time, self._last_committed, self._last_end = reading.time, committed, end
        self._last_lag, self._last_replicas = total_lag, replicas

    def forget_partitions_not_in(self, partitions: set[int]) -> None:
        for partition in set(self._partitions) - partitions:
            del self._partitions[partition]


def _smooth(previous: float | None, sample: float) -> float:
    return sample if previous is None else (1 - RATE_SMOOTHING) * previous + RATE_SMOOTHING * sample
