"""The runtime loop: consume a batch → preprocess → one predict call → produce outputs and dead letters → commit.

Delivery discipline:

- **At-least-once** (default): batches are produced without waiting (a few stay in flight so Kafka I/O overlaps
  the next batch's compute); an input offset is committed only once every output and dead-letter record of its
  batch and of all earlier batches is acknowledged (:mod:`kinfer_runtime.pipeline.commits`). A failed delivery is
  produced again; its batch stays uncommittable until it succeeds. A kill therefore duplicates at most the in-flight
  batches, and loses nothing.
- **Exactly-once**: a transaction holds the outputs, dead letters and input offsets of consecutive batches
  (:mod:`kinfer_runtime.pipeline.exactly_once`); an abortable error aborts it and rewinds the consumer to its start.

A ``PredictorUnavailable`` (model server down) holds the batch, pauses every assigned partition and keeps calling
``consume`` (which serves the group protocol, so the member is not kicked out) while it retries with jittered
backoff. SIGTERM (``stop`` set) ends the loop after the batch in hand; then everything in flight is flushed and
committed and the consumer closes (a static member keeps its assignment for its successor).
"""

from __future__ import annotations

import gc
import logging
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from kinfer_runtime.kafka.client_events import ClientEvents
from kinfer_runtime.observability.logs import fields
from kinfer_runtime.pipeline.assemble import assemble_batch
from kinfer_runtime.pipeline.assignment import Rebalancer
from kinfer_runtime.pipeline.batching import BatchWindow
from kinfer_runtime.pipeline.commits import BatchTracker, CommitPacer, InFlightBatch, first_offsets, merge_offsets
from kinfer_runtime.pipeline.exactly_once import Transactions
from kinfer_runtime.pipeline.parts import LoopCounters, LoopParts
from kinfer_runtime.predictors import PredictionFailed, PredictorUnavailable
from kinfer_runtime.records.dead_letter import PREDICTION_FAILED, Failure
from kinfer_runtime.records.output import BatchContext
from kinfer_runtime.spec import Delivery

log = logging.getLogger("kinfer.loop")

# Full batches' worth of records produced and not yet acknowledged: overlaps Kafka round trips with the next
# batches, and bounds what a kill can duplicate. Counted in records, so that many small batches (a lightly loaded
# loop closes them early) do not stall on round trips that full ones would not.
MAX_IN_FLIGHT_BATCHES = 4
LAG_INTERVAL_S = 2.0
RELOAD_INTERVAL_S = 1.0  # the predictor throttles its own directory scans
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 5.0
CONSUME_SLICE_S = 0.005
COMMIT_INTERVAL_S = 0.1  # longest an acknowledged offset waits for its asynchronous commit (see CommitPacer)


