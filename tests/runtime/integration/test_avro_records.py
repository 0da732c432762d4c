"""Avro records through ``kinfer produce FILE.avro``, ``kinfer run`` and a real broker: fraud transactions sent
with Confluent's framing are scored exactly as the same transactions sent as JSON (``kinfer score`` on a JSONL
file of them: the JSON path); each kind of unreadable value is dead-lettered with its original bytes and its
reason, and nothing is lost.

No schema registry runs in the tests (the registry lookup is not implemented), so the schema comes from the spec
and the framing's schema id is checked against ``avro.schemaId``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import orjson
import yaml
from fastavro import parse_schema, schemaless_writer, writer

from kinfer_runtime.tools import produce as produce_tool
from kinfer_runtime.tools import score
from kinfer_runtime.tools.synthetic import FRAUD_TRANSACTION_AVRO_SCHEMA, fraud_transactions
from tests.runtime.integration.format_runs import dead_letter_reasons, score_once
from tests.runtime.integration.harness import FRAUD_MODEL, create_topics, manifest, produce

GOOD, SCHEMA_ID = 600, 42


def framed(record: dict[str, object], schema_id: int = SCHEMA_ID) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(FRAUD_TRANSACTION_AVRO_SCHEMA), record)
    return b"\x00" + schema_id.to_bytes(4, "big") + buffer.getvalue()


def test_avro_records_score_as_their_json_and_unreadable_ones_are_dead_lettered_unchanged(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    records, _ = fraud_transactions(GOOD, seed=21)
    bad = {
        b"bad-WrongFraming": orjson.dumps(records[0]),
        b"bad-UnknownSchema": framed(records[1], schema_id=SCHEMA_ID + 1),
        b"bad-MalformedAvro": framed(records[2])[:-4],
        b"bad-MissingField": framed(dict(records[3], amount=None)),
    }
    topics = create_topics(kafka_bootstrap, partitions=2, prefix="avro")
    avro = {"writerSchema": json.dumps(FRAUD_TRANSACTION_AVRO_SCHEMA), "schemaId": SCHEMA_ID}
    pipeline = manifest("avro", kafka_bootstrap, topics, preprocessing={"format": "avro", "avro": avro})
    # The good records as a producer with an Avro file would send them: kinfer produce frames them with the
    # pipeline's schema id; the bad ones are sent as they are.
    (tmp_path / "avro.yaml").write_text(yaml.safe_dump(pipeline))
    with (tmp_path / "transactions.avro").open("wb") as stream:
        writer(stream, parse_schema(FRAUD_TRANSACTION_AVRO_SCHEMA), records)
    produce(kafka_bootstrap, topics.input, list(bad.items()))
    sent = [str(tmp_path / "transactions.avro"), "--pipeline", str(tmp_path / "avro.yaml"), "--key-field",
            "transaction_id", "--bootstrap-servers", kafka_bootstrap, "--no-progress"]  # fmt: skip
    assert produce_tool.main(sent) == 0
    reader = score_once(pipeline, tmp_path, kafka_bootstrap, FRAUD_MODEL, topics, GOOD, dead_letters=len(bad))
    for key, reason in dead_letter_reasons(reader, topics.dead_letter, bad).items():
        assert key == f"bad-{reason}".encode(), (key, reason)
    live = {m.key(): orjson.loads(m.value())["prediction"] for m in reader.seen[topics.output].messages}
    assert set(live) == {r["transaction_id"].encode() for r in records}

    # The JSON path on the same transactions: kinfer score on a JSONL file, with the pipeline's JSON twin.
    as_json = dict(pipeline, spec=dict(pipeline["spec"]))
    del as_json["spec"]["preprocessing"]
    (tmp_path / "json.yaml").write_text(yaml.safe_dump(as_json))
    (tmp_path / "records.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    args = [str(tmp_path / "json.yaml"), "--no-progress", "--input", str(tmp_path / "records.jsonl"),
            "--output", str(tmp_path / "scores.jsonl"), "--model-path", str(FRAUD_MODEL)]  # fmt: skip
    assert score.main(args) == 0
    offline = [orjson.loads(line)["prediction"] for line in (tmp_path / "scores.jsonl").read_bytes().splitlines()]
    assert [live[r["transaction_id"].encode()] for r in records] == offline
