"""Exactly-once output: Kafka transactions that hold outputs, dead letters and the input offsets they consume.

One transaction spans consecutive batches, as Kafka Streams' ``commit.interval.ms`` does: every transaction
costs several blocking round trips to the transaction coordinator (add partitions, add and commit offsets, end
the transaction, write the markers), which at one transaction per batch of 256 records took most of the loop's
time. A transaction is committed when it holds ``TRANSACTION_MAX_BATCHES`` full batches' worth of records, when
it has been open ``TRANSACTION_MAX_S``, when the loop is about to wait for input (so a slow input is not held
back), before partitions are revoked, before a batch is held for an unavailable predictor, and on shutdown.
Outputs become visible to ``read_committed`` readers at the commit, so that is the latency exactly-once adds.

An abortable error aborts the whole transaction and seeks every still-assigned partition back to the first
record the transaction consumed; a fatal one (fenced by a newer instance of this member) ends the process, and
the restart recovers from the last committed transaction.

A record Kafka refuses (docs/runtime.md, "Delivery failures"; :mod:`kinfer_runtime.pipeline.delivery_failures`):
refused by ``produce()`` at once (larger than ``message.max.bytes``), it never entered the transaction, and its
smaller form (the input's dead letter for an output, a truncated dead letter) is produced in the same transaction.
Refused by the broker (a topic's ``max.message.bytes``), it fails the transaction: the transaction is aborted, the
smaller form is remembered by the input's offset, and the inputs read again produce it instead. A topic that
refuses everything (deleted, not authorized), or a record with no smaller form left, aborts the transaction and
holds the input paused for a backoff (1 s doubling to 30 s) before the transaction is tried again; ``/readyz``
says why until a transaction commits. Nothing is committed past the record, and nothing is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kinfer_runtime.observability.health import LoopState
from kinfer_runtime.observability.logs import fields
from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.pipeline.assemble import AssembledBatch
from kinfer_runtime.pipeline.commits import InFlightBatch, TopicPartitionKey, first_offsets, merge_offsets
from kinfer_runtime.pipeline.delivery_failures import (
    PROBE_MAX_S,
    PROBE_MIN_S,
    DeliveryFailures,
    Kind,
    classify,
    record_size,
)
from kinfer_runtime.pipeline.outgoing import Outgoing
from kinfer_runtime.pipeline.sending import produce_records
from kinfer_runtime.pipeline.tally import Tally
from kinfer_runtime.records.scored_counts import ScoredCounts, add_counts

log = logging.getLogger("kinfer.transactions")

TRANSACTION_MAX_BATCHES = 16
TRANSACTION_MAX_S = 0.1
COMMIT_ATTEMPTS = 10
RETRY_BACKOFF_MIN_S, RETRY_BACKOFF_MAX_S = 0.2, 5.0
InputKey = tuple[str, int, int]  # an input record: topic, partition, offset


def input_key(message: Any) -> InputKey:
    return message.topic(), message.partition(), message.offset()


class Undeliverable(Exception):
    """A record of the open transaction cannot be delivered: abort it and hold the input for a while."""

    def __init__(self, topic: str, error: Any) -> None:
        super().__init__(topic, error)
        self.topic, self.error = topic, error


@dataclass
class OpenTransaction:
    """What one open transaction holds (pure bookkeeping)."""

    started: float
    first_offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)  # where a rewind goes back to
    batches: list[InFlightBatch] = field(default_factory=list)
    records: int = 0

    @property
    def next_offsets(self) -> dict[TopicPartitionKey, int]:
        """What the commit sends: per partition, the offset after the last input of its batches."""
        return merge_offsets(self.batches)

    def add(self, first_offsets: dict[TopicPartitionKey, int], batch: InFlightBatch) -> None:
        for key, offset in first_offsets.items():
            self.first_offsets.setdefault(key, offset)  # batches come in consume order: the first one wins
        self.batches.append(batch)
        self.records += len(batch.records)

    def due(self, now: float, max_records: int) -> bool:
        return self.records >= max_records or now - self.started >= TRANSACTION_MAX_S


class ExactlyOnce:
    """The loop's output side for ``delivery: exactlyOnce``: at most one transaction open at a time.

    ``seek(offsets)`` makes the consumer read from those offsets again (partitions still assigned only)."""

    def __init__(
        self,
        consumer: Any,
        producer: Any,
        tally: Tally,
        metrics: RuntimeMetrics,
        seek: Callable[[dict[TopicPartitionKey, int]], None],
        heartbeat: Callable[[], None],
        stop: threading.Event,
        max_batch: int,
        failures: DeliveryFailures | None = None,
        scored: ScoredCounts | None = None,
    ) -> None:
        self.consumer, self.producer = consumer, producer
        self.tally, self.metrics = tally, metrics
        self.seek, self.heartbeat, self.stop = seek, heartbeat, stop
        # Records scored per version as of the committed transactions: each commit carries them as its metadata.
        self.scored = scored or ScoredCounts(tuple)
        self.open: OpenTransaction | None = None
        self.max_records = TRANSACTION_MAX_BATCHES * max_batch
        self.failures = failures or DeliveryFailures(None, metrics, LoopState())
        # Smaller forms of records the broker refused in an aborted transaction, by input: used when read again.
        self.replacements: dict[InputKey, Outgoing] = {}
        self.hold_until = 0.0  # the input stays paused until then after a transaction failed to deliver
        self.hold_backoff = PROBE_MIN_S
        self.held_topic: str | None = None  # reported on /readyz until a transaction commits
        self.aborts_in_a_row = 0
        self.clock: Callable[[], float] = time.monotonic

    def start(self) -> None:
        self.producer.init_transactions(90)  # also aborts what a killed predecessor left open

    def submit(self, messages: list[Any], assembled: AssembledBatch) -> None:
        """Add one batch's records (and the offsets after its inputs) to the open transaction, opening one if
        needed; commit it when it is due."""
        if self.held():  # read after the hold began (the abort rewound its inputs): read it again later
            self.seek(first_offsets(messages))
            return
        records = assembled.records
        batch = InFlightBatch(0, assembled.next_offsets, records, assembled.output_timestamps_s, len(records),
                              source=assembled.input_of, scored=assembled.scored)  # fmt: skip
        if self.replacements:
            self._use_replacements(batch)
        opening = self.open is None
        if self.open is None:
            self.open = OpenTransaction(time.monotonic())
        self.open.add(first_offsets(messages), batch)  # before producing: an abort rewinds this batch too
        try:
            if opening:
                self.producer.begin_transaction()
            refused = produce_records(self.producer, batch, range(len(batch.records)), self.heartbeat, self.stop)
            while refused:
                refused = self._produce_smaller(batch, refused)
        except KafkaException as exception:
            self._abort_on(exception)
            return
        except Undeliverable as undeliverable:
            log.warning("transaction aborted: a record cannot be delivered",
                        extra=fields(topic=undeliverable.topic, error=str(undeliverable.error)))  # fmt: skip
            self.abort()
            self._hold(undeliverable.topic, undeliverable.error)
            return
        except BaseException:
            # Stopped with the batch half produced (the local queue stayed full): committing would commit its
            # offsets without all its outputs. Left open, the successor's init_transactions aborts it.
            self.open = None
            raise
        self.commit_if_due()

    def records_in_flight(self) -> int:
        """Nothing waits for acknowledgement outside a transaction: its commit is the acknowledgement."""
        return 0

    def held(self) -> bool:
        """True while the input waits after a transaction that could not deliver a record."""
        return self.hold_until > 0 and self.clock() < self.hold_until

    def serve(self, timeout: float = 0.0) -> None:
        self.producer.poll(timeout)
        self.commit_if_due()

    def input_idle(self) -> None:
        self.commit()  # do not hold finished batches back while nothing arrives

    def before_hold(self) -> None:
        self.commit()  # the batches before a held one; the held one goes in a later transaction

    def revoke(self, partitions: set[TopicPartitionKey]) -> None:
        self.commit()  # what was produced from these partitions, with their offsets
        self.scored.forget(partitions)

    def lose(self, partitions: set[TopicPartitionKey]) -> None:
        self.abort()  # its commit would be fenced; partitions still ours are read again
        self.scored.forget(partitions)

    def close(self, _grace_s: float) -> None:
        try:
            self.commit()
        except KafkaException as error:  # fatal (fenced): the successor reads from the last commit
            log.warning("final transaction not committed", extra=fields(error=error))

    def commit_if_due(self) -> None:
        if self.open is not None and self.open.due(time.monotonic(), self.max_records):
            self.commit()

    def commit(self) -> None:
        """Commit the open transaction, if any (the inputs' offsets with it)."""
        if self.open is None:
            return
        transaction = self.open
        started = time.perf_counter()
        scored: dict[TopicPartitionKey, dict[int, int]] = {}
        for batch in transaction.batches:
            add_counts(scored, batch.scored)
        try:
            offsets = [
                TopicPartition(t, p, o, self.scored.metadata((t, p), scored.get((t, p))))
                for (t, p), o in transaction.next_offsets.items()
            ]
            self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            self._commit_transaction()
        except KafkaException as exception:
            self._abort_on(exception)
            return
        self.open = None
        self.scored.add(scored)
        self.metrics.stage["commit"].observe(time.perf_counter() - started)
        self.producer.poll(0)
        self.tally.completed(transaction.batches)
        self.aborts_in_a_row, self.hold_until, self.hold_backoff = 0, 0.0, PROBE_MIN_S
        if self.held_topic is not None:
            self.failures.release(self.held_topic)
            self.held_topic = None
        if self.replacements:
            done = transaction.next_offsets
            self.replacements = {k: r for k, r in self.replacements.items() if k[2] >= done.get((k[0], k[1]), -1)}

    def abort(self) -> None:
        """Abort the open transaction, if any, and read its inputs again (partitions still assigned only)."""
        if self.open is None:
            return
        transaction, self.open = self.open, None
        try:
            self.producer.abort_transaction(60)
        except KafkaException as error:
            log.warning("abort failed", extra=fields(error=error))
        self.tally.counters.transactions_aborted += 1
        self.seek(transaction.first_offsets)

    def _abort_on(self, exception: KafkaException) -> None:
        error: KafkaError = exception.args[0]
        if not error.txn_requires_abort():
            raise exception  # fatal (e.g. fenced by a newer instance of this member): exit, the restart recovers
        log.warning("transaction aborted; rewinding its batches", extra=fields(error=error))
        undelivered = self._failed_deliveries()
        if self.open is not None and classify(error if undelivered is None else undelivered[1]) in (
            Kind.UNREACHABLE,
            Kind.TRANSIENT,
        ):
            # A topic refused in AddPartitionsToTxn (deleted, not authorized) fails the transaction with no report
            # naming it, or makes the records of the other partitions time out: name the topic the cluster lacks.
            missing = self._missing_topics(self.open)
            if missing:
                text = f"not in the cluster's metadata; the transaction failed with {error.name()}"
                undelivered = (missing, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, text))
                self.failures.count(missing, undelivered[1])
            elif undelivered is None and classify(error) is Kind.UNREACHABLE:
                topics = ", ".join(sorted({r.topic for batch in self.open.batches for r in batch.records}))
                undelivered = (topics, error)
                self.failures.count(topics, error)
        self.abort()
        self.aborts_in_a_row += 1
        if undelivered is not None:
            self._hold(*undelivered)
        elif self.aborts_in_a_row > 1:
            self._hold(None, error)  # aborted again with nothing to show why: do not rewind in a tight loop

    def _failed_deliveries(self) -> tuple[str, Any] | None:
        """After a failed commit: the records of the open transaction whose delivery failed. A refused one gets a
        smaller form, remembered by its input (the aborted transaction's inputs are read again); for any other,
        its topic and error are returned (the input is held)."""
        if self.open is None:
            return None
        self.producer.poll(0)  # the failed records' delivery reports
        undelivered = None
        largest: dict[str, tuple[int, InFlightBatch, int, Any]] = {}  # per topic, of the records refused as too large
        for batch in self.open.batches:
            for index in batch.take_failed():
                error, record = batch.error_of(index), batch.records[index]
                kind = classify(error)
                if kind in (Kind.FATAL, Kind.PURGED):
                    continue  # the commit's own error says what happens
                self.failures.count(record.topic, error)
                if kind is Kind.REFUSED:
                    # The broker refuses a whole produce request: only the largest record of it is to blame.
                    size = record_size(record)
                    if record.topic not in largest or size > largest[record.topic][0]:
                        largest[record.topic] = (size, batch, index, error)
                elif undelivered is None:
                    undelivered = (record.topic, error)
        for _, batch, index, error in largest.values():
            message = batch.input_of(index)
            replacement = self.failures.smaller(batch, index, error)
            if replacement is not None and message is not None:
                self.replacements[input_key(message)] = replacement
            elif undelivered is None:
                undelivered = (batch.records[index].topic, error)
        return undelivered

    def _missing_topics(self, transaction: OpenTransaction) -> str:
        """The topics of the transaction's records that the cluster does not list (deleted, or not described to
        us), comma-separated ("" when it lists them all, or cannot be asked)."""
        topics = sorted({record.topic for batch in transaction.batches for record in batch.records})
        try:
            listed = self.producer.list_topics(timeout=5).topics
        except KafkaException:
            return ""
        return ", ".join(t for t in topics if t not in listed or listed[t].error is not None)

    def _use_replacements(self, batch: InFlightBatch) -> None:
        """Produce the smaller forms of records the broker refused before, for inputs read again."""
        for index in range(len(batch.records)):
            message = batch.input_of(index)
            if message is not None:
                replacement = self.replacements.get(input_key(message))
                if replacement is not None:
                    batch.records[index] = replacement

    def _produce_smaller(self, batch: InFlightBatch, refused: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        """Records produce() refused at once (so they are not in the transaction): produce their smaller forms, and
        return what produce() refuses of those. Undeliverable when a record has none or its topic is unreachable."""
        again: list[tuple[int, Any]] = []
        for index, error in refused:
            record, kind = batch.records[index], classify(error)
            if kind is Kind.FATAL:
                raise KafkaException(error)
            if error.code() == KafkaError._STATE:  # the transaction is in an abortable error state already
                raise KafkaException(KafkaError(KafkaError._STATE, error.str(), txn_requires_abort=True))
            self.failures.count(record.topic, error)
            replacement = self.failures.smaller(batch, index, error) if kind is Kind.REFUSED else None
            if replacement is None:
                raise Undeliverable(record.topic, error)
            batch.records[index] = replacement
            message = batch.input_of(index)
            if message is not None:  # an abort reads the input again: produce the smaller form straight away
                self.replacements[input_key(message)] = replacement
            again += produce_records(self.producer, batch, [index], self.heartbeat, self.stop)
        return again

    def _hold(self, topic: str | None, error: Any) -> None:
        """Keep the input paused for the backoff (doubling up to PROBE_MAX_S until a transaction commits)."""
        self.hold_until = self.clock() + self.hold_backoff
        log.warning("holding the input before trying the transaction again",
                    extra=fields(topic=topic, error=error, seconds=self.hold_backoff))  # fmt: skip
        self.hold_backoff = min(PROBE_MAX_S, self.hold_backoff * 2)
        if topic is not None:
            if self.held_topic is not None and self.held_topic != topic:
                self.failures.release(self.held_topic)
            self.held_topic = topic
            self.failures.hold(topic, error)

    def _commit_transaction(self) -> None:
        """commit_transaction, retried while the error is retriable (a timeout leaves the outcome unknown
        until a retry succeeds or turns into an abortable error)."""
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                self.producer.commit_transaction(60)
                return
            except KafkaException as exception:
                error: KafkaError = exception.args[0]
                if not error.retriable() or attempt == COMMIT_ATTEMPTS - 1 or self.stop.is_set():
                    raise
                log.warning("commit_transaction retry", extra=fields(error=error))
                self.heartbeat()  # waiting on the coordinator is not being stuck
                time.sleep(min(RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_MIN_S * 2**attempt))
