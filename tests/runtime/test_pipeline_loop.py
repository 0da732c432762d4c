"""The pipeline loop's ordering rules, with in-memory Kafka clients (tests/runtime/fake_kafka.py) and a stub model.

What is checked here is only the bookkeeping: at-least-once commits wait for every acknowledgement of a batch and
of all earlier ones, a revoke commits before the partitions go, a lost partition is never committed, and one
transaction spans consecutive batches. The same rules are checked end to end against a real broker in
tests/runtime/integration/.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import KafkaException

from kinfer_runtime.kafka.client_events import STRANDED_AFTER_S, ClientEvents
from kinfer_runtime.observability.health import LoopState, probe_result
from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.pipeline import at_least_once, exactly_once
from kinfer_runtime.pipeline.loop import PipelineLoop
from kinfer_runtime.pipeline.parts import LoopParts
from kinfer_runtime.predictors import PredictorUnavailable
from kinfer_runtime.spec import parse_pipeline
from tests.runtime.fake_kafka import FakeConsumer, FakeProducer, abortable_error

IN, OUT, DLQ = "in", "out", "dlq"


@dataclass
class StubEncoded:
    inputs: dict[str, np.ndarray]
    ok: list[int]
    failures: list[Any] = field(default_factory=list)


@dataclass
class StubFailure:
    index: int
    reason: str
    message: str


class StubPreprocessor:
    """``{"x": number}`` is a good record; anything else is dead-lettered as MalformedJson."""

    features: list[Any] = []  # no feature specs: no drift watched

    def feature_columns(self) -> list[tuple[str, str, int, int]]:
        return []

    def encode(self, values: Sequence[bytes | None]) -> StubEncoded:
        ok, xs, failures = [], [], []
        for i, value in enumerate(values):
            try:
                xs.append(float(orjson.loads(value or b"")["x"]))
                ok.append(i)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                failures.append(StubFailure(i, "MalformedJson", "not {x: number}"))
        return StubEncoded({"x": np.array(xs, dtype=np.float32)}, ok, failures)

    def encode_documents(self, docs: Sequence[dict[str, Any]]) -> StubEncoded:
        return self.encode([orjson.dumps(doc) for doc in docs])


@dataclass
class StubPrediction:
    outputs: dict[str, np.ndarray]
    model_version: int = 1


class StubPredictor:
    model_name = "stub"
    model_version = 1
    metadata = SimpleNamespace(features=[], training_statistics={}, labels=None)

    def __init__(self) -> None:
        self.unavailable = False

    def predict(self, inputs: dict[str, np.ndarray]) -> StubPrediction:
        if self.unavailable:
            raise PredictorUnavailable("model server down")
        return StubPrediction({"y": inputs["x"] * 2})

    def ready(self) -> bool:
        return not self.unavailable

    def maybe_reload(self) -> bool:
        return False

    def close(self) -> None:
        pass


def pipeline_loop(
    delivery: str, auto_ack: bool = True, predictor: StubPredictor | None = None
) -> tuple[PipelineLoop, FakeConsumer, FakeProducer]:
    pipeline = parse_pipeline(
        {
            "apiVersion": "kinfer.io/v1alpha1",
            "kind": "InferencePipeline",
            "metadata": {"name": "unit", "namespace": "test"},
            "spec": {
                "kafka": {"bootstrapServers": "unused:9092"},
                "topics": {"input": {"name": IN}, "output": {"name": OUT}, "deadLetter": {"name": DLQ}},
                "model": {"name": "stub", "uri": "pvc://models/stub"},
                "consumer": {"maxBatchSize": 4, "maxBatchWaitMs": 0, "delivery": delivery},
            },
        }
    )
    events: list[tuple[Any, ...]] = []
    consumer, producer = FakeConsumer(events), FakeProducer(events, auto_ack=auto_ack)
    parts = LoopParts(
        pipeline=pipeline,
        consumer_config={},
        producer_config={},
        predictor=predictor or StubPredictor(),
        make_preprocessor=lambda _metadata: StubPreprocessor(),
        encode_predictions=lambda prediction, _metadata: [
            orjson.dumps({"y": float(y)}) for y in prediction.outputs["y"]
        ],
        metrics=RuntimeMetrics("test", "unit"),
        state=LoopState(),
    )
    loop = PipelineLoop(parts, threading.Event(), consumer=consumer, producer=producer)
    loop.start()
    return loop, consumer, producer


def good(*xs: int) -> list[bytes]:
    return [orjson.dumps({"x": x}) for x in xs]


def commits(events: list[tuple[Any, ...]]) -> list[dict[tuple[str, int], int]]:
    return [event[1] for event in events if event[0] == "commit"]


def test_every_input_gives_one_record_and_bad_ones_go_to_the_dead_letter_topic() -> None:
    loop, consumer, producer = pipeline_loop("atLeastOnce")
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(1, 2), b"{oops", *good(3))
    for _ in range(3):
        loop.step()
    loop.stop.set()
    loop.close()
    outputs = [r for r in producer.delivered if r.topic == OUT]
    dead_letters = [r for r in producer.delivered if r.topic == DLQ]
    assert [orjson.loads(r.value or b"")["prediction"] for r in outputs] == [{"y": 2.0}, {"y": 4.0}, {"y": 6.0}]
    assert [r.value for r in dead_letters] == [b"{oops"], "the dead letter carries the original bytes"
    assert dict(dead_letters[0].headers)["kinfer.error.class"] == b"MalformedJson"
    assert consumer.committed_offsets == {(IN, 0): 4}
    assert loop.counters.records_out == 3 and loop.counters.dead_lettered == 1


def test_at_least_once_commits_only_what_is_acknowledged_in_order() -> None:
    loop, consumer, producer = pipeline_loop("atLeastOnce", auto_ack=False)
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(*range(8)))  # two batches of 4
    loop.step()
    loop.step()
    assert len(producer.pending) == 8 and not commits(producer.events)
    producer.acknowledge_where(lambda record: record.key in {b"k4", b"k5", b"k6", b"k7"})  # the second batch first
    loop.step()
    assert not commits(producer.events), "a later batch acknowledged first waits for the earlier one"
    producer.acknowledge()
    loop.step()
    loop.stop.set()
    loop.close()
    assert consumer.committed_offsets == {(IN, 0): 8}
    acked = max(i for i, e in enumerate(producer.events) if e[0] == "acked")
    first_commit = next(i for i, e in enumerate(producer.events) if e[0] == "commit")
    assert first_commit > acked, "no offset is committed before every output up to it is acknowledged"


def test_offsets_whose_commit_was_lost_in_a_rebalance_are_committed_again_while_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found on a real node: a pod drained a partition while the group waited for a scaled-in static member, every
    commit was refused, and the partition's committed offset stayed behind for good (its lag never reached zero,
    so the pipeline never scaled to zero and the partition was reported stuck)."""
    monkeypatch.setattr(at_least_once, "IDLE_RECOMMIT_S", 0.0)
    loop, consumer, _ = pipeline_loop("atLeastOnce")
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(1, 2, 3, 4))
    consumer.lose_async_commits = True
    for _ in range(3):
        loop.step()
    assert not consumer.committed_offsets and any(e[0] == "commit lost" for e in consumer.events)
    consumer.lose_async_commits = False  # the rebalance is over; no record arrives any more
    loop.step()
    assert consumer.committed_offsets == {(IN, 0): 4}


