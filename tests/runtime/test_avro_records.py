"""Avro records (``spec.preprocessing.format: avro``): Confluent-framed or bare Avro bodies give the model the
same inputs as the same records sent as JSON; every value that cannot be read is left out with its reason."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import orjson
import pytest
from fastavro import parse_schema, schemaless_writer

from kinfer_runtime.preprocess.avro_records import AvroPreprocessor
from kinfer_runtime.spec import SpecError
from kinfer_runtime.tools.synthetic import FRAUD_TRANSACTION_AVRO_SCHEMA, fraud_transactions
from tests.runtime.example_pipelines import example_pipeline, example_preprocessor

SCHEMA = parse_schema(FRAUD_TRANSACTION_AVRO_SCHEMA)


def avro_preprocessor(**avro: Any) -> AvroPreprocessor:
    spec = {"format": "avro", "avro": {"writerSchema": json.dumps(FRAUD_TRANSACTION_AVRO_SCHEMA), **avro}}
    built = example_preprocessor("fraud", 1, spec)
    assert isinstance(built, AvroPreprocessor)
    return built


def body(record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, SCHEMA, record)
    return buffer.getvalue()


def framed(record: dict[str, Any], schema_id: int = 7) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body(record)


def test_avro_records_give_the_inputs_their_json_gives() -> None:
    records, _ = fraud_transactions(300, seed=4)
    from_json = example_preprocessor("fraud", 1, {}).encode([orjson.dumps(r) for r in records])
    for preprocessor, values in (
        (avro_preprocessor(), [framed(r) for r in records]),
        (avro_preprocessor(framing="none"), [body(r) for r in records]),
    ):
        encoded = preprocessor.encode(values)
        assert encoded.ok == list(range(300)) and encoded.failures == []
        assert encoded.inputs.keys() == from_json.inputs.keys()
        for name in encoded.inputs:
            assert np.array_equal(encoded.inputs[name], from_json.inputs[name]), name
        assert encoded.decoded([0])[0]["card_id"] == records[0]["card_id"]  # for a candidate version, as JSON's


def test_every_unreadable_value_is_left_out_with_its_reason() -> None:
    records, _ = fraud_transactions(8, seed=9)
    good = framed(records[0])
    values: list[bytes | None] = [
        good,  # 0
        orjson.dumps(records[1]),  # 1 JSON, not Avro
        b"\x00\x00\x00",  # 2 shorter than the frame
        framed(records[3], schema_id=8),  # 3 another schema id
        framed(records[4])[:-3],  # 4 truncated body
        framed(records[5]) + b"\x02\x04",  # 5 bytes left over
        framed(dict(records[6], amount=None)),  # 6 a null amount: the model requires it
        b"",  # 7
    ]
    encoded = avro_preprocessor(schemaId=7).encode(values)
    assert encoded.ok == [0]
    reasons = {failure.index: failure.reason.value for failure in encoded.failures}
    assert reasons == {1: "WrongFraming", 2: "WrongFraming", 3: "UnknownSchema", 4: "MalformedAvro",
                       5: "MalformedAvro", 6: "MissingField", 7: "EmptyValue"}  # fmt: skip
    assert "schema id 8" in next(f.message for f in encoded.failures if f.index == 3)
    assert avro_preprocessor().encode([values[3]]).ok == [0]  # without schemaId any id is read


def test_an_avro_spec_that_cannot_work_is_refused_with_what_to_fix() -> None:
    with pytest.raises(SpecError, match="not a valid Avro schema"):
        example_pipeline(
            "fraud", {"format": "avro", "avro": {"writerSchema": '{"type": "record", "name": "T", "fields": 3}'}}
        )
    with pytest.raises(SpecError, match="must be a record schema"):
        example_pipeline("fraud", {"format": "avro", "avro": {"writerSchema": '"string"'}})
    with pytest.raises(SpecError, match="go together"):
        example_pipeline("fraud", {"format": "avro"})
