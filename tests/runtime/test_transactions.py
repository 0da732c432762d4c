"""Bookkeeping of a transaction that spans batches (pure): what a commit sends, where an abort rewinds to."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from kinfer_runtime.pipeline.commits import InFlightBatch, first_offsets
from kinfer_runtime.pipeline.exactly_once import TRANSACTION_MAX_S, OpenTransaction
from kinfer_runtime.pipeline.outgoing import BatchRecords, Outgoing


@dataclass
class FakeMessage:
    """The three accessors of ``confluent_kafka.Message`` that first_offsets reads."""

    _topic: str
    _partition: int
    _offset: int

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


def batch(next_offsets: dict[tuple[str, int], int], records: int) -> InFlightBatch:
    outgoing = [Outgoing("out", None, b"{}", []) for _ in range(records)]
    return InFlightBatch(0, next_offsets, BatchRecords.of(outgoing), np.empty(0), pending=records)


def test_first_offsets_are_the_first_consumed_per_partition() -> None:
    messages = [FakeMessage("in", 0, 10), FakeMessage("in", 1, 7), FakeMessage("in", 0, 11), FakeMessage("in", 1, 8)]
    assert first_offsets(messages) == {("in", 0): 10, ("in", 1): 7}


def test_a_transaction_commits_the_last_offsets_and_rewinds_to_the_first_of_all_its_batches() -> None:
    transaction = OpenTransaction(started=100.0)
    transaction.add({("in", 0): 10, ("in", 1): 7}, batch({("in", 0): 12, ("in", 1): 9}, records=4))
    transaction.add({("in", 0): 12, ("in", 2): 3}, batch({("in", 0): 20, ("in", 2): 5}, records=10))
    assert transaction.next_offsets == {("in", 0): 20, ("in", 1): 9, ("in", 2): 5}
    assert transaction.first_offsets == {("in", 0): 10, ("in", 1): 7, ("in", 2): 3}
    assert transaction.records == 14 and len(transaction.batches) == 2


def test_a_transaction_is_due_when_full_or_old() -> None:
    transaction = OpenTransaction(started=100.0)
    transaction.add({("in", 0): 0}, batch({("in", 0): 10}, records=10))
    assert not transaction.due(now=100.0, max_records=1024)
    assert transaction.due(now=100.0, max_records=10)
    assert not transaction.due(now=100.0 + TRANSACTION_MAX_S / 2, max_records=1024)
    assert transaction.due(now=100.0 + TRANSACTION_MAX_S * 1.01, max_records=1024)


class StoppedWhileProducing(Exception):
    pass


class ProducerStoppedMidBatch:
    """Stands in for the transactional producer: records the transaction calls; producing is interrupted."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, *_args: object, **_kwargs: object) -> None:
        raise StoppedWhileProducing

    def poll(self, *_args: object) -> int:
        return 0

    def send_offsets_to_transaction(self, *_args: object) -> None:
        self.calls.append("send_offsets")

    def commit_transaction(self, *_args: object) -> None:
        self.calls.append("commit")


def test_a_batch_interrupted_while_producing_is_never_committed() -> None:
    import threading

    from kinfer_runtime.observability.metrics import RuntimeMetrics
    from kinfer_runtime.pipeline.assemble import AssembledBatch
    from kinfer_runtime.pipeline.exactly_once import ExactlyOnce
    from kinfer_runtime.pipeline.tally import Tally

    producer = ProducerStoppedMidBatch()
    metrics = RuntimeMetrics("test", "eos")
    side = ExactlyOnce(None, producer, Tally(metrics), metrics, lambda _: None, lambda: None, threading.Event(), 256)
    assembled = AssembledBatch(BatchRecords.of([Outgoing("out", None, b"{}", [])]), {("in", 0): 11}, np.empty(0))
    with pytest.raises(StoppedWhileProducing):  # the stop goes on up to the loop
        side.submit([FakeMessage("in", 0, 10)], assembled)
    side.commit()  # what shutdown does
    assert producer.calls == ["begin"], "no offsets sent, no commit: the successor aborts the transaction"