def test_with_the_window_full_the_next_batch_is_scored_and_waits_for_room_to_be_produced() -> None:
    """The in-flight window (four batches of 4 here) bounds what is produced and unacknowledged; one more batch is
    consumed and scored meanwhile, so its work overlaps the wait for an acknowledgement."""
    loop, consumer, producer = pipeline_loop("atLeastOnce", auto_ack=False)
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(*range(24)))  # six batches of 4
    for _ in range(6):
        loop.step()
    assert len(producer.pending) == 16, "never more than four batches produced and unacknowledged"
    assert consumer.positions[(IN, 0)] == 20, "the fifth batch is read while the window is full, the sixth is not"
    producer.acknowledge(4)  # the first batch
    loop.step()
    assert len(producer.pending) == 16, "room for one batch: the fifth is produced"
    assert [r.key for r, _ in producer.pending[-4:]] == [b"k16", b"k17", b"k18", b"k19"]
    assert consumer.positions[(IN, 0)] == 24, "and the sixth is read and scored, to wait in its turn"
    producer.auto_ack = True
    producer.acknowledge()
    loop.step()
    loop.stop.set()
    loop.close()
    assert consumer.committed_offsets == {(IN, 0): 24} and len(producer.delivered) == 24


def test_close_produces_the_batch_waiting_for_room_and_commits_it() -> None:
    loop, consumer, producer = pipeline_loop("atLeastOnce", auto_ack=False)
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(*range(20)))
    for _ in range(5):
        loop.step()
    assert len(producer.pending) == 16 and consumer.positions[(IN, 0)] == 20
    producer.auto_ack = True
    producer.acknowledge()
    loop.stop.set()
    loop.close()
    assert consumer.committed_offsets == {(IN, 0): 20} and len(producer.delivered) == 20


