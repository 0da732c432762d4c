"""At-least-once delivery: produce without waiting, commit an input offset only once its outputs are acknowledged.

Batches are produced as soon as they are assembled, and a few stay in flight so that Kafka round trips overlap
the next batches' compute. An input offset is committed only once every output and dead-letter record of its
batch and of every earlier batch is acknowledged (:mod:`kinfer_runtime.pipeline.commits`); commits are
asynchronous and paced. A failed delivery is produced again (after a backoff, a smaller form of a refused record,
or held while its topic refuses everything: :mod:`kinfer_runtime.pipeline.delivery_failures`) and its batch stays
uncommittable until it succeeds. A kill therefore duplicates at most the in-flight batches and loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from kinfer_runtime.observability.health import LoopState
from kinfer_runtime.observability.logs import fields
from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.pipeline.assemble import AssembledBatch
from kinfer_runtime.pipeline.commits import BatchTracker, CommitPacer, TopicPartitionKey, merge_offsets
from kinfer_runtime.pipeline.delivery_failures import DeliveryFailures, Redelivery
from kinfer_runtime.pipeline.sending import produce_records
from kinfer_runtime.pipeline.tally import Tally
from kinfer_runtime.records.scored_counts import ScoredCounts

log = logging.getLogger("kinfer.loop")

IDLE_RECOMMIT_S = 5.0  # while idle, the acknowledged offsets are committed again this often (see input_idle)
COMMIT_INTERVAL_S = 0.1  # longest an acknowledged offset waits for its asynchronous commit (see CommitPacer)
REVOKE_DRAIN_S = 30.0


class AtLeastOnce:
    """The loop's output side for ``delivery: atLeastOnce``.

    ``owned()`` gives the partitions assigned right now: only their offsets are ever committed."""

    def __init__(
        self,
        consumer: Any,
        producer: Any,
        tally: Tally,
        metrics: RuntimeMetrics,
        owned: Callable[[], set[TopicPartitionKey]],
        heartbeat: Callable[[], None],
        stop: threading.Event,
        max_batch: int,
        failures: DeliveryFailures | None = None,
        scored: ScoredCounts | None = None,
    ) -> None:
        self.consumer, self.producer = consumer, producer
        self.tally, self.metrics = tally, metrics
        self.owned, self.heartbeat, self.stop = owned, heartbeat, stop
        self.tracker = BatchTracker()
        # Records scored per version as of the acknowledged offsets: each commit carries them as its metadata.
        self.scored = scored or ScoredCounts(tuple)
        failures = failures or DeliveryFailures(None, metrics, LoopState())
        self.redelivery = Redelivery(failures, tally.counters, heartbeat, stop)
        # Offsets whose batches (and all before them) are acknowledged: what a synchronous commit may commit.
        self.acknowledged: dict[TopicPartitionKey, int] = {}
        self.pacer = CommitPacer(max_batch, COMMIT_INTERVAL_S)
        self.idle_commit_at = 0.0

    def start(self) -> None:
        """Nothing to set up: an at-least-once producer needs no initialisation."""

    def submit(self, _messages: list[Any], assembled: AssembledBatch) -> None:
        batch = self.tracker.add(
            assembled.next_offsets,
            assembled.records,
            assembled.output_timestamps_s,
            assembled.input_of,
            assembled.scored,
        )
        refused = produce_records(self.producer, batch, range(len(batch.records)), self.heartbeat, self.stop)
        for index, error in refused:  # e.g. larger than message.max.bytes: no report will come for it
            batch.pending -= 1
            self.redelivery.failed(batch, index, error, at_once=True)

    def records_in_flight(self) -> int:
        return self.tracker.records_in_flight()

    def held(self) -> bool:
        """True while records wait for a topic that refuses them (the loop pauses the input meanwhile)."""
        return bool(self.redelivery.held)

    def serve(self, timeout: float = 0.0) -> None:
        """Serve delivery reports: decide about failed records and produce them again when due, account completed
        batches, commit when due."""
        self.producer.poll(timeout)
        for batch in self.tracker.with_failures():
            if batch.fatal_error is not None:
                # The idempotent producer is unusable; exiting without committing is the safe restart.
                raise KafkaException(batch.fatal_error)
            for index in batch.take_failed():
                self.redelivery.failed(batch, index, batch.error_of(index))
        self.redelivery.serve(self.producer)
        completed = self.tracker.pop_completed()
        now = time.monotonic()
        if completed:
            self.tally.completed(completed)
            for batch in completed:
                self.scored.add(batch.scored)
            offsets = merge_offsets(completed)
            self.acknowledged.update(offsets)
            self.pacer.acknowledged(offsets, sum(len(batch.records) for batch in completed), now)
        due = self.pacer.take_due(now)
        if due:
            self._commit(due, asynchronous=True)

    def input_idle(self) -> None:
        """While the input is idle, commit the acknowledged offsets again every IDLE_RECOMMIT_S (as Kafka's
        auto-commit does). An asynchronous commit can fail without a word: the broker answers
        REBALANCE_IN_PROGRESS to every commit while the group waits for a member, e.g. a static member whose pod
        was scaled in. A partition drained meanwhile would keep its stale committed offset for good: lag that
        never reaches zero (no scale to zero, a partition reported stuck) and a redelivery after a restart."""
        now = time.monotonic()
        if self.acknowledged and now - self.idle_commit_at >= IDLE_RECOMMIT_S:
            self.idle_commit_at = now
            self._commit(dict(self.acknowledged), asynchronous=True)

    def before_hold(self) -> None:
        """A batch held for an unavailable predictor needs nothing from this side."""

    def revoke(self, partitions: set[TopicPartitionKey]) -> None:
        """Partitions about to go: wait for what was produced from them and commit what is acknowledged, so that
        the next owner starts right after the last acknowledged output."""
        self.drain(REVOKE_DRAIN_S)
        self.commit_acknowledged(partitions, asynchronous=False)
        self._forget(partitions)

    def lose(self, partitions: set[TopicPartitionKey]) -> None:
        """Partitions already gone (the group moved on): nothing of theirs is committed, another member owns them."""
        self._forget(partitions)

    def close(self, grace_s: float) -> None:
        self.drain(grace_s)
        self.commit_acknowledged(None, asynchronous=False)

    def drain(self, deadline_s: float) -> bool:
        """Wait until every in-flight batch is acknowledged (and accounted), or until the deadline, or until only
        held records are left (their topic refuses them: waiting longer is no use). False unless all were."""
        end = time.monotonic() + deadline_s
        while len(self.tracker):
            self.serve(0.05)
            self.heartbeat()
            pending = self.tracker.pending_records()
            if time.monotonic() > end or (self.redelivery.held and pending <= self.redelivery.held_records()):
                log.error("in-flight records not acknowledged; committing only what was before them",
                          extra=fields(pending=pending, held=self.redelivery.held_records()))  # fmt: skip
                return False
        return True

    def commit_acknowledged(self, partitions: set[TopicPartitionKey] | None, asynchronous: bool) -> None:
        """Commit everything acknowledged so far (for ``partitions`` only, when given)."""
        offsets = {k: o for k, o in self.acknowledged.items() if partitions is None or k in partitions}
        self._commit(offsets, asynchronous)

    def _forget(self, partitions: set[TopicPartitionKey]) -> None:
        self.tracker.forget_partitions(partitions)
        self.pacer.forget_partitions(partitions)
        self.scored.forget(partitions)
        for key in partitions:
            self.acknowledged.pop(key, None)

    def _commit(self, offsets: dict[TopicPartitionKey, int], asynchronous: bool) -> None:
        owned = self.owned()
        scored = self.scored.metadata
        partitions = [TopicPartition(t, p, o, scored((t, p))) for (t, p), o in offsets.items() if (t, p) in owned]
        if not partitions:
            return
        started = time.perf_counter()
        try:
            self.consumer.commit(offsets=partitions, asynchronous=asynchronous)
        except KafkaException as error:
            # Not fatal: a later commit carries higher offsets; the worst case is redelivery after a restart.
            log.warning("commit failed", extra=fields(error=error))
        self.metrics.stage["commit"].observe(time.perf_counter() - started)
