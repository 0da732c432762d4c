"""Partition assignment for the loop: cooperative (incremental) rebalance callbacks, pausing, seeking and lag.

The callbacks run inside ``consumer.consume`` on the loop's thread. On revoke, the ``revoked`` callback runs
while the partitions are still owned, so that what was produced from them can be acknowledged and committed
before they go (the next owner starts exactly after our last output). On lost (the group moved on without us),
the partitions are dropped first and the ``lost`` callback runs after: nothing of theirs may be committed, since
another member may already own them. On assign, the partitions' committed metadata is read (one round trip per
rebalance) and handed to the ``assigned`` callback: the records scored per version so far
(:mod:`kinfer_runtime.records.scored_counts`), which the next commits carry on from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_INVALID, KafkaException, TopicPartition

from kinfer_runtime.observability.health import LoopState
from kinfer_runtime.observability.logs import fields
from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.pipeline.commits import TopicPartitionKey

log = logging.getLogger("kinfer.rebalance")

PartitionsCallback = Callable[[set[TopicPartitionKey]], None]
# (committed metadata of each newly assigned partition, the partitions whose metadata could not be read)
AssignedCallback = Callable[[dict[TopicPartitionKey, str | None], set[TopicPartitionKey]], None]
COMMITTED_TIMEOUT_S = 5.0


def partition_lag(
    positions: dict[TopicPartitionKey, int], high_watermarks: dict[TopicPartitionKey, int]
) -> dict[TopicPartitionKey, int]:
    """Lag per partition: high watermark minus the next offset to read (a partition with no position yet
    counts its whole high watermark, clamped at zero)."""
    lag = {}
    for key, high in high_watermarks.items():
        position = positions.get(key, OFFSET_INVALID)
        lag[key] = max(0, high - position) if position >= 0 else max(0, high)
    return lag


class Assignment:
    """The partitions this member owns, kept in step with the group's rebalance callbacks."""

    def __init__(
        self,
        consumer: Any,
        input_topic: str,
        metrics: RuntimeMetrics,
        state: LoopState,
        revoked: PartitionsCallback,
        lost: PartitionsCallback,
        assigned: AssignedCallback = lambda _committed, _unreadable: None,
    ) -> None:
        self.consumer = consumer
        self.input_topic = input_topic
        self.metrics, self.state = metrics, state
        self.revoked, self.lost, self.assigned_metadata = revoked, lost, assigned
        self.assigned: set[TopicPartitionKey] = set()
        self.paused = False

    def owned(self) -> set[TopicPartitionKey]:
        return self.assigned

    def subscribe(self) -> None:
        self.consumer.subscribe(
            [self.input_topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost
        )

    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        if consumer is not self.consumer:  # a replaced consumer, closing on its own thread
            return
        self.metrics.rebalances.inc()
        foreign = [tp for tp in partitions if tp.topic != self.input_topic]
        if foreign:
            # A static group leader that rejoins gets its previous assignment back without a new one being
            # computed, even if the group's subscription changed meanwhile (e.g. the pipeline's input topic was
            # edited but the pod name stayed). Those partitions are not ours to read or commit.
            log.error("assigned partitions of another topic; ignoring them (use a new consumer.group after "
                      "changing the input topic)", extra=fields(foreign=_names(foreign)))  # fmt: skip
            partitions = [tp for tp in partitions if tp.topic == self.input_topic]
        consumer.incremental_assign(partitions)
        if partitions:
            self._read_committed_metadata(partitions)
        if self.paused and partitions:
            consumer.pause(partitions)
        self.assigned |= {(tp.topic, tp.partition) for tp in partitions}
        self._changed()
        log.info("partitions assigned", extra=fields(added=_names(partitions), assigned=sorted(self.assigned)))

    def _read_committed_metadata(self, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        try:
            found = self.consumer.committed(partitions, timeout=COMMITTED_TIMEOUT_S)
        except KafkaException as error:
            log.warning("committed offsets not readable; these partitions' scored counts start again from zero "
                        "when next assigned", extra=fields(error=error, partitions=_names(partitions)))  # fmt: skip
            self.assigned_metadata({}, keys)
            return
        committed = {(tp.topic, tp.partition): tp.metadata for tp in found if tp.error is None}
        self.assigned_metadata(committed, keys - committed.keys())

    def on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        if consumer is not self.consumer:
            return
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self.revoked(revoked)  # while still owned: what was produced from them is committed
        self.assigned -= revoked
        self._changed()
        consumer.incremental_unassign(partitions)
        log.info("partitions revoked", extra=fields(removed=_names(partitions), assigned=sorted(self.assigned)))

    def on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        if consumer is not self.consumer:
            return
        self.metrics.rebalances.inc()
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self.assigned -= lost
        self._changed()
        self.lost(lost)  # no longer owned: nothing of theirs is committed, partitions still ours are read again
        consumer.incremental_unassign(partitions)
        log.warning("partitions lost", extra=fields(lost=_names(partitions)))

    def replace_consumer(self, consumer: Any) -> None:
        """Follow the group with ``consumer`` from now on; the partitions of the old one are lost (nothing of
        theirs is committed; the new member is handed them again and reads them from the last commit)."""
        lost, self.assigned = self.assigned, set()
        self._changed()
        self.lost(lost)
        self.consumer = consumer
        self.subscribe()

    def _changed(self) -> None:
        self.state.assigned_partitions = len(self.assigned)
        self.metrics.assigned_partitions.set(len(self.assigned))
        self.report_ready()

    def report_ready(self) -> None:
        """The ready gauge: partitions assigned and the model loaded."""
        self.metrics.ready.set(1 if self.assigned and self.state.model_loaded else 0)

    def seek(self, offsets: dict[TopicPartitionKey, int]) -> None:
        """Consume from these offsets next (partitions no longer assigned are left to their new owner)."""
        for (topic, partition), offset in offsets.items():
            if (topic, partition) in self.assigned:
                self.consumer.seek(TopicPartition(topic, partition, offset))

    def pause_all(self) -> None:
        self.paused = True
        if self.assigned:
            self.consumer.pause([TopicPartition(t, p) for t, p in self.assigned])

    def resume_all(self) -> None:
        self.paused = False
        if self.assigned:
            self.consumer.resume([TopicPartition(t, p) for t, p in self.assigned])

    def lag(self) -> dict[TopicPartitionKey, int]:
        if not self.assigned:
            return {}
        partitions = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
        positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(partitions)}
        highs = {}
        for tp in partitions:
            # cached=True: the high watermark from the last fetch response, no broker round trip.
            _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                highs[(tp.topic, tp.partition)] = high
        return partition_lag(positions, highs)


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{tp.topic}:{tp.partition}" for tp in partitions]
