"""Output and dead-letter records as they go on the wire (README.md, "What comes out"), and batch assembly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest

from kinfer_runtime.pipeline.assemble import assemble_batch
from kinfer_runtime.pipeline.consumed import next_offsets
from kinfer_runtime.records.dead_letter import Failure, dead_letter_headers, previous_attempts
from kinfer_runtime.records.output import BatchContext, output_headers, output_value

CONTEXT = BatchContext("fraud", "fraud", 3, "transactions", preprocess_ms=1.5, predict_ms=2.25)


@dataclass
class FakeMessage:
    """Stands in for confluent_kafka.Message (which can't be constructed with content from Python)."""

    _partition: int
    _offset: int
    _value: bytes | None = b"{}"
    _key: bytes | None = b"k"
    _headers: list[tuple[str, bytes]] | None = None
    _timestamp: tuple[int, int] = (1, 1_000_000)

    def topic(self) -> str:
        return "transactions"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


def test_output_value_has_prediction_model_source_and_timings() -> None:
    value = orjson.loads(output_value({"fraud_probability": 0.25}, CONTEXT, 2, 41, 1_000, now_ms=1_012))
    assert value == {
        "prediction": {"fraud_probability": 0.25},
        "model": {"name": "fraud", "version": 3},
        "source": {"topic": "transactions", "partition": 2, "offset": 41, "timestamp_ms": 1_000},
        "timings_ms": {"preprocess": 1.5, "predict": 2.25, "end_to_end": 12},
    }
    no_timestamp = orjson.loads(output_value({}, CONTEXT, 0, 0, None, now_ms=5))
    assert no_timestamp["timings_ms"]["end_to_end"] is None and no_timestamp["source"]["timestamp_ms"] is None
    # Names that need JSON escaping or hold "%" still make valid JSON (the encoder is a bytes %-template).
    odd = BatchContext('p"%s', 'm"%d', 1, "t%", 0.0, 0.0)
    assert orjson.loads(output_value({"x": "%s"}, odd, 0, 1, 2, 3))["model"]["name"] == 'm"%d'


def test_output_headers_keep_the_inputs_and_replace_stale_kinfer_ones() -> None:
    incoming = [("trace", b"t1"), ("kinfer.model.version", b"1"), ("kinfer.attempt", b"2")]
    headers = output_headers(CONTEXT.shared_headers(), incoming, 2, 41)
    assert headers[:2] == [("trace", b"t1"), ("kinfer.attempt", b"2")]
    as_dict = dict(headers)
    assert as_dict["kinfer.model.version"] == b"3" and as_dict["kinfer.model.name"] == b"fraud"
    assert (as_dict["kinfer.source.partition"], as_dict["kinfer.source.offset"]) == (b"2", b"41")
    assert as_dict["kinfer.source.topic"] == b"transactions" and as_dict["kinfer.pipeline"] == b"fraud"
    assert [k for k, _ in headers].count("kinfer.model.version") == 1


def test_dead_letter_headers_count_attempts_and_replace_stale_context() -> None:
    replayed = [
        ("trace", b"t"),
        ("kinfer.attempt", b"2"),
        ("kinfer.error.class", b"Old"),
        ("kinfer.replayed-from", b"d:0:1"),
    ]
    assert previous_attempts(replayed) == 2 and previous_attempts(None) == 0
    assert previous_attempts([("kinfer.attempt", b"junk")]) == 0
    headers = dead_letter_headers(
        replayed, topic="transactions", partition=1, offset=7, timestamp_ms=None,
        failure=Failure("MalformedJson", "bad " * 600), pipeline="fraud", model_version=3,
    )  # fmt: skip
    as_dict = dict(headers)
    assert [k for k, _ in headers].count("kinfer.error.class") == 1
    assert as_dict["kinfer.error.class"] == b"MalformedJson" and len(as_dict["kinfer.error.message"]) == 1000
    assert as_dict["kinfer.attempt"] == b"3" and as_dict["trace"] == b"t"
    assert as_dict["kinfer.replayed-from"] == b"d:0:1"
    assert (as_dict["kinfer.source.partition"], as_dict["kinfer.source.offset"]) == (b"1", b"7")
    assert as_dict["kinfer.source.timestamp"] == b"-1" and as_dict["kinfer.model.version"] == b"3"
    first = dict(dead_letter_headers(None, topic="t", partition=0, offset=0, timestamp_ms=5,
                                     failure=Failure("EmptyValue", ""), pipeline="p", model_version=None))  # fmt: skip
    assert first["kinfer.attempt"] == b"1" and first["kinfer.source.timestamp"] == b"5"


def test_every_input_becomes_exactly_one_output_or_dead_letter() -> None:
    messages = [FakeMessage(0, 10), FakeMessage(1, 5, b"{bad", b"k2", [("h", b"v")]), FakeMessage(0, 11, None, None)]
    batch = assemble_batch(
        messages, [0], [b'{"p":0.5}'], [(1, Failure("MalformedJson", "x")), (2, Failure("EmptyValue", "y"))], CONTEXT,
        output_topic="out", dead_letter_topic="dlq", now_ms=1_000_100.0,
    )  # fmt: skip
    assert [(r.topic, r.key, r.reason) for r in batch.records] == [
        ("out", b"k", None), ("dlq", b"k2", "MalformedJson"), ("dlq", None, "EmptyValue"),
    ]  # fmt: skip
    assert batch.records[1].value == b"{bad" and batch.records[2].value is None
    assert ("h", b"v") in batch.records[1].headers
    assert batch.next_offsets == {("transactions", 0): 12, ("transactions", 1): 6}
    assert np.allclose(batch.output_timestamps_s, [1000.0])
    assert orjson.loads(batch.records[0].value or b"")["timings_ms"]["end_to_end"] == 100
    assert orjson.loads(batch.records[0].value or b"")["prediction"] == {"p": 0.5}


def test_assembly_refuses_a_batch_that_does_not_add_up() -> None:
    messages = [FakeMessage(0, 1), FakeMessage(0, 2)]
    with pytest.raises(ValueError, match="consumed"):
        assemble_batch(messages, [0], [b"{}"], [], CONTEXT, output_topic="o", dead_letter_topic="d", now_ms=0)
    with pytest.raises(ValueError, match="rows"):
        assemble_batch(messages, [0, 1], [b"{}"], [], CONTEXT, output_topic="o", dead_letter_topic="d", now_ms=0)


def test_next_offsets_take_the_highest_per_partition_and_ignore_missing_timestamps() -> None:
    assert next_offsets([FakeMessage(2, 9), FakeMessage(2, 3), FakeMessage(0, 0)]) == {
        ("transactions", 2): 10, ("transactions", 0): 1,
    }  # fmt: skip
    batch = assemble_batch([FakeMessage(0, 1, _timestamp=(0, -1))], [0], [b"{}"], [], CONTEXT,
                           output_topic="o", dead_letter_topic="d", now_ms=0)  # fmt: skip
    assert batch.output_timestamps_s.size == 0


def test_a_batch_of_real_messages_gets_the_values_and_headers_output_value_and_output_headers_describe() -> None:
    """The batch path (pipeline/assemble.py builds a usual batch with C-level maps, prediction fields spliced into
    the value template) against the per-record description, for messages of confluent_kafka's own class: timed
    and not, with and without headers of their own, the predictions as bytes and as EncodedPredictions."""
    from confluent_kafka import Message

    from kinfer_runtime.records.predictions import EncodedPredictions

    def message(partition: int, offset: int, stamp: tuple[int, int] = (1, 1_000_000), headers: Any = None) -> Any:
        return Message(topic="transactions", partition=partition, offset=offset, key=b"k%d" % offset, value=b"{}",
                       headers=headers, timestamp=stamp)  # fmt: skip

    usual = [message(i % 3, 100 + i) for i in range(7)]
    unusual = [message(0, 1), message(1, 2, (0, -1)), message(2, 3, headers=[("kinfer.pipeline", b"x"), ("h", b"v")])]
    columns = [[orjson.dumps(p) for p in (0.25, 0.5, 1e-05, 0.75, 1.0, 0.0, 0.125)], [b'"fraud%"'] * 7]
    encoded = EncodedPredictions(b'{"p":%b,"label":%b}', columns)
    for messages, predictions in ((usual, encoded), (usual, list(encoded)), (unusual, list(encoded)[:3])):
        batch = assemble_batch(messages, list(range(len(messages))), predictions, [], CONTEXT, output_topic="o",
                               dead_letter_topic="d", now_ms=1_000_250.0)  # fmt: skip
        shared = CONTEXT.shared_headers()
        for record, m, prediction in zip(batch.records, messages, predictions, strict=True):
            kind, stamp = m.timestamp()
            timestamp = stamp if kind and stamp > 0 else None
            value = output_value(orjson.loads(prediction), CONTEXT, m.partition(), m.offset(), timestamp, 1_000_250)
            assert record.value == value and orjson.loads(record.value)["prediction"] == orjson.loads(prediction)
            assert record.headers == output_headers(shared, m.headers(), m.partition(), m.offset())
            assert (record.topic, record.key, record.reason, record.shadow) == ("o", m.key(), None, False)


def test_next_offsets_of_a_batch_whose_offsets_go_back_within_a_partition() -> None:
    batch = assemble_batch([FakeMessage(2, 9), FakeMessage(2, 3), FakeMessage(0, 4)], [0, 1, 2], [b"{}"] * 3, [],
                           CONTEXT, output_topic="o", dead_letter_topic="d", now_ms=0)  # fmt: skip
    assert batch.next_offsets == {("transactions", 2): 10, ("transactions", 0): 5}