def test_a_failed_delivery_is_produced_again_before_its_offset_is_committed() -> None:
    loop, consumer, producer = pipeline_loop("atLeastOnce")
    producer.failures_left = 1
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(1, 2))
    loop.step()
    loop.step()
    loop.stop.set()
    loop.close()
    failed = [e for e in producer.events if e[0] == "failed"]
    assert len(failed) == 1
    assert [r.key for r in producer.delivered].count(failed[0][2]) == 1, "the failed record is delivered on retry"
    assert consumer.committed_offsets == {(IN, 0): 2} and loop.counters.redelivered == 1


def test_a_revoke_commits_what_was_produced_from_the_partitions_before_they_go() -> None:
    loop, consumer, producer = pipeline_loop("atLeastOnce")
    consumer.rebalance("assign", (IN, 0), (IN, 1))
    consumer.append(IN, 0, *good(1, 2))
    consumer.append(IN, 1, *good(3))
    loop.step()
    consumer.rebalance("revoke", (IN, 1))
    loop.step()
    kinds = [e[0] for e in producer.events]
    unassign = kinds.index("unassign")
    synchronous = [i for i, e in enumerate(producer.events) if e[0] == "commit" and e[2] is False]
    assert synchronous and synchronous[0] < unassign, "the revoked partition's offsets are committed first"
    assert producer.events[synchronous[0]][1] == {(IN, 1): 1}
    assert loop.assignment.owned() == {(IN, 0)}


def test_a_lost_partition_is_never_committed() -> None:
    loop, consumer, producer = pipeline_loop("atLeastOnce", auto_ack=False)
    consumer.rebalance("assign", (IN, 0), (IN, 1))
    consumer.append(IN, 0, *good(1))
    consumer.append(IN, 1, *good(2))
    loop.step()
    consumer.rebalance("lost", (IN, 1))
    loop.step()
    producer.acknowledge()  # the lost partition's output is acknowledged only after the loss
    loop.stop.set()
    loop.close()
    assert consumer.committed_offsets == {(IN, 0): 1}


def strand(events: ClientEvents | None) -> None:
    """What the client's statistics say when librdkafka has dropped its last broker, long enough ago."""
    assert events is not None
    events.no_broker_since = time.monotonic() - STRANDED_AFTER_S - 1


def test_a_consumer_that_knows_no_broker_is_replaced_and_reads_again_from_the_last_commit() -> None:
    loop, consumer, producer = pipeline_loop("atLeastOnce", auto_ack=False)
    replacement = FakeConsumer(producer.events, logs=consumer.logs)

    def new_consumer() -> FakeConsumer:
        loop.clients.consumer_events = ClientEvents("consumer", loop.state.kafka_problem)
        return replacement

    loop.clients._new_consumer = new_consumer  # type: ignore[method-assign]
    loop.clients.consumer_events = ClientEvents("consumer", loop.state.kafka_problem)
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(1, 2))
    loop.step()
    strand(loop.clients.consumer_events)
    loop.step()
    assert loop.consumer is replacement and ("subscribe", (IN,)) in replacement.events
    assert loop.assignment.owned() == set() and loop.state.assigned_partitions == 0
    producer.acknowledge()  # outputs of the old member's records: their offsets are no longer ours to commit
    loop.step()
    assert not commits(producer.events)
    replacement.rebalance("assign", (IN, 0))  # the static member gets its partition back
    loop.step()
    producer.acknowledge()
    loop.stop.set()
    loop.close()
    assert replacement.committed_offsets == {(IN, 0): 2} and consumer.committed_offsets == {}
    assert [r.key for r in producer.delivered if r.topic == OUT] == [b"k0", b"k1", b"k0", b"k1"], "read again"
    for _ in range(50):  # the old consumer is closed on a thread of its own
        if consumer.closed:
            break
        time.sleep(0.01)
    assert consumer.closed


