"""The runtime loop: consume a batch → preprocess → one predict call → produce outputs and dead letters → commit.

The loop runs the stages and hands each assembled batch to its output side, which owns producing, delivery
reports and commits: :mod:`kinfer_runtime.pipeline.at_least_once` (the default) or
:mod:`kinfer_runtime.pipeline.exactly_once`. Partition assignment (:mod:`kinfer_runtime.pipeline.assignment`)
calls back into the loop on revoke and loss, and the loop tells the output side.

A ``PredictorUnavailable`` (model server down) holds the batch, pauses every assigned partition and keeps calling
``consume`` (which serves the group protocol, so the member is not kicked out) while it retries with jittered
backoff. SIGTERM (``stop`` set) ends the loop after the batch in hand; then everything in flight is flushed and
committed and the consumer closes (a static member keeps its assignment for its successor).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, Message

from kinfer_runtime.observability.logs import fields
from kinfer_runtime.pipeline.assemble import AssembledBatch, ScoredRows, assemble_batch
from kinfer_runtime.pipeline.assignment import Assignment
from kinfer_runtime.pipeline.at_least_once import AtLeastOnce
from kinfer_runtime.pipeline.clients import Clients
from kinfer_runtime.pipeline.commits import TopicPartitionKey, first_offsets
from kinfer_runtime.pipeline.consumed import read_each
from kinfer_runtime.pipeline.delivery_failures import DeliveryFailures, InputHold
from kinfer_runtime.pipeline.exactly_once import ExactlyOnce
from kinfer_runtime.pipeline.garbage import settle_garbage_collector
from kinfer_runtime.pipeline.intake import Intake
from kinfer_runtime.pipeline.parts import DeliverySide, LoopParts
from kinfer_runtime.pipeline.scoring import Scorer, failures_of
from kinfer_runtime.pipeline.sending import PipelineStopped
from kinfer_runtime.pipeline.tally import LoopCounters, Tally
from kinfer_runtime.predictors import PredictorUnavailable
from kinfer_runtime.quality.drift import DriftWindow, watched_features
from kinfer_runtime.records.dead_letter import dead_letter_summary
from kinfer_runtime.records.output import BatchContext
from kinfer_runtime.records.scored_counts import ScoredCounts
from kinfer_runtime.spec import Delivery

log = logging.getLogger("kinfer.loop")

# Full batches' worth of records produced and not yet acknowledged: overlaps Kafka round trips with the next
# batches, and bounds what a kill can duplicate. Counted in records, so that many small batches (a lightly loaded
# loop closes them early) do not stall on round trips that full ones would not. While the window is full the loop
# still consumes and scores one more batch, which waits (``Ready``) for an acknowledgement to make room: the wait
# overlaps that batch's work instead of idling before it, and the bound on what is produced stays the same.
MAX_IN_FLIGHT_BATCHES = 4
LAG_INTERVAL_S = 2.0
RELOAD_INTERVAL_S = 1.0  # the predictor throttles its own directory scans
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 5.0


@dataclass(frozen=True)
class Ready:
    """A batch scored and assembled while the in-flight window was full; ``assemble_s``: its produce stage so far."""

    messages: list[Message]
    assembled: AssembledBatch
    assemble_s: float


class PipelineLoop:
    """One pipeline's loop. ``consumer`` and ``producer`` default to clients built from ``parts``' settings."""

    def __init__(self, parts: LoopParts, stop: threading.Event, consumer: Any = None, producer: Any = None):
        self.parts = parts
        self.stop = stop
        spec = parts.pipeline.spec
        self.name = parts.pipeline.metadata.name
        self.input_topic = spec.topics.input.name
        self.output_topic = spec.topics.output.name
        self.dead_letter_topic = spec.topics.dead_letter.name
        self.shadow_topic = spec.topics.shadow.name if spec.topics.shadow is not None else None
        self.max_batch = spec.consumer.max_batch_size
        self.batch_wait_s = spec.consumer.max_batch_wait_ms / 1000.0
        self.exactly_once = spec.consumer.delivery is Delivery.EXACTLY_ONCE
        self.metrics = parts.metrics
        self.state = parts.state
        self.clients = Clients(parts, consumer, producer)
        self.consumer, self.producer = self.clients.consumer, self.clients.producer
        self.tally = Tally(self.metrics)
        self.scored = ScoredCounts(self._loaded_versions)
        self.assignment = Assignment(
            self.consumer,
            self.input_topic,
            self.metrics,
            self.state,
            revoked=self._revoked,
            lost=self._lost,
            assigned=self.scored.restore,
        )
        self.delivery = self._delivery_side()
        self.input_hold = InputHold(self.assignment, self.max_batch)  # paused while the output side holds records
        self.intake = Intake(self.consumer, self.delivery, self.max_batch, self.batch_wait_s, self.stop)
        self.metadata = parts.predictor.metadata
        self.preprocessor = parts.make_preprocessor(self.metadata)
        self.drift = self._drift_window()
        self.scorer = Scorer(
            parts.predictor,
            parts.encode_predictions,
            self.metrics,
            spec.model.rollout,
            parts.candidate,
            spec.monitoring.quality_metrics,
            shadow_topic=spec.topics.shadow is not None,
        )
        self.held: list[Message] | None = None  # a batch waiting for the predictor to come back
        self.held_encoded: Any = None
        self.ready: Ready | None = None  # produced once the in-flight window has room
        self._backoff = BACKOFF_MIN_S
        self._next_lag = 0.0
        self._next_reload = time.monotonic() + RELOAD_INTERVAL_S

    def _delivery_side(self) -> DeliverySide:
        common = (self.consumer, self.producer, self.tally, self.metrics)
        failures = DeliveryFailures(self.dead_letter_topic, self.metrics, self.state)
        if self.exactly_once:
            return ExactlyOnce(*common, self.assignment.seek, self.state.heartbeat, self.stop, self.max_batch, failures,
                               self.scored)  # fmt: skip
        return AtLeastOnce(*common, self.assignment.owned, self.state.heartbeat, self.stop, self.max_batch, failures,
                           self.scored)  # fmt: skip

    def _loaded_versions(self) -> list[int]:
        """The model versions this consumer has loaded (each commit says so: status shows where a candidate is)."""
        candidate = self.parts.candidate
        loaded = [self.parts.predictor.model_version]
        return [*loaded, candidate.predictor.model_version] if candidate is not None else loaded

    def _drift_window(self) -> DriftWindow:
        """Input drift of the model version in use (no feature watched when its kinfer.json has no statistics)."""
        if not self.parts.pipeline.spec.monitoring.quality_metrics:
            return DriftWindow([])
        columns = self.preprocessor.feature_columns()
        return DriftWindow(watched_features(columns, self.preprocessor.features, self.metadata))

    @property
    def counters(self) -> LoopCounters:
        return self.tally.counters

    # --- the loop -------------------------------------------------------------------------------------------

    def run(self) -> LoopCounters:
        """Run until ``stop`` is set; then drain and close. Returns the counters."""
        self.start()
        try:
            while not self.stop.is_set():
                self.step()
        except PipelineStopped:
            pass
        finally:
            self.close()
        return self.counters

    def start(self) -> None:
        """Set up the output side (transactions), subscribe, and settle the model's objects."""
        self.delivery.start()
        self.assignment.subscribe()
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

    def step(self) -> None:
        """One pass: housekeeping, delivery reports, then one batch (or a retry of the held one)."""
        self.state.heartbeat()
        self.metrics.loop_iterations.inc()
        self._periodic()
        if self.held is not None:
            self._retry_held()
            return
        self.delivery.serve()
        if self.input_hold.holding(self.delivery):
            return
        if self.ready is not None:
            if self._window_full():
                self.producer.poll(0.005)
                return
            self._submit_ready()
        started = time.perf_counter()
        messages = self.intake.read()
        if messages:
            consumed = time.perf_counter()
            self.metrics.stage["consume"].observe(consumed - started)
            self._process(messages)
            self.intake.window.processed(time.perf_counter() - consumed)

    def _process(self, messages: list[Message]) -> None:
        if not messages:
            return
        self.tally.consumed(len(messages))
        started = time.perf_counter()
        encoded = self.preprocessor.encode(read_each(messages, "value"))
        if encoded.ok and self.drift.features:
            self.drift.observe(encoded.inputs)  # kept; counted a slot of about 1,000 records at a time
        preprocess_s = time.perf_counter() - started
        self.metrics.stage["preprocess"].observe(preprocess_s)
        self._predict_and_produce(messages, encoded, preprocess_s)

    def _predict_and_produce(self, messages: list[Message], encoded: Any, preprocess_s: float) -> None:
        failures = failures_of(encoded.failures)
        started = time.perf_counter()
        try:
            scored, failed = self.scorer.score(messages, list(encoded.ok), encoded.inputs, self.metadata, encoded)
        except PredictorUnavailable as error:
            self._hold(messages, encoded, error)
            return
        if not self.state.model_loaded:  # a model server that did not answer at the start does now: ready
            self.state.model_loaded = True
            self.assignment.report_ready()
        if encoded.ok:  # every version's work: a canary's own preprocessing and a shadow's scoring included
            self.metrics.stage["predict"].observe(time.perf_counter() - started)
        failures += failed
        if failures:
            failures.sort(key=lambda failure: failure[0])
            log.warning("records dead-lettered", extra=fields(**dead_letter_summary(messages, failures),
                        topic=self.input_topic, model_version=self.parts.predictor.model_version))  # fmt: skip
        groups = [
            ScoredRows(
                BatchContext(
                    self.name,
                    self.parts.predictor.model_name,
                    group.version,
                    self.input_topic,
                    round(preprocess_s * 1000, 3),
                    round(group.predict_s * 1000, 3),
                ),
                group.predicted,
                group.rows,
            )
            for group in scored
        ]
        started = time.perf_counter()
        published = [g for g, version in zip(groups, scored, strict=True) if not version.shadow]
        shadow = next((g for g, version in zip(groups, scored, strict=True) if version.shadow), None)
        live = published[0]
        batch = assemble_batch(
            messages,
            live.predicted,
            live.predictions,
            failures,
            live.context,
            output_topic=self.output_topic,
            dead_letter_topic=self.dead_letter_topic,
            now_ms=time.time() * 1000,
            more=published[1:],
            shadow=shadow,
            shadow_topic=self.shadow_topic,
        )
        self.ready = Ready(messages, batch, time.perf_counter() - started)
        if not self._window_full():
            self._submit_ready()

    def _window_full(self) -> bool:
        return self.delivery.records_in_flight() > (MAX_IN_FLIGHT_BATCHES - 1) * self.max_batch

    def _submit_ready(self) -> None:
        """Produce the batch waiting for room (if any), whether or not there is room now."""
        ready, self.ready = self.ready, None
        if ready is None:
            return
        started = time.perf_counter()
        self.delivery.submit(ready.messages, ready.assembled)
        self.metrics.stage["produce"].observe(ready.assemble_s + time.perf_counter() - started)

    # --- assignment changes ---------------------------------------------------------------------------------

    def _revoked(self, partitions: set[TopicPartitionKey]) -> None:
        self._submit_ready()  # consumed before the revoke: produced, then drained and committed with the rest
        self.delivery.revoke(partitions)
        self._drop_held(partitions)

    def _lost(self, partitions: set[TopicPartitionKey]) -> None:
        self._submit_ready()  # its other partitions' offsets must not be passed by a later commit
        self.delivery.lose(partitions)
        self._drop_held(partitions)

    # --- predictor outages ----------------------------------------------------------------------------------

    def _hold(self, messages: list[Message], encoded: Any, error: Exception) -> None:
        log.warning("predictor unavailable; pausing partitions", extra=fields(error=error))
        self.delivery.before_hold()
        self.metrics.predictor_unavailable.inc()
        self.held, self.held_encoded = messages, encoded
        self._backoff = BACKOFF_MIN_S
        self.assignment.pause_all()

    def _retry_held(self) -> None:
        # consume() on paused partitions returns nothing but keeps the member in the group.
        wait_until = time.monotonic() + self._backoff * random.uniform(0.5, 1.0)
        while time.monotonic() < wait_until and not self.stop.is_set():
            stray = self.consumer.consume(self.max_batch, min(0.2, self.batch_wait_s or 0.05))
            if stray:
                self.assignment.seek(first_offsets(stray))  # assigned just before the pause: read it again later
            self.delivery.serve()
            self.state.heartbeat()
        if self.stop.is_set() or self.held is None:
            return
        held, encoded = self.held, self.held_encoded
        self.held = self.held_encoded = None
        self._backoff = min(BACKOFF_MAX_S, self._backoff * 2)
        self._predict_and_produce(held, encoded, 0.0)
        if self.held is None:
            log.info("predictor available again; resuming partitions")
            self.assignment.resume_all()

    def _drop_held(self, partitions: set[TopicPartitionKey]) -> None:
        """Revoked or lost partitions: forget their held records (the new owner reads them from the committed
        offset)."""
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
        if self.clients.replace_stranded(now, self.exactly_once, self.assignment, [self.intake, self.delivery]):
            self.consumer, self.producer = self.clients.consumer, self.clients.producer
        if now >= self._next_lag:
            self._next_lag = now + LAG_INTERVAL_S
            self.metrics.set_lag(self.assignment.lag())
            self.metrics.set_drift(self.drift.psi(), self.drift.records())
        if now >= self._next_reload and self.held is None:
            self._next_reload = now + RELOAD_INTERVAL_S
            predictor = self.parts.predictor
            if predictor.maybe_reload():
                loaded = fields(model=predictor.model_name, model_version=predictor.model_version)
                log.info("model reloaded", extra=loaded)
                self.metadata = predictor.metadata
                self.preprocessor = self.parts.make_preprocessor(self.metadata)
                self.drift = self._drift_window()  # compared with the new version's training data from now on
                self.metrics.set_model_version(predictor.model_name, predictor.model_version)
                settle_garbage_collector()

    def close(self) -> None:
        """Drain and commit what is in flight (within the termination grace), then close the clients."""
        log.info("stopping: draining in-flight batches")
        try:
            self._submit_ready()  # the batch in hand
        except PipelineStopped:
            log.warning("stopped with the output queue full: the last batch is read again by the next consumer")
        self.delivery.close(float(self.parts.pipeline.spec.consumer.termination_grace_seconds) * 0.8)
        self.state.assigned_partitions = 0
        self.metrics.ready.set(0)
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as error:
            log.warning("consumer close failed", extra=fields(error=error))
        self.producer.flush(5)
        log.info(
            "stopped",
            extra=fields(
                records_in=self.counters.records_in,
                records_out=self.counters.records_out,
                dead_lettered=self.counters.dead_lettered,
            ),
        )
