"""Partition assignment for the loop: cooperative (incremental) rebalance callbacks, pausing, and lag.

The callbacks run inside ``consumer.consume`` on the loop's thread. On revoke, everything already produced is
acknowledged and committed before the partitions go (so the next owner starts exactly after our last output);
on lost (the group moved on without us) nothing of those partitions is committed, since another member may
already own them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition

from kinfer_runtime.observability.logs import fields

if TYPE_CHECKING:
    from kinfer_runtime.pipeline.loop import PipelineLoop

log = logging.getLogger("kinfer.rebalance")
REVOKE_DRAIN_S = 30.0


def partition_lag(
    positions: dict[tuple[str, int], int], high_watermarks: dict[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """Lag per partition: high watermark minus the next offset to read (a partition with no position yet
    counts its whole high watermark, clamped at zero)."""
    lag = {}
    for key, high in high_watermarks.items():
        position = positions.get(key, OFFSET_INVALID)
        lag[key] = max(0, high - position) if position >= 0 else max(0, high)
    return lag


class Rebalancer:
    def __init__(self, loop: PipelineLoop):
        self.loop = loop
        self.assigned: set[tuple[str, int]] = set()
        self.paused = False

    @property
    def consumer(self) -> Consumer:
        return self.loop.consumer

    def _changed(self) -> None:
        loop = self.loop
        loop.state.assigned_partitions = len(self.assigned)
        loop.metrics.assigned_partitions.set(len(self.assigned))
        loop.metrics.ready.set(1 if self.assigned and loop.state.model_loaded else 0)

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.loop.metrics.rebalances.inc()
        foreign = [tp for tp in partitions if tp.topic != self.loop.input_topic]
        if foreign:
            # A static group leader that rejoins gets its previous assignment back without a new one being
            # computed, even if the group's subscription changed meanwhile (e.g. the pipeline's input topic was
            # edited but the pod name stayed). Those partitions are not ours to read or commit.
            log.error("assigned partitions of another topic; ignoring them (use a new consumer.group after "
                      "changing the input topic)", extra=fields(foreign=_names(foreign)))  # fmt: skip
            partitions = [tp for tp in partitions if tp.topic == self.loop.input_topic]
        consumer.incremental_assign(partitions)
        if self.paused and partitions:
            consumer.pause(partitions)
        self.assigned |= {(tp.topic, tp.partition) for tp in partitions}
        self._changed()
        log.info("partitions assigned", extra=fields(added=_names(partitions), assigned=sorted(self.assigned)))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        loop = self.loop
        if loop.exactly_once:
            loop.transactions.commit()  # what was produced from these partitions, with their offsets
        elif loop.drain(REVOKE_DRAIN_S):
            loop.commit_acknowledged(revoked, asynchronous=False)
        self._forget(revoked)
        consumer.incremental_unassign(partitions)
        log.info("partitions revoked", extra=fields(removed=_names(partitions), assigned=sorted(self.assigned)))

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.loop.metrics.rebalances.inc()
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self._forget(lost)
        if self.loop.exactly_once:
            self.loop.transactions.abort()  # its commit would be fenced; partitions still ours are read again
        consumer.incremental_unassign(partitions)
        log.warning("partitions lost", extra=fields(lost=_names(partitions)))

    def _forget(self, partitions: set[tuple[str, int]]) -> None:
        self.loop.forget_partitions(partitions)
        self.assigned -= partitions
        self._changed()

    def pause_all(self) -> None:
        self.paused = True
        if self.assigned:
            self.consumer.pause([TopicPartition(t, p) for t, p in self.assigned])

    def resume_all(self) -> None:
        self.paused = False
        if self.assigned:
            self.consumer.resume([TopicPartition(t, p) for t, p in self.assigned])

    def lag(self) -> dict[tuple[str, int], int]:
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
