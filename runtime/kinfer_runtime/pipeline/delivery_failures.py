"""What happens to a record Kafka would not take (docs/runtime.md, "Delivery failures").

A failed delivery (a delivery report's error, or ``produce()`` refusing the record at once) is one of:

- **refused**: this record, not its topic (``MSG_SIZE_TOO_LARGE`` from the producer or the broker,
  ``RECORD_LIST_TOO_LARGE``, ``INVALID_RECORD``). Producing it again as it is cannot help, so it is replaced: an
  output by the dead letter of its input (``OutputRefused``), a dead letter by a smaller form of itself
  (:func:`kinfer_runtime.records.dead_letter.smaller_dead_letter`). A dead letter with no smaller form left is held.
  The broker refuses a whole produce request (every record librdkafka batched with the large one), so of the
  records refused together for a topic only the largest is replaced; the others are produced again as they were.
- **unreachable**: its topic refuses every record (``_UNKNOWN_TOPIC``, ``UNKNOWN_TOPIC_OR_PART``: deleted;
  ``TOPIC_AUTHORIZATION_FAILED``: ACLs...). Retrying at once is pointless: the record is held.
- **transient**: anything else (``_MSG_TIMED_OUT`` after librdkafka's own retries, a broker away...): produced again
  after a backoff (:data:`RETRY_MIN_S` doubling, :data:`RETRY_ATTEMPTS` times), then held.
- **purged** (the producer was replaced: produced again at once on the new one) and **fatal** (the process exits).

Held records wait for their topic. The input is paused (the loop keeps polling, so the member stays in its group),
nothing after them is committed, ``/readyz`` says which topic refuses them and why, and ``kinfer_delivery_held``
is 1 for the topic. At-least-once produces one of them again as a probe after :data:`PROBE_MIN_S`, doubling to
:data:`PROBE_MAX_S`; once a probe is acknowledged, all of them are produced again and the input resumes.
Exactly-once aborts the transaction instead (its inputs are read again) and retries it after the same backoff.
Nothing is skipped, nothing spins, and the process does not exit: a restart would only hold the same records again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from kinfer_runtime.observability.health import LoopState
from kinfer_runtime.observability.logs import error_class, fields
from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.pipeline.assemble import dead_letter
from kinfer_runtime.pipeline.commits import InFlightBatch, first_offsets
from kinfer_runtime.pipeline.outgoing import Outgoing
from kinfer_runtime.pipeline.sending import produce_records
from kinfer_runtime.records.dead_letter import OUTPUT_REFUSED, TRUNCATED, Failure, smaller_dead_letter
from kinfer_runtime.records.output import MODEL_VERSION, PIPELINE

log = logging.getLogger("kinfer.delivery")

RETRY_ATTEMPTS = 5
RETRY_MIN_S, RETRY_MAX_S = 0.5, 8.0  # transient failures: 0.5, 1, 2, 4, 8 s, then held
PROBE_MIN_S, PROBE_MAX_S = 1.0, 30.0  # held records: a probe after 1 s, doubling to 30 s
HOLD_POLL_S = 0.1  # a pass of a holding loop blocks this long in consume(): a few passes a second

REFUSED = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD})
UNREACHABLE = frozenset(
    {
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.POLICY_VIOLATION,
        KafkaError._INVALID_ARG,
    }
)
PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})


class Kind(Enum):
    FATAL = "fatal"
    PURGED = "purged"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    TRANSIENT = "transient"


def classify(error: Any) -> Kind:
    """What a delivery error means for the record (by code: librdkafka's delivery reports and produce() errors
    carry no retriable flag)."""
    code = error.code()
    if code == KafkaError._FATAL or error.fatal():
        return Kind.FATAL
    if code in PURGED:
        return Kind.PURGED
    if code in REFUSED:
        return Kind.REFUSED
    if code in UNREACHABLE:
        return Kind.UNREACHABLE
    return Kind.TRANSIENT


def describe(error: Any) -> str:
    """``NAME (text)``, e.g. ``_UNKNOWN_TOPIC (Local: Unknown topic)``."""
    return f"{error.name()} ({error.str()})"


def record_size(record: Outgoing) -> int:
    return len(record.value or b"") + len(record.key or b"") + sum(len(k) + len(v) for k, v in record.headers)


def _header(headers: list[tuple[str, bytes]], name: str) -> str:
    return next((bytes(v).decode(errors="replace") for k, v in headers if k == name), "")


class DeliveryFailures:
    """The policy both output sides share: smaller forms of refused records, and reporting what is held."""

    def __init__(self, dead_letter_topic: str | None, metrics: RuntimeMetrics, state: LoopState) -> None:
        self.dead_letter_topic = dead_letter_topic
        self.metrics, self.state = metrics, state
        self.held_topics: dict[str, str] = {}

    def count(self, topic: str, error: Any) -> None:
        self.metrics.delivery_failed(topic, error.name())

    def smaller(self, batch: InFlightBatch, index: int, error: Any) -> Outgoing | None:
        """What to produce instead of ``batch.records[index]``, which Kafka refused (None: nothing smaller)."""
        record = batch.records[index]
        where = fields(
            topic=record.topic, bytes=record_size(record), error=describe(error), error_class=error_class(error)
        )
        if record.reason is None:  # an output: dead-letter its input instead
            message = batch.input_of(index)
            if message is None or self.dead_letter_topic is None:
                return None
            size, version = record_size(record), _header(record.headers, MODEL_VERSION)
            failure = Failure(OUTPUT_REFUSED, f"Kafka refused the output ({size} bytes): {describe(error)}")
            log.warning("output refused; dead-lettering its input", extra=where)
            pipeline = _header(record.headers, PIPELINE)
            model_version = int(version) if version.isdigit() else None
            return dead_letter(message, failure, self.dead_letter_topic, pipeline, model_version)
        smaller = smaller_dead_letter(record.value, record.headers)
        if smaller is None:
            return None
        if not any(k == TRUNCATED for k, _ in record.headers):
            self.metrics.dead_letters_truncated.inc()
        log.warning("dead letter refused; producing it truncated", extra=where)
        return Outgoing(record.topic, record.key, smaller[0], smaller[1], record.reason)

    def hold(self, topic: str, error: Any) -> None:
        """Records for ``topic`` are held: say so on /readyz and in the metrics."""
        text = describe(error)
        if self.held_topics.get(topic) == text:
            return
        if topic not in self.held_topics:
            log.error("cannot deliver to topic; holding its records and pausing the input",
                      extra=fields(topic=topic, error=text, error_class=error_class(error)))  # fmt: skip
        self.held_topics[topic] = text
        self.metrics.delivery_held(topic, True)
        self._publish()

    def release(self, topic: str) -> None:
        if self.held_topics.pop(topic, None) is not None:
            log.info("topic takes records again; resuming", extra=fields(topic=topic))
            self.metrics.delivery_held(topic, False)
            self._publish()

    def _publish(self) -> None:
        self.state.delivery_held = "; ".join(
            f"cannot deliver to topic {topic}: {text}" for topic, text in sorted(self.held_topics.items())
        )


@dataclass
class HeldTopic:
    """Records waiting for a topic that refuses them; one is produced again as a probe now and then."""

    topic: str
    records: list[tuple[InFlightBatch, int]] = field(default_factory=list)
    next_probe: float = 0.0
    backoff: float = PROBE_MIN_S
    probing: bool = False
    delivered: bool = False  # a probe was acknowledged: release them all


class Redelivery:
    """At-least-once: what to do with each failed record, and producing it again when due. A record waiting here
    counts as pending in its batch, so neither its batch nor any later one is committed before it is delivered."""

    def __init__(
        self,
        failures: DeliveryFailures,
        counters: Any,
        heartbeat: Callable[[], None],
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures, self.counters = failures, counters
        self.heartbeat, self.stop, self.clock = heartbeat, stop, clock
        self.retries: list[tuple[float, InFlightBatch, int]] = []  # (when, batch, index)
        self.held: dict[str, HeldTopic] = {}
        self.refused: list[tuple[InFlightBatch, int, Any]] = []  # refused by the broker, settled in serve()

    def held_records(self) -> int:
        return sum(len(held.records) + held.probing for held in self.held.values())

    def failed(self, batch: InFlightBatch, index: int, error: Any, at_once: bool = False) -> None:
        """``batch.records[index]`` was not delivered: its report said so, or produce() refused it (``at_once``)."""
        kind = classify(error)
        if kind is Kind.FATAL:
            raise KafkaException(error)  # the idempotent producer is unusable; exiting uncommitted is the safe restart
        batch.pending += 1  # waits again
        now = self.clock()
        if kind is Kind.PURGED:
            self.retries.append((now, batch, index))
            return
        record = batch.records[index]
        self.failures.count(record.topic, error)
        held = self.held.get(record.topic)
        if held is not None:
            held.records.append((batch, index))
            self.failures.hold(record.topic, error)  # the latest reason
            return
        if kind is Kind.REFUSED:
            if at_once:  # produce() checked this record alone
                self._replace_or_hold(batch, index, error, now)
            else:  # maybe only for sharing a produce request with a larger one: see serve()
                self.refused.append((batch, index, error))
            return
        if kind is Kind.TRANSIENT:
            attempt = batch.attempt(index)
            if attempt <= RETRY_ATTEMPTS:
                self.retries.append((now + min(RETRY_MAX_S, RETRY_MIN_S * 2 ** (attempt - 1)), batch, index))
                return
        self._hold(batch, index, error, now)

    def _replace_or_hold(self, batch: InFlightBatch, index: int, error: Any, now: float) -> None:
        replacement = self.failures.smaller(batch, index, error)
        if replacement is None:
            self._hold(batch, index, error, now)
            return
        batch.records[index] = replacement
        self.retries.append((now, batch, index))

    def _hold(self, batch: InFlightBatch, index: int, error: Any, now: float) -> None:
        topic = batch.records[index].topic
        self.held[topic] = HeldTopic(topic, [(batch, index)], next_probe=now + PROBE_MIN_S)
        self.failures.hold(topic, error)

    def _settle_refused(self, now: float) -> None:
        """Records the broker refused as too large, together: per topic, the largest is replaced by a smaller
        form, the others (refused for sharing its produce request) are produced again as they are."""
        refused, self.refused = self.refused, []
        largest: dict[str, tuple[int, tuple[InFlightBatch, int, Any]]] = {}
        for entry in refused:
            record = entry[0].records[entry[1]]
            size = record_size(record)
            if record.topic not in largest or size > largest[record.topic][0]:
                largest[record.topic] = (size, entry)
        for entry in refused:
            batch, index, error = entry
            if largest[batch.records[index].topic][1] is entry:
                self._replace_or_hold(batch, index, error, now)
            else:
                self.retries.append((now, batch, index))

    def serve(self, producer: Any) -> None:
        """Produce again what is due: retries, a probe per held topic, everything of a topic that took a probe."""
        if not (self.retries or self.held or self.refused):
            return
        now = self.clock()
        if self.refused:
            self._settle_refused(now)
        for held in list(self.held.values()):
            if held.delivered:
                del self.held[held.topic]
                self.failures.release(held.topic)
                self.retries += [(now, batch, index) for batch, index in held.records]
            elif not held.probing and held.records and now >= held.next_probe:
                batch, index = held.records.pop(0)
                held.probing = True
                held.backoff = min(PROBE_MAX_S, held.backoff * 2)
                held.next_probe = now + held.backoff
                log.warning("probing a topic that refused records", extra=fields(topic=held.topic,
                            held=len(held.records) + 1, next_probe_s=held.backoff))  # fmt: skip
                if self._produce(producer, batch, [index], self._probe_callback(held, batch)):
                    held.probing = False
        if not self.retries:
            return
        due = [entry for entry in self.retries if entry[0] <= now]
        if not due:
            return
        self.retries = [entry for entry in self.retries if entry[0] > now]
        by_batch: dict[int, tuple[InFlightBatch, list[int]]] = {}
        for _, batch, index in due:
            waiting = self.held.get(batch.records[index].topic)
            if waiting is not None:
                waiting.records.append((batch, index))
            else:
                by_batch.setdefault(id(batch), (batch, []))[1].append(index)
        for batch, indices in by_batch.values():
            log.warning("delivery failed, producing again", extra=fields(records=len(indices), batch=batch.sequence))
            self.counters.redelivered += len(indices)
            self._produce(producer, batch, indices)

    def _produce(self, producer: Any, batch: InFlightBatch, indices: list[int], callback: Any = None) -> bool:
        """Produce again; a record produce() refuses at once is handled like a failed report. True if any was."""
        refused = produce_records(producer, batch, indices, self.heartbeat, self.stop, callback)
        for index, error in refused:
            batch.pending -= 1  # as its report would have
            self.failed(batch, index, error, at_once=True)
        return bool(refused)

    @staticmethod
    def _probe_callback(held: HeldTopic, batch: InFlightBatch) -> Callable[[int], Callable[[Any, Any], None]]:
        def make(index: int) -> Callable[[Any, Any], None]:
            report = batch.delivery_callback(index)

            def on_delivery(error: Any, message: Any) -> None:
                held.probing = False
                held.delivered = held.delivered or error is None
                report(error, message)

            return on_delivery

        return make


class InputHold:
    """Pauses the input while the output side holds records (and resumes it after), polling the consumer so that
    the member stays in its group; records fetched before the pause are read again later."""

    def __init__(self, assignment: Any, max_batch: int) -> None:
        self.assignment, self.max_batch = assignment, max_batch
        self.paused = False

    def holding(self, delivery: Any) -> bool:
        """True while ``delivery`` holds records: this pass waited on the paused input instead of reading it."""
        assignment = self.assignment
        if not delivery.held():
            if self.paused:
                self.paused = False
                log.info("delivery side no longer holds records; resuming the input")
                assignment.resume_all()
                assignment.report_ready()
            return False
        if not self.paused or not assignment.paused:  # e.g. resumed by a predictor outage ending meanwhile
            self.paused = True
            assignment.pause_all()
        assignment.metrics.ready.set(0)
        stray = assignment.consumer.consume(self.max_batch, HOLD_POLL_S)
        if stray:
            assignment.seek(first_offsets(stray))
        return True