def settle_garbage_collector() -> None:
    """Put every object alive now (TensorFlow, the loaded model, imported modules: about 280,000 objects) out of
    the cyclic garbage collector's reach. A full collection over them took 143-165 ms on the test machine, a stall
    of the whole loop that came back every few seconds under load and made the p99 of end-to-end latency; they
    live as long as the process or the model version anyway. Called once the model is loaded, and after each
    reload (unfreezing first, so that the previous version's cycles can be collected: one such pause per reload)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class PipelineStopped(Exception):
    """The loop was asked to stop while waiting (the batch in hand is not committed)."""


class PipelineLoop:
    def __init__(self, parts: LoopParts, stop: threading.Event):
        self.parts = parts
        self.stop = stop
        spec = parts.pipeline.spec
        self.name = parts.pipeline.metadata.name
        self.input_topic = spec.topics.input.name
        self.output_topic = spec.topics.output.name
        self.dead_letter_topic = spec.topics.dead_letter.name
        self.max_batch = spec.consumer.max_batch_size
        self.batch_wait_s = spec.consumer.max_batch_wait_ms / 1000.0
        self.window = BatchWindow(self.max_batch, self.batch_wait_s, time.monotonic())
        self.exactly_once = Delivery(spec.consumer.delivery) is Delivery.EXACTLY_ONCE
        self.metrics = parts.metrics
        self.state = parts.state
        self.counters = LoopCounters()
        self.tracker = BatchTracker()
        problem = parts.state.kafka_problem
        self.consumer = Consumer({**parts.consumer_config, **ClientEvents("consumer", problem).settings()})
        self.producer = Producer({**parts.producer_config, **ClientEvents("producer", problem).settings()})
        self.rebalancer = Rebalancer(self)
        self.transactions = Transactions(self)  # used in exactlyOnce delivery only
        self.metadata = parts.predictor.metadata
        self.preprocessor = parts.make_preprocessor(self.metadata)
        self.held: list[Message] | None = None  # a batch waiting for the predictor to come back
        self.held_encoded: Any = None
        self._backoff = BACKOFF_MIN_S
        # Offsets whose batches (and all before them) are acknowledged: what a synchronous commit may commit.
        self.acknowledged: dict[tuple[str, int], int] = {}
        self.commit_pacer = CommitPacer(self.max_batch, COMMIT_INTERVAL_S)
        self._next_lag = 0.0
        self._next_reload = time.monotonic() + RELOAD_INTERVAL_S

    # --- the loop -------------------------------------------------------------------------------------------

    def run(self) -> LoopCounters:
        """Run until ``stop`` is set; then drain and close. Returns the counters."""
        if self.exactly_once:
            self.producer.init_transactions(90)  # also aborts what a killed predecessor left open
        self.consumer.subscribe(
            [self.input_topic],
            on_assign=self.rebalancer.on_assign,
            on_revoke=self.rebalancer.on_revoke,
            on_lost=self.rebalancer.on_lost,
        )
        self.state.model_loaded = self.parts.predictor.ready()
        settle_garbage_collector()
        self.metrics.set_model_version(self.parts.predictor.model_name, self.parts.predictor.model_version)
        log.info(
            "loop started",
            extra=fields(
                topic=self.input_topic,
                delivery="exactlyOnce" if self.exactly_once else "atLeastOnce",
                max_batch=self.max_batch,
            ),
        )
        try:
            iterations = self.metrics.loop_iterations
            while not self.stop.is_set():
                self.state.heartbeat()
                iterations.inc()
                self._periodic()
                if self.exactly_once:
                    self.transactions.commit_if_due()
                if self.held is not None:
                    self._retry_held()
                    continue
                self.serve_deliveries()
                if self.tracker.records_in_flight() > (MAX_IN_FLIGHT_BATCHES - 1) * self.max_batch:
                    self.producer.poll(0.005)
                    continue
                started = time.perf_counter()
                messages = self._consume_batch()
                if messages:
                    consumed = time.perf_counter()
                    self.metrics.stage["consume"].observe(consumed - started)
                    self._process(self._valid(messages))
                    self.window.processed(time.perf_counter() - consumed)
        except PipelineStopped:
            pass
        finally:
            self._shutdown()
        return self.counters

    def _consume_batch(self) -> list[Message]:
        """Up to maxBatchSize records, closed as :mod:`kinfer_runtime.pipeline.batching` decides. Waits are taken in
        slices so that delivery reports (and with them commits and the end-to-end latency) are served while a batch
        fills at low rates."""
        window = self.window
        deadline = window.deadline()  # the records already queued arrived after the queue was last seen empty
        messages = self._consume(self.max_batch, 0)
        if not messages:
            if self.exactly_once:
                self.transactions.commit()  # the input is idle: do not hold finished batches back
            # Block for the first record alone: consume(1, t) returns as soon as one arrives, while a larger
            # count would wait all of t. It arrives after the queue was seen empty just now.
            messages = self._consume(1, CONSUME_SLICE_S)
            if not messages:
                return messages
            deadline = window.deadline()
            messages += self._consume(self.max_batch - 1, 0)
        while not self.stop.is_set():
            now = time.monotonic()
            if window.should_close(len(messages), deadline, now):
                break
            if len(self.tracker):
                self.serve_deliveries()
            messages += self._consume(self.max_batch - len(messages), min(max(deadline - now, 0.0), CONSUME_SLICE_S))
        window.closed(len(messages), time.monotonic())
        return messages

    def _consume(self, asked: int, timeout: float) -> list[Message]:
        """One consume call, telling the batch window whether it emptied the client's queue."""
        messages = self.consumer.consume(asked, timeout)
        self.window.consumed(asked, len(messages), time.monotonic())
        return messages

    def _valid(self, messages: list[Message]) -> list[Message]:
        valid = []
        for message in messages:
            error = message.error()
            if error is None:
                valid.append(message)
            elif error.fatal():
                raise KafkaException(error)
            else:
                log.warning("consumer error", extra=fields(error=str(error)))
        return valid

    def _process(self, messages: list[Message]) -> None:
        if not messages:
            return
        n = len(messages)
        self.counters.records_in += n
        self.counters.batches += 1
        self.metrics.records_in.inc(n)
        self.metrics.batch_size.observe(n)
        started = time.perf_counter()
        encoded = self.preprocessor.encode([m.value() for m in messages])
        preprocess_s = time.perf_counter() - started
        self.metrics.stage["preprocess"].observe(preprocess_s)
        self._predict_and_produce(messages, encoded, preprocess_s)

    def _predict_and_produce(self, messages: list[Message], encoded: Any, preprocess_s: float) -> None:
        # str(getattr(...)): reasons may be a str-valued Enum, whose str() is "Class.MEMBER" on Python 3.11.
        failures = [(f.index, Failure(str(getattr(f.reason, "value", f.reason)), f.message)) for f in encoded.failures]
        predicted: list[int] = list(encoded.ok)
        rows: list[bytes] = []
        predict_s = 0.0
        model_version = self.parts.predictor.model_version
        if predicted:
            started = time.perf_counter()
            try:
                prediction = self.parts.predictor.predict(encoded.inputs)
                rows = self.parts.encode_predictions(prediction, self.metadata)
                model_version = prediction.model_version
            except PredictorUnavailable as error:
                self._hold(messages, encoded, error)
                return
            except PredictionFailed as error:
                failures += [(i, Failure(PREDICTION_FAILED, str(error))) for i in predicted]
                predicted, rows = [], []
            predict_s = time.perf_counter() - started
            self.metrics.stage["predict"].observe(predict_s)
        failures.sort(key=lambda failure: failure[0])
        context = BatchContext(
            self.name,
            self.parts.predictor.model_name,
            model_version,
            self.input_topic,
            round(preprocess_s * 1000, 3),
            round(predict_s * 1000, 3),
        )
        started = time.perf_counter()
        batch = assemble_batch(
            messages,
            predicted,
            rows,
            failures,
            context,
            output_topic=self.output_topic,
            dead_letter_topic=self.dead_letter_topic,
            now_ms=time.time() * 1000,
        )
        if self.exactly_once:
            self.transactions.produce(messages, batch)
        else:
            in_flight = self.tracker.add(batch.next_offsets, batch.records, batch.output_timestamps_s)
            self.produce_batch(in_flight, range(len(batch.records)))
        self.metrics.stage["produce"].observe(time.perf_counter() - started)

    def produce_batch(self, batch: InFlightBatch, indices: Sequence[int] | range) -> None:
        produce, poll = self.producer.produce, self.producer.poll
        for i in indices:
            record = batch.records[i]
            full_since = 0.0
            while True:
                try:
                    produce(
                        record.topic,
                        record.value,
                        record.key,
                        headers=record.headers,  # type: ignore[arg-type]
                        on_delivery=batch.delivery_callback(i),
                    )
                    break
                except BufferError:
                    # The local queue is full (broker slow or away): serve delivery reports until there is room.
                    full_since = full_since or time.monotonic()
                    poll(0.05)
                    self.state.heartbeat()
                    if self.stop.is_set() and time.monotonic() - full_since > 5.0:
                        raise PipelineStopped from None
        poll(0)

    # --- at-least-once: delivery reports and commits --------------------------------------------------------

    def serve_deliveries(self, timeout: float = 0.0) -> None:
        self.producer.poll(timeout)
        for batch in self.tracker.with_failures():
            if batch.fatal_error is not None:
                # The idempotent producer is unusable; exiting without committing is the safe restart.
                raise KafkaException(batch.fatal_error)
            failed = batch.take_failed()
            log.warning("delivery failed, producing again", extra=fields(records=len(failed), batch=batch.sequence))
            self.counters.redelivered += len(failed)
            batch.pending += len(failed)
            self.produce_batch(batch, failed)
        completed = self.tracker.pop_completed()
        now = time.monotonic()
        if completed:
            self.account(completed)
            offsets = merge_offsets(completed)
            self.acknowledged.update(offsets)
            self.commit_pacer.acknowledged(offsets, sum(len(batch.records) for batch in completed), now)
        due = self.commit_pacer.take_due(now)
        if due:
            self._commit(due, asynchronous=True)

    def commit_acknowledged(self, partitions: set[tuple[str, int]] | None, asynchronous: bool) -> None:
        """Commit everything acknowledged so far (for ``partitions`` only, when given)."""
        offsets = {k: o for k, o in self.acknowledged.items() if partitions is None or k in partitions}
        self._commit(offsets, asynchronous)

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        """Partitions revoked or lost: nothing more of theirs is committed or held by this member."""
        self.tracker.forget_partitions(partitions)
        self.commit_pacer.forget_partitions(partitions)
        for key in partitions:
            self.acknowledged.pop(key, None)
        self.drop_held(partitions)

    def account(self, completed: list[InFlightBatch]) -> None:
        now = time.time()
        for batch in completed:
            self.counters.records_out += batch.acked_outputs
            self.metrics.records_out.inc(batch.acked_outputs)
            for reason, count in batch.acked_dead_letters.items():
                self.counters.dead_lettered += count
                self.metrics.dead_lettered(reason, count)
            if batch.output_timestamps_s.size:
                latencies = now - batch.output_timestamps_s
                self.metrics.end_to_end.observe_many(latencies)
                self._sample_latencies(latencies)
            self.counters.committed_batches += 1

    def _sample_latencies(self, latencies: np.ndarray) -> None:
        samples = self.counters.latencies_s
        samples.extend(latencies[:: max(1, latencies.size // 16)].tolist())
        if len(samples) > 20000:
            del samples[:10000]

    def _commit(self, offsets: dict[tuple[str, int], int], asynchronous: bool) -> None:
        owned = self.rebalancer.assigned
        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in owned]
        if not partitions:
            return
        started = time.perf_counter()
        try:
            if asynchronous:
                self.consumer.commit(offsets=partitions, asynchronous=True)
            else:
                self.consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as error:
            # Not fatal: a later commit carries higher offsets; the worst case is redelivery after a restart.
            log.warning("commit failed", extra=fields(error=str(error)))
        self.metrics.stage["commit"].observe(time.perf_counter() - started)

    def drain(self, deadline_s: float) -> bool:
        """Wait until every in-flight batch is acknowledged and committed (synchronously). False on timeout."""
        end = time.monotonic() + deadline_s
        while len(self.tracker):
            self.serve_deliveries(0.05)
            self.state.heartbeat()
            if time.monotonic() > end:
                log.error(
                    "in-flight records not acknowledged in time; not committing them",
                    extra=fields(pending=self.tracker.pending_records()),
                )
                return False
        return True

    # --- reading again -------------------------------------------------------------------------------------

    def rewind(self, messages: Sequence[Message]) -> None:
        """Seek back to the first record of ``messages`` per partition still assigned (to consume them again)."""
        self.seek(first_offsets(messages))

    def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        """Consume from these offsets next (partitions no longer assigned are left to their new owner)."""
        for (topic, partition), offset in offsets.items():
            if (topic, partition) in self.rebalancer.assigned:
                self.consumer.seek(TopicPartition(topic, partition, offset))

    # --- predictor outages ----------------------------------------------------------------------------------

    def _hold(self, messages: list[Message], encoded: Any, error: Exception) -> None:
        log.warning("predictor unavailable; pausing partitions", extra=fields(error=str(error)))
        if self.exactly_once:
            self.transactions.commit()  # the batches before this one; the held one goes in a later transaction
        self.metrics.predictor_unavailable.inc()
        self.held, self.held_encoded = messages, encoded
        self._backoff = BACKOFF_MIN_S
        self.rebalancer.pause_all()

    def _retry_held(self) -> None:
        # consume() on paused partitions returns nothing but keeps the member in the group.
        wait_until = time.monotonic() + self._backoff * random.uniform(0.5, 1.0)
        while time.monotonic() < wait_until and not self.stop.is_set():
            stray = self.consumer.consume(self.max_batch, min(0.2, self.batch_wait_s or 0.05))
            if stray:
                self.rewind(stray)  # a partition assigned just before the pause: read it again later
            self.serve_deliveries()
            self.state.heartbeat()
        if self.stop.is_set() or self.held is None:
            return
        held, encoded = self.held, self.held_encoded
        self.held = self.held_encoded = None
        self._backoff = min(BACKOFF_MAX_S, self._backoff * 2)
        self._predict_and_produce(held, encoded, 0.0)
        if self.held is None:
            log.info("predictor available again; resuming partitions")
            self.rebalancer.resume_all()

    def drop_held(self, partitions: set[tuple[str, int]]) -> None:
        """Revoked partitions: forget their held records (the new owner reads them from the committed offset)."""
        if self.held is None:
            return
        keep = [i for i, m in enumerate(self.held) if (m.topic(), m.partition()) not in partitions]
        if len(keep) == len(self.held):
            return
        # Re-encode the remainder: simpler than slicing the encoded arrays, and revocations are rare.
        remaining = [self.held[i] for i in keep]
        self.held = remaining or None
        self.held_encoded = self.preprocessor.encode([m.value() for m in remaining]) if remaining else None

    # --- housekeeping ---------------------------------------------------------------------------------------

    def _periodic(self) -> None:
        now = time.monotonic()
        if now >= self._next_lag:
            self._next_lag = now + LAG_INTERVAL_S
            self.metrics.set_lag(self.rebalancer.lag())
        if now >= self._next_reload and self.held is None:
            self._next_reload = now + RELOAD_INTERVAL_S
            predictor = self.parts.predictor
            if predictor.maybe_reload():
                log.info("model reloaded", extra=fields(model=predictor.model_name, version=predictor.model_version))
                self.metadata = predictor.metadata
                self.preprocessor = self.parts.make_preprocessor(self.metadata)
                self.metrics.set_model_version(predictor.model_name, predictor.model_version)
                settle_garbage_collector()

    def _shutdown(self) -> None:
        log.info("stopping: draining in-flight batches")
        grace = float(self.parts.pipeline.spec.consumer.termination_grace_seconds) * 0.8
        if self.exactly_once:
            try:
                self.transactions.commit()
            except KafkaException as error:  # fatal (fenced): the successor reads from the last commit
                log.warning("final transaction not committed", extra=fields(error=str(error)))
        elif self.drain(grace):
            self.commit_acknowledged(None, asynchronous=False)
        self.state.assigned_partitions = 0
        self.metrics.ready.set(0)
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as error:
            log.warning("consumer close failed", extra=fields(error=str(error)))
        self.producer.flush(5)
        log.info(
            "stopped",
            extra=fields(
                records_in=self.counters.records_in,
                records_out=self.counters.records_out,
                dead_lettered=self.counters.dead_lettered,
            ),
        )
