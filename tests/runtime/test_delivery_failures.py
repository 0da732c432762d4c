"""Records Kafka will not take (docs/runtime.md, "Delivery failures"), with the in-memory clients of fake_kafka.py.

A transient failure is produced again after a backoff, a bounded number of times; a record refused for its size
is replaced by a smaller one (the input's dead letter for an output, a truncated dead letter); a topic that
refuses everything holds its records, pauses the input, says why on /readyz and resumes once it takes a probe.
Nothing is committed past a record that is not delivered, nothing is dropped, the loop never raises and never
spins. The same rules against a real broker: tests/runtime/integration/test_wedge.py.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from kinfer_runtime.kafka import settings
from kinfer_runtime.observability.health import probe_result
from kinfer_runtime.pipeline import delivery_failures
from kinfer_runtime.pipeline.at_least_once import AtLeastOnce
from kinfer_runtime.pipeline.exactly_once import ExactlyOnce
from kinfer_runtime.pipeline.loop import PipelineLoop
from kinfer_runtime.records.dead_letter import (
    MINIMAL_VALUE_BYTES,
    TRUNCATED_VALUE_BYTES,
    Failure,
    dead_letter_headers,
    smaller_dead_letter,
)
from kinfer_runtime.spec import parse_pipeline
from tests.runtime.fake_kafka import FakeConsumer, FakeMessage, FakeProducer, Produced
from tests.runtime.test_pipeline_loop import DLQ, IN, OUT, good, pipeline_loop


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def clocked(delivery: str, **producer: Any) -> tuple[PipelineLoop, FakeConsumer, FakeProducer, Clock]:
    loop, consumer, fake = pipeline_loop(delivery)
    for name, value in producer.items():
        setattr(fake, name, value)
    clock = Clock()
    side = loop.delivery
    if isinstance(side, AtLeastOnce):
        side.redelivery.clock = clock
    else:
        assert isinstance(side, ExactlyOnce)
        side.clock = clock
    consumer.rebalance("assign", (IN, 0))
    return loop, consumer, fake, clock


def steps(loop: PipelineLoop, count: int = 3) -> None:
    for _ in range(count):
        loop.step()


def finish(loop: PipelineLoop) -> None:
    loop.stop.set()
    loop.close()


def to(topic: str, key: bytes | None = None) -> Any:
    return lambda record: record.topic == topic and (key is None or record.key == key)


def delivered(loop: PipelineLoop, producer: FakeProducer) -> list[Produced]:
    """What a reader of the output and dead-letter topics sees (read_committed for exactly-once)."""
    if isinstance(loop.delivery, ExactlyOnce):
        return [r for t in producer.committed_transactions for r in t["records"]]
    return producer.delivered


def headers(record: Produced) -> dict[str, bytes]:
    return dict(record.headers)


def metric(loop: PipelineLoop, name: str, **labels: str) -> float:
    value = loop.metrics.registry.get_sample_value(name, {"namespace": "test", "pipeline": "unit", **labels})
    return value or 0.0


def readyz(loop: PipelineLoop) -> tuple[int, str]:
    return probe_result("/readyz", loop.state, time.monotonic())


def healthz(loop: PipelineLoop) -> int:
    return probe_result("/healthz", loop.state, time.monotonic())[0]


# --- transient failures -----------------------------------------------------------------------------------------


def test_a_transient_failure_is_retried_with_backoff_a_few_times_then_held_and_probed() -> None:
    loop, consumer, producer, clock = clocked("atLeastOnce")
    producer.fail(to(OUT, b"k0"), KafkaError._MSG_TIMED_OUT)
    consumer.append(IN, 0, *good(1))
    steps(loop)
    assert producer.offered(to(OUT, b"k0")) == 1, "no retry before the backoff"
    backoff = delivery_failures.RETRY_MIN_S
    for attempt in range(2, delivery_failures.RETRY_ATTEMPTS + 2):
        clock.advance(backoff * 0.9)
        steps(loop)
        assert producer.offered(to(OUT, b"k0")) == attempt - 1, "not before the backoff has passed"
        clock.advance(backoff * 0.1)
        steps(loop)
        assert producer.offered(to(OUT, b"k0")) == attempt
        backoff = min(delivery_failures.RETRY_MAX_S, backoff * 2)
    assert loop.delivery.held(), "retries are capped"
    assert consumer.paused == {(IN, 0)} and loop.state.delivery_held
    status, reason = readyz(loop)
    assert status == 503 and OUT in reason and "_MSG_TIMED_OUT" in reason
    assert healthz(loop) == 200, "the loop runs: holding is no reason to restart"
    assert metric(loop, "kinfer_delivery_held", topic=OUT) == 1
    assert metric(loop, "kinfer_delivery_failures_total", topic=OUT, error="_MSG_TIMED_OUT") == 6
    assert metric(loop, "kinfer_ready") == 0
    consumer.append(IN, 0, *good(2))  # arrives while held: not read
    steps(loop, 50)
    assert producer.offered(to(OUT, b"k0")) == 6 and producer.offered(to(OUT, b"k1")) == 0, "no busy loop"
    assert not consumer.committed_offsets
    clock.advance(delivery_failures.PROBE_MIN_S)
    steps(loop)
    assert producer.offered(to(OUT, b"k0")) == 7, "a probe"
    clock.advance(delivery_failures.PROBE_MIN_S)
    steps(loop)
    assert producer.offered(to(OUT, b"k0")) == 7, "the next probe waits twice as long"
    producer.heal()
    clock.advance(delivery_failures.PROBE_MIN_S)
    steps(loop, 5)
    assert not loop.delivery.held() and consumer.paused == set() and loop.state.delivery_held == ""
    assert readyz(loop)[0] == 200 and metric(loop, "kinfer_delivery_held", topic=OUT) == 0
    assert metric(loop, "kinfer_ready") == 1
    finish(loop)
    assert [r.key for r in producer.delivered if r.topic == OUT] == [b"k0", b"k1"]
    assert consumer.committed_offsets == {(IN, 0): 2}


# --- records refused for their size -----------------------------------------------------------------------------


@pytest.mark.parametrize("delivery", ["atLeastOnce", "exactlyOnce"])
def test_a_dead_letter_too_large_for_the_producer_goes_truncated_with_its_size_and_checksum(delivery: str) -> None:
    loop, consumer, producer, _ = clocked(delivery, max_message_bytes=100_000)
    bad = b"{" + b"x" * 200_000
    consumer.append(IN, 0, *good(1), bad, *good(2))
    steps(loop)
    finish(loop)
    records = delivered(loop, producer)
    assert [r.key for r in records if r.topic == OUT] == [b"k0", b"k2"]
    [letter] = [r for r in records if r.topic == DLQ]
    assert letter.key == b"k1" and letter.value == bad[:TRUNCATED_VALUE_BYTES]
    assert headers(letter)["kinfer.error.class"] == b"MalformedJson"
    assert headers(letter)["kinfer.truncated"] == b"value"
    assert headers(letter)["kinfer.original.size"] == str(len(bad)).encode()
    assert headers(letter)["kinfer.original.sha256"] == hashlib.sha256(bad).hexdigest().encode()
    assert metric(loop, "kinfer_dead_letters_truncated_total") == 1
    assert metric(loop, "kinfer_delivery_failures_total", topic=DLQ, error="MSG_SIZE_TOO_LARGE") == 1
    assert metric(loop, "kinfer_records_dead_lettered_total", reason="MalformedJson") == 1
    if delivery == "atLeastOnce":
        assert consumer.committed_offsets == {(IN, 0): 3}
    else:
        assert len(producer.committed_transactions) == 1 and loop.counters.transactions_aborted == 0


@pytest.mark.parametrize("delivery", ["atLeastOnce", "exactlyOnce"])
def test_a_dead_letter_the_topic_refuses_goes_truncated(delivery: str) -> None:
    loop, consumer, producer, _ = clocked(delivery)
    producer.fail(lambda r: r.topic == DLQ and len(r.value or b"") > 100_000, KafkaError.MSG_SIZE_TOO_LARGE)
    bad = b"[" * 150_000
    consumer.append(IN, 0, *good(1), bad, *good(2))
    steps(loop, 4)
    finish(loop)
    records = delivered(loop, producer)
    assert [r.key for r in records if r.topic == OUT] == [b"k0", b"k2"]
    [letter] = [r for r in records if r.topic == DLQ]
    assert letter.value == bad[:TRUNCATED_VALUE_BYTES] and headers(letter)["kinfer.truncated"] == b"value"
    if delivery == "atLeastOnce":
        assert consumer.committed_offsets == {(IN, 0): 3}
    else:
        # The broker's refusal fails the transaction: aborted, read again, the smaller form produced instead.
        assert loop.counters.transactions_aborted == 1 and len(producer.committed_transactions) == 1
        assert not loop.state.delivery_held


@pytest.mark.parametrize("delivery", ["atLeastOnce", "exactlyOnce"])
@pytest.mark.parametrize("where", ["producer", "topic"])
def test_an_output_kafka_refuses_dead_letters_its_input(delivery: str, where: str) -> None:
    loop, consumer, producer, _ = clocked(delivery)
    if where == "producer":
        producer.refuse(to(OUT, b"k1"), KafkaError.MSG_SIZE_TOO_LARGE)
    else:
        producer.fail(to(OUT, b"k1"), KafkaError.MSG_SIZE_TOO_LARGE)
    consumer.append(IN, 0, *good(1, 2, 3))
    steps(loop, 4)
    finish(loop)
    records = delivered(loop, producer)
    assert [r.key for r in records if r.topic == OUT] == [b"k0", b"k2"]
    [letter] = [r for r in records if r.topic == DLQ]
    assert letter.key == b"k1" and letter.value == good(2)[0], "the input's own bytes, for replay"
    assert headers(letter)["kinfer.error.class"] == b"OutputRefused"
    assert b"MSG_SIZE_TOO_LARGE" in headers(letter)["kinfer.error.message"]
    assert headers(letter)["kinfer.source.offset"] == b"1" and headers(letter)["kinfer.pipeline"] == b"unit"
    assert metric(loop, "kinfer_records_dead_lettered_total", reason="OutputRefused") == 1
    if delivery == "atLeastOnce":
        assert consumer.committed_offsets == {(IN, 0): 3} and loop.counters.records_out == 2
    else:
        assert loop.counters.transactions_aborted == (1 if where == "topic" else 0)


@pytest.mark.parametrize("delivery", ["atLeastOnce", "exactlyOnce"])
def test_only_the_largest_of_the_records_a_topic_refuses_together_is_replaced(delivery: str) -> None:
    loop, consumer, producer, _ = clocked(delivery)
    producer.topic_max_bytes = {OUT: 10_000}  # the broker refuses the whole request, small records with the big one
    consumer.append(IN, 0, *good(1))
    consumer.logs[(IN, 0)].append(FakeMessage(IN, 0, 1, good(2)[0], _key=b"K" * 20_000))  # its output is too large
    consumer.append(IN, 0, *good(3))
    steps(loop, 4)
    finish(loop)
    records = delivered(loop, producer)
    assert [r.key for r in records if r.topic == OUT] == [b"k0", b"k2"], "the others go out as they were"
    [letter] = [r for r in records if r.topic == DLQ]
    assert letter.key == b"K" * 20_000 and headers(letter)["kinfer.error.class"] == b"OutputRefused"
    assert metric(loop, "kinfer_delivery_failures_total", topic=OUT, error="MSG_SIZE_TOO_LARGE") == 3
    if delivery == "atLeastOnce":
        assert consumer.committed_offsets == {(IN, 0): 3}
    else:
        assert loop.counters.transactions_aborted == 1 and len(producer.committed_transactions) == 1


def test_a_dead_letter_no_form_of_which_is_taken_is_held_not_dropped() -> None:
    loop, consumer, producer, clock = clocked("atLeastOnce")
    producer.fail(to(DLQ), KafkaError.MSG_SIZE_TOO_LARGE)
    bad = b"{" * 100_000
    consumer.append(IN, 0, bad, *good(1))
    steps(loop, 4)
    forms = [(r.value, headers(r).get("kinfer.truncated")) for r in producer.attempts if r.topic == DLQ]
    assert forms == [(bad, None), (bad[:TRUNCATED_VALUE_BYTES], b"value"),
                     (bad[:MINIMAL_VALUE_BYTES], b"value,headers")]  # fmt: skip
    assert loop.delivery.held() and DLQ in readyz(loop)[1] and not consumer.committed_offsets
    producer.heal()
    clock.advance(delivery_failures.PROBE_MIN_S)
    steps(loop, 3)
    finish(loop)
    assert consumer.committed_offsets == {(IN, 0): 2}
    [letter] = [r for r in producer.delivered if r.topic == DLQ]
    assert headers(letter)["kinfer.original.size"] == b"100000"


# --- topics that refuse everything ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("refuse", KafkaError._UNKNOWN_TOPIC),  # librdkafka knows the topic is gone: produce() raises
        ("fail", KafkaError.UNKNOWN_TOPIC_OR_PART),  # the delivery report says so
        ("fail", KafkaError.TOPIC_AUTHORIZATION_FAILED),  # an ACL is missing
    ],
)
def test_a_topic_that_refuses_everything_holds_its_records_and_pauses_until_it_takes_them(how: str, code: int) -> None:
    loop, consumer, producer, clock = clocked("atLeastOnce")
    getattr(producer, how)(to(DLQ), code)
    name = KafkaError(code).name()
    consumer.append(IN, 0, *good(1, 2, 3, 4))  # batch 1: delivered and committed
    consumer.append(IN, 0, *good(5), b"{oops", *good(6))  # batch 2: its dead letter cannot go
    steps(loop, 3)
    assert producer.offered(to(DLQ)) == 1, "an unreachable topic gets no pointless retries"
    assert loop.delivery.held() and consumer.paused == {(IN, 0)}
    status, reason = readyz(loop)
    assert status == 503 and f"cannot deliver to topic {DLQ}: {name}" in reason, reason
    assert healthz(loop) == 200
    assert consumer.committed_offsets == {(IN, 0): 4}, "nothing past the held record is committed"
    consumer.append(IN, 0, *good(7))
    steps(loop, 100)
    assert producer.offered(to(DLQ)) == 1 and producer.offered(to(OUT, b"k7")) == 0, "neither spinning nor reading"
    for wait in (1.0, 2.0, 4.0):  # probes, backing off
        clock.advance(wait)
        steps(loop)
    assert producer.offered(to(DLQ)) == 4
    assert metric(loop, "kinfer_delivery_failures_total", topic=DLQ, error=name) == 4
    producer.heal()
    clock.advance(8.0)
    steps(loop, 5)
    assert not loop.delivery.held() and consumer.paused == set() and readyz(loop)[0] == 200
    finish(loop)
    assert [r.key for r in producer.delivered if r.topic == DLQ] == [b"k5"]
    assert consumer.committed_offsets == {(IN, 0): 8}


def test_a_stop_while_records_are_held_commits_what_came_before_them_without_waiting_out_the_grace() -> None:
    loop, consumer, producer, _ = clocked("atLeastOnce")
    producer.refuse(to(DLQ), KafkaError._UNKNOWN_TOPIC)
    consumer.append(IN, 0, *good(1, 2, 3, 4), b"{oops", *good(5))
    steps(loop, 3)
    assert loop.delivery.held()
    started = time.monotonic()
    finish(loop)
    assert time.monotonic() - started < 5, "the drain does not wait for a topic that refuses everything"
    assert consumer.committed_offsets == {(IN, 0): 4} and consumer.closed


@pytest.mark.parametrize("how", ["refuse", "fail"])
def test_exactly_once_aborts_and_holds_the_input_while_a_topic_refuses_everything(how: str) -> None:
    loop, consumer, producer, clock = clocked("exactlyOnce")
    getattr(producer, how)(to(DLQ), KafkaError._UNKNOWN_TOPIC)
    consumer.append(IN, 0, *good(1), b"{oops", *good(2))
    steps(loop, 3)
    assert loop.counters.transactions_aborted == 1 and not producer.committed_transactions
    assert loop.delivery.held() and consumer.paused == {(IN, 0)}
    assert readyz(loop)[0] == 503 and DLQ in readyz(loop)[1]
    steps(loop, 50)
    assert loop.counters.transactions_aborted == 1, "the transaction is not retried before the backoff"
    clock.advance(1.0)
    steps(loop, 3)
    assert loop.counters.transactions_aborted == 2 and loop.delivery.held(), "tried again, held again"
    clock.advance(1.0)
    steps(loop, 3)
    assert loop.counters.transactions_aborted == 2, "the backoff doubled"
    producer.heal()
    clock.advance(1.0)
    steps(loop, 3)
    finish(loop)
    assert not loop.state.delivery_held and consumer.paused == set()
    [committed] = producer.committed_transactions
    assert [(r.topic, r.key) for r in committed["records"]] == [(OUT, b"k0"), (OUT, b"k2"), (DLQ, b"k1")]


def test_exactly_once_names_the_topic_when_the_transaction_itself_is_refused() -> None:
    loop, consumer, producer, clock = clocked("exactlyOnce")
    # AddPartitionsToTxn for a deleted topic fails the transaction; no delivery report names the topic.
    producer.transaction_error = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "Failed to add partition(s) to "
                                            "transaction", txn_requires_abort=True)  # fmt: skip
    producer.missing_topics = {DLQ}
    consumer.append(IN, 0, *good(1), b"{oops")
    steps(loop, 3)
    assert loop.delivery.held() and f"cannot deliver to topic {DLQ}: UNKNOWN_TOPIC_OR_PART" in readyz(loop)[1]
    assert metric(loop, "kinfer_delivery_failures_total", topic=DLQ, error="UNKNOWN_TOPIC_OR_PART") == 1
    assert metric(loop, "kinfer_delivery_held", topic=DLQ) == 1
    producer.transaction_error, producer.missing_topics = None, set()
    clock.advance(1.0)
    steps(loop, 3)
    assert loop.state.delivery_held == "" and readyz(loop)[0] == 200
    finish(loop)
    assert len(producer.committed_transactions) == 1 and loop.counters.transactions_aborted == 1


def test_exactly_once_names_the_missing_topic_when_the_others_time_out_behind_it() -> None:
    loop, consumer, producer, _ = clocked("exactlyOnce")
    # The partitions of the transaction's other topics wait behind the refused one until their records time out.
    producer.fail(to(OUT), KafkaError._MSG_TIMED_OUT)
    producer.missing_topics = {DLQ}
    consumer.append(IN, 0, *good(1), b"{oops")
    steps(loop, 3)
    assert f"cannot deliver to topic {DLQ}: UNKNOWN_TOPIC_OR_PART" in readyz(loop)[1]


# --- what stays as it was ---------------------------------------------------------------------------------------


def test_a_fatal_delivery_error_still_stops_the_loop() -> None:
    loop, consumer, producer, _ = clocked("atLeastOnce")
    producer.failures.append((to(OUT), KafkaError(KafkaError._FATAL, fatal=True)))
    consumer.append(IN, 0, *good(1))
    with pytest.raises(KafkaException):
        steps(loop)


def test_smaller_dead_letters_step_down_and_stale_headers_of_a_replay_are_replaced() -> None:
    replayed = [("trace", b"t"), ("kinfer.truncated", b"value"), ("kinfer.original.size", b"9")]
    built = dead_letter_headers(replayed, topic="in", partition=0, offset=7, timestamp_ms=None,
                                failure=Failure("MalformedJson", "x"), pipeline="p", model_version=1)  # fmt: skip
    assert [k for k, _ in built if k.startswith(("kinfer.truncated", "kinfer.original"))] == []
    value = b"v" * (TRUNCATED_VALUE_BYTES + 1)
    first = smaller_dead_letter(value, built)
    assert first is not None and first[0] == value[:TRUNCATED_VALUE_BYTES] and ("trace", b"t") in first[1]
    second = smaller_dead_letter(*first)
    assert second is not None and second[0] == value[:MINIMAL_VALUE_BYTES]
    assert ("trace", b"t") not in second[1] and dict(second[1])["kinfer.original.size"] == str(len(value)).encode()
    assert dict(second[1])["kinfer.truncated"] == b"value,headers"
    assert smaller_dead_letter(*second) is None
    small = smaller_dead_letter(None, built)  # a small (here null) value: its headers must be what is too large
    assert small is not None and small[0] is None and dict(small[1])["kinfer.truncated"] == b"value,headers"
    assert dict(small[1])["kinfer.original.sha256"] == hashlib.sha256(b"").hexdigest().encode()


def pipeline_with(**spec: Any) -> Any:
    return parse_pipeline({
        "apiVersion": "kinfer.io/v1alpha1", "kind": "InferencePipeline", "metadata": {"name": "p"},
        "spec": {"kafka": {"bootstrapServers": "b:1", **spec.pop("kafka", {})},
                 "topics": {"input": {"name": "i"}, "output": {"name": "o"}, "deadLetter": {"name": "d"}},
                 "model": {"name": "m", "uri": "pvc://m/m"}, **spec},
    })  # fmt: skip


def test_the_producer_admits_what_max_record_bytes_admits() -> None:
    default = settings.producer_config(pipeline_with(), "b:1", settings.Credentials())
    assert default["message.max.bytes"] == 1_048_576 + settings.RECORD_OVERHEAD_ALLOWANCE
    larger = settings.producer_config(pipeline_with(preprocessing={"maxRecordBytes": 5_000_000}), "b:1",
                                      settings.Credentials())  # fmt: skip
    assert larger["message.max.bytes"] == 5_000_000 + settings.RECORD_OVERHEAD_ALLOWANCE
    small = settings.producer_config(pipeline_with(preprocessing={"maxRecordBytes": 4096}), "b:1",
                                     settings.Credentials())  # fmt: skip
    assert small["message.max.bytes"] == 1_000_000, "never below librdkafka's default"
    chosen = settings.producer_config(pipeline_with(kafka={"config": {"message.max.bytes": "2000000"}}), "b:1",
                                      settings.Credentials())  # fmt: skip
    assert chosen["message.max.bytes"] == "2000000", "the spec's kafka.config still wins"


def test_an_output_value_is_unchanged_when_nothing_fails() -> None:
    loop, consumer, producer, _ = clocked("atLeastOnce")
    consumer.append(IN, 0, *good(1))
    steps(loop)
    finish(loop)
    [output] = producer.delivered
    assert orjson.loads(output.value or b"")["prediction"] == {"y": 2.0}
    assert "kinfer.truncated" not in headers(output) and metric(loop, "kinfer_delivery_failures_total") == 0
