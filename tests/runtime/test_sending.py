"""Handing a batch's records to the producer (pipeline/sending.py): every record once, in order, with its own
delivery callback, through a full queue and past records ``produce`` refuses."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException

from kinfer_runtime.pipeline import sending
from kinfer_runtime.pipeline.commits import InFlightBatch
from kinfer_runtime.pipeline.outgoing import BatchRecords, Outgoing
from kinfer_runtime.pipeline.sending import PipelineStopped, produce_records


class Producer:
    """Takes ``produce`` calls with confluent_kafka.Producer's positional parameters; ``full`` lists the calls
    (by number) that find the queue full, ``refuse`` the values it refuses at once."""

    def __init__(self, full: set[int] = frozenset(), refuse: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
        self.full, self.refuse = set(full), set(refuse)
        self.calls = 0
        self.taken: list[tuple[str, Any, Any, Any]] = []
        self.callbacks: list[Any] = []
        self.polls = 0

    def produce(self, topic: str, value: Any = None, key: Any = None, partition: int = -1, callback: Any = None,
                on_delivery: Any = None, timestamp: int = 0, headers: Any = None) -> None:  # fmt: skip
        self.calls += 1
        if self.calls in self.full:
            raise BufferError("Local: Queue full")
        if value in self.refuse:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))
        assert partition == -1 and timestamp == 0 and on_delivery is None
        self.taken.append((topic, key, value, headers))
        self.callbacks.append(callback)

    def poll(self, _timeout: float = 0) -> int:
        self.polls += 1
        return 0


def batch_of(count: int) -> InFlightBatch:
    records = [Outgoing("out", b"k%d" % i, b"v%d" % i, [("h", b"%d" % i)]) for i in range(count)]
    return InFlightBatch(1, {}, BatchRecords.of(records), np.empty(0), pending=count)


def test_every_record_is_produced_once_in_order_with_its_own_callback_through_a_full_queue() -> None:
    batch, producer = batch_of(10), Producer(full={3, 4, 9})
    refused = produce_records(producer, batch, range(10), lambda: None, threading.Event())
    assert refused == []
    assert producer.taken == [("out", b"k%d" % i, b"v%d" % i, [("h", b"%d" % i)]) for i in range(10)]
    assert producer.polls >= 3  # the queue was served while full
    for callback in reversed(producer.callbacks):  # reports in any order: each acknowledges its own record
        callback(None, None)
    assert batch.pending == 0 and batch.acked_outputs == 10


def test_a_refused_record_is_returned_and_the_records_after_it_are_produced() -> None:
    batch, producer = batch_of(6), Producer(refuse={b"v2", b"v5"})
    refused = produce_records(producer, batch, range(6), lambda: None, threading.Event())
    assert [index for index, _ in refused] == [2, 5]
    assert refused[0][1].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert [value for _, _, value, _ in producer.taken] == [b"v0", b"v1", b"v3", b"v4"]
    producer.callbacks[2](KafkaError(KafkaError._MSG_TIMED_OUT), None)  # the report of v3
    assert batch.failed == [3]


def test_some_records_again_in_the_order_given() -> None:
    batch, producer = batch_of(6), Producer(full={1})
    produce_records(producer, batch, [4, 1], lambda: None, threading.Event())
    assert [value for _, _, value, _ in producer.taken] == [b"v4", b"v1"]
    producer.callbacks[0](KafkaError(KafkaError._MSG_TIMED_OUT), None)
    assert batch.failed == [4]


def test_a_stop_ends_the_wait_for_a_queue_that_stays_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sending, "STOPPED_QUEUE_FULL_S", 0.1)
    stop = threading.Event()
    stop.set()
    producer = Producer(full=set(range(2, 10**6)))
    with pytest.raises(PipelineStopped):
        produce_records(producer, batch_of(3), range(3), lambda: None, stop)
    assert len(producer.taken) == 1