def test_a_producer_that_knows_no_broker_is_replaced_and_its_records_are_produced_again() -> None:
    loop, consumer, producer = pipeline_loop("atLeastOnce", auto_ack=False)
    replacement = FakeProducer(producer.events)

    def new_producer() -> FakeProducer:
        loop.clients.producer_events = ClientEvents("producer", loop.state.kafka_problem)
        return replacement

    loop.clients._new_producer = new_producer  # type: ignore[method-assign]
    loop.clients.producer_events = ClientEvents("producer", loop.state.kafka_problem)
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(1, 2))
    loop.step()
    assert len(producer.pending) == 2
    strand(loop.clients.producer_events)
    loop.step()
    loop.step()
    loop.stop.set()
    loop.close()
    assert loop.producer is replacement and not producer.delivered
    assert [r.key for r in replacement.delivered if r.topic == OUT] == [b"k0", b"k1"]
    assert consumer.committed_offsets == {(IN, 0): 2}


def test_a_stranded_client_stops_an_exactly_once_pipeline() -> None:
    loop, _consumer, _producer = pipeline_loop("exactlyOnce")
    loop.clients.producer_events = ClientEvents("producer", loop.state.kafka_problem)
    strand(loop.clients.producer_events)
    with pytest.raises(KafkaException):
        loop.step()


def test_one_transaction_spans_consecutive_batches_with_the_offsets_of_all() -> None:
    loop, consumer, producer = pipeline_loop("exactlyOnce")
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(*range(6)))
    loop.step()
    loop.step()  # a second batch joins the open transaction: not yet due (few records, young)
    assert [e[0] for e in producer.events].count("begin") == 1
    loop.stop.set()
    loop.close()
    kinds = [e[0] for e in producer.events]
    assert kinds.count("begin") == 1 and kinds.count("commit_transaction") == 1
    sent = next(e for e in producer.events if e[0] == "send_offsets")
    assert sent[1] == {(IN, 0): 6}, "the commit carries the offsets after the last input of both batches"
    assert len(producer.committed_transactions[0]["records"]) == 6
    assert not commits(producer.events), "exactly-once never commits through the consumer"


def test_an_abortable_error_aborts_the_transaction_and_reads_its_inputs_again() -> None:
    loop, consumer, producer = pipeline_loop("exactlyOnce")
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(*range(3)))
    loop.step()
    producer.transaction_error = abortable_error()
    assert isinstance(loop.delivery, exactly_once.ExactlyOnce)
    loop.delivery.commit()
    assert ("seek", (IN, 0), 0) in producer.events
    assert loop.counters.transactions_aborted == 1 and not producer.committed_transactions
    producer.transaction_error = None
    loop.step()  # the same three records again, in a new transaction
    loop.stop.set()
    loop.close()
    assert len(producer.committed_transactions) == 1
    assert [r.key for r in producer.committed_transactions[0]["records"]] == [b"k0", b"k1", b"k2"]


def test_an_unavailable_predictor_holds_the_batch_and_pauses_until_it_is_back() -> None:
    loop, consumer, producer = pipeline_loop("atLeastOnce")
    predictor = loop.parts.predictor
    assert isinstance(predictor, StubPredictor)
    predictor.unavailable = True
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(1, 2))
    loop.step()
    assert loop.held is not None and consumer.paused == {(IN, 0)} and not producer.delivered
    predictor.unavailable = False
    while loop.held is not None:
        loop.step()
    loop.stop.set()
    loop.close()
    assert consumer.paused == set() and len(producer.delivered) == 2 and consumer.committed_offsets == {(IN, 0): 2}


def test_a_model_server_that_answers_only_after_the_start_makes_the_pod_ready() -> None:
    """tfserving mode: TF Serving not answering when the loop starts (not ready), answering later."""
    down = StubPredictor()
    down.unavailable = True
    loop, consumer, producer = pipeline_loop("atLeastOnce", predictor=down)
    consumer.rebalance("assign", (IN, 0))
    assert probe_result("/readyz", loop.state, time.monotonic())[0] == 503
    down.unavailable = False
    consumer.append(IN, 0, *good(1, 2))
    loop.step()
    assert len(producer.delivered) == 2
    assert probe_result("/readyz", loop.state, time.monotonic()) == (200, "ok\n")


@pytest.mark.parametrize("delivery", ["atLeastOnce", "exactlyOnce"])
def test_close_delivers_and_commits_everything_in_hand(delivery: str) -> None:
    loop, consumer, producer = pipeline_loop(delivery)
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(1, 2, 3))
    loop.step()
    loop.stop.set()
    loop.close()
    assert consumer.closed and len(producer.delivered) == 3
    if delivery == "atLeastOnce":
        assert consumer.committed_offsets == {(IN, 0): 3}
    else:
        assert len(producer.committed_transactions) == 1
