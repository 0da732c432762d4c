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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kinfer_runtime.observability.logs import fields
from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.pipeline.assemble import AssembledBatch
from kinfer_runtime.pipeline.commits import InFlightBatch, TopicPartitionKey, first_offsets, merge_offsets
from kinfer_runtime.pipeline.sending import produce_records
from kinfer_runtime.pipeline.tally import Tally

log = logging.getLogger("kinfer.transactions")

TRANSACTION_MAX_BATCHES = 4
TRANSACTION_MAX_S = 0.1
COMMIT_ATTEMPTS = 10
RETRY_BACKOFF_MIN_S, RETRY_BACKOFF_MAX_S = 0.2, 5.0


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
    ) -> None:
        self.consumer, self.producer = consumer, producer
        self.tally, self.metrics = tally, metrics
        self.seek, self.heartbeat, self.stop = seek, heartbeat, stop
        self.open: OpenTransaction | None = None
        self.max_records = TRANSACTION_MAX_BATCHES * max_batch

    def start(self) -> None:
        self.producer.init_transactions(90)  # also aborts what a killed predecessor left open

    def submit(self, messages: list[Any], assembled: AssembledBatch) -> None:
        """Add one batch's records (and the offsets after its inputs) to the open transaction, opening one if
        needed; commit it when it is due."""
        records = assembled.records
        batch = InFlightBatch(0, assembled.next_offsets, records, assembled.output_timestamps_s, pending=len(records))
        opening = self.open is None
        if self.open is None:
            self.open = OpenTransaction(time.monotonic())
        self.open.add(first_offsets(messages), batch)  # before producing: an abort rewinds this batch too
        try:
            if opening:
                self.producer.begin_transaction()
            produce_records(self.producer, batch, range(len(batch.records)), self.heartbeat, self.stop)
        except KafkaException as exception:
            self._abort_on(exception)
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

    def serve(self, timeout: float = 0.0) -> None:
        self.producer.poll(timeout)
        self.commit_if_due()

    def input_idle(self) -> None:
        self.commit()  # do not hold finished batches back while nothing arrives

    def before_hold(self) -> None:
        self.commit()  # the batches before a held one; the held one goes in a later transaction

    def revoke(self, _partitions: set[TopicPartitionKey]) -> None:
        self.commit()  # what was produced from these partitions, with their offsets

    def lose(self, _partitions: set[TopicPartitionKey]) -> None:
        self.abort()  # its commit would be fenced; partitions still ours are read again

    def close(self, _grace_s: float) -> None:
        try:
            self.commit()
        except KafkaException as error:  # fatal (fenced): the successor reads from the last commit
            log.warning("final transaction not committed", extra=fields(error=str(error)))

    def commit_if_due(self) -> None:
        if self.open is not None and self.open.due(time.monotonic(), self.max_records):
            self.commit()

    def commit(self) -> None:
        """Commit the open transaction, if any (the inputs' offsets with it)."""
        if self.open is None:
            return
        transaction = self.open
        started = time.perf_counter()
        try:
            offsets = [TopicPartition(t, p, o) for (t, p), o in transaction.next_offsets.items()]
            self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            self._commit_transaction()
        except KafkaException as exception:
            self._abort_on(exception)
            return
        self.open = None
        self.metrics.stage["commit"].observe(time.perf_counter() - started)
        self.producer.poll(0)
        self.tally.completed(transaction.batches)

    def abort(self) -> None:
        """Abort the open transaction, if any, and read its inputs again (partitions still assigned only)."""
        if self.open is None:
            return
        transaction, self.open = self.open, None
        try:
            self.producer.abort_transaction(60)
        except KafkaException as error:
            log.warning("abort failed", extra=fields(error=str(error)))
        self.tally.counters.transactions_aborted += 1
        self.seek(transaction.first_offsets)

    def _abort_on(self, exception: KafkaException) -> None:
        error: KafkaError = exception.args[0]
        if not error.txn_requires_abort():
            raise exception  # fatal (e.g. fenced by a newer instance of this member): exit, the restart recovers
        log.warning("transaction aborted; rewinding its batches", extra=fields(error=str(error)))
        self.abort()

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
                log.warning("commit_transaction retry", extra=fields(error=str(error)))
                time.sleep(min(RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_MIN_S * 2**attempt))
