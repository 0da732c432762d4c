"""Unit tests of the pure parts of ``kinfer produce``: pacing, readers, progress lines, settings."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kinfer_runtime.tools.produce import ProduceSummary, TokenBucket
from kinfer_runtime.tools.progress import ProgressBar, format_progress
from kinfer_runtime.tools.sources import (
    coerce_csv_cell,
    count_lines,
    detect_format,
    read_records,
    records_from_jsonl,
    rows_from_csv,
)
from kinfer_runtime.tools.targets import client_config, parse_settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_paces_to_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=100, burst=10, clock=clock)
    assert [bucket.take() for _ in range(10)] == [0.0] * 10
    # The 11th record is one token short: it must wait 1/rate seconds.
    assert bucket.take() == pytest.approx(0.01)
    clock.now += 0.01
    assert bucket.take() == pytest.approx(0.01)
    # After a long pause the bucket refills only up to its burst, so a pause never buys a flood.
    clock.now += 60
    assert [bucket.take() for _ in range(10)] == [0.0] * 10
    assert bucket.take() > 0


def test_token_bucket_sustained_rate_matches_target() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=500, clock=clock)
    for _ in range(5000):
        clock.now += bucket.take()
    # 5,000 records at 500/s take 10 s minus the initial burst (500/20 = 25 records).
    assert clock.now - 100.0 == pytest.approx((5000 - 25) / 500, rel=1e-6)


def test_token_bucket_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0)


def test_detect_format() -> None:
    assert detect_format("x/records.jsonl") == "jsonl"
    assert detect_format("records.NDJSON") == "jsonl"
    assert detect_format("a.csv") == "csv"
    assert detect_format("a.parquet") == "parquet"
    assert detect_format("windows.npy") == "npy"
    assert detect_format("-") == "jsonl"
    assert detect_format("data.txt", "csv") == "csv"
    with pytest.raises(ValueError, match="--format"):
        detect_format("data.txt")
    with pytest.raises(ValueError, match="unknown format"):
        detect_format("a.csv", "xml")


def test_jsonl_lines_are_sent_verbatim_with_keys_when_present() -> None:
    data = b'{"id": "a", "x": 1}\r\n\n  \nnot json\n{"id": 7}\n[1, 2]\n{"x": 2}'
    records = list(records_from_jsonl(io.BytesIO(data), key_field="id"))
    assert [r.value for r in records] == [b'{"id": "a", "x": 1}', b"not json", b'{"id": 7}', b"[1, 2]", b'{"x": 2}']
    assert [r.key for r in records] == [b"a", None, b"7", None, None]


def test_csv_cells_become_typed_json_values() -> None:
    assert coerce_csv_cell("12") == 12
    assert coerce_csv_cell("-1.5e3") == -1500.0
    assert coerce_csv_cell("TRUE") is True
    assert coerce_csv_cell("false") is False
    assert coerce_csv_cell("DE") == "DE"
    assert coerce_csv_cell("") is None
    rows = list(rows_from_csv(io.BytesIO(b'id,amount,country,note\nc1,12.5,DE,\nc2,3,"F,R",x\n')))
    assert rows == [
        {"id": "c1", "amount": 12.5, "country": "DE"},
        {"id": "c2", "amount": 3, "country": "F,R", "note": "x"},
    ]


def test_read_records_from_csv_and_parquet_files(tmp_path: Path) -> None:
    csv_path = tmp_path / "r.csv"
    csv_path.write_text("id,amount\nc1,1.5\nc2,2\n")
    records = list(read_records(str(csv_path), "csv", key_field="id"))
    assert [(r.key, orjson.loads(r.value or b"")) for r in records] == [
        (b"c1", {"id": "c1", "amount": 1.5}),
        (b"c2", {"id": "c2", "amount": 2}),
    ]
    assert count_lines(str(csv_path), "csv") == 2

    parquet_path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"id": ["p1", "p2", "p3"], "amount": [1.0, None, 3.5]}), parquet_path)
    records = list(read_records(str(parquet_path), "parquet", key_field="id"))
    assert [orjson.loads(r.value or b"") for r in records] == [
        {"id": "p1", "amount": 1.0},
        {"id": "p2"},
        {"id": "p3", "amount": 3.5},
    ]
    assert [r.key for r in records] == [b"p1", b"p2", b"p3"]
    assert count_lines(str(parquet_path), "parquet") == 3
    with pytest.raises(ValueError, match="stdin"):
        list(read_records("-", "parquet"))


def test_a_npy_file_gives_one_raw_little_endian_tensor_record_per_example(tmp_path: Path) -> None:
    path = tmp_path / "windows.npy"
    windows = np.arange(5 * 32 * 3, dtype=">f4").reshape(5, 32, 3)  # big-endian on disk: sent little-endian
    np.save(path, windows, allow_pickle=False)
    records = list(read_records(str(path), "npy"))
    assert [r.key for r in records] == [None] * 5 and count_lines(str(path), "npy") == 5
    sent = np.stack([np.frombuffer(r.value or b"", dtype="<f4").reshape(32, 3) for r in records])
    assert np.array_equal(sent, windows)
    with pytest.raises(ValueError, match="no fields"):
        list(read_records(str(path), "npy", key_field="id"))
    with pytest.raises(ValueError, match="stdin"):
        list(read_records("-", "npy"))


def test_a_folder_of_images_gives_one_record_per_image_file_keyed_by_name(tmp_path: Path) -> None:
    (tmp_path / "b.png").write_bytes(b"\x89PNG second")
    (tmp_path / "a.JPG").write_bytes(b"\xff\xd8 first")
    (tmp_path / "notes.txt").write_text("not an image")
    assert detect_format(str(tmp_path)) == "images" and count_lines(str(tmp_path), "images") == 2
    records = list(read_records(str(tmp_path), "images"))
    assert [(r.key, r.value) for r in records] == [(b"a.JPG", b"\xff\xd8 first"), (b"b.png", b"\x89PNG second")]


def test_an_avro_file_gives_its_records_framed_or_bare(tmp_path: Path) -> None:
    from fastavro import parse_schema, schemaless_reader, writer

    from kinfer_runtime.tools.synthetic import FRAUD_TRANSACTION_AVRO_SCHEMA, fraud_transactions

    path = tmp_path / "transactions.avro"
    records, _ = fraud_transactions(3, seed=8)
    with path.open("wb") as stream:
        writer(stream, parse_schema(FRAUD_TRANSACTION_AVRO_SCHEMA), records)
    assert detect_format(str(path)) == "avro" and count_lines(str(path), "avro") == 3
    framed = list(read_records(str(path), "avro", key_field="card_id", schema_id=42))
    assert [r.key for r in framed] == [r["card_id"].encode() for r in records]
    schema = parse_schema(FRAUD_TRANSACTION_AVRO_SCHEMA)
    for sent, record in zip(framed, records, strict=True):
        assert (sent.value or b"")[:5] == b"\x00\x00\x00\x00\x2a"
        assert schemaless_reader(io.BytesIO((sent.value or b"")[5:]), schema, None) == record
    bare = list(read_records(str(path), "avro"))
    assert [r.value for r in bare] == [(r.value or b"")[5:] for r in framed] and bare[0].key is None


def test_format_progress() -> None:
    assert format_progress("send", 50, 200, 2.0) == "send [######..................]  25.0% 50/200 25/s"
    assert format_progress("send", 1_500_000, None, 1.0, "acked 3") == "send 1.50M 1.50M/s acked 3"
    assert format_progress("send", 0, None, 0.0) == "send 0 0/s"


def test_progress_bar_on_a_pipe_prints_plain_lines_rarely() -> None:
    clock = FakeClock()
    out = io.StringIO()
    bar = ProgressBar("x", total=10, stream=out, clock=clock)
    bar.update(1)
    clock.now += 1
    bar.update(2)
    assert out.getvalue() == ""  # not a terminal: at most one line per 5 s
    clock.now += 5
    bar.update(3)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "3/10" in lines[-1] and "\r" not in out.getvalue()


def test_summary_counts_unacknowledged_records_as_not_ok() -> None:
    summary = ProduceSummary(sent=10, delivered=7, failed=1, elapsed_s=2.0)
    summary.errors["Local: Message timed out"] += 1
    assert summary.unacknowledged == 2 and not summary.ok
    assert summary.rate == 3.5
    text = summary.describe()
    assert "delivered 7" in text and "unacknowledged 2" in text and "1 x Local: Message timed out" in text
    assert ProduceSummary(sent=3, delivered=3, elapsed_s=1).ok


def test_client_config_precedence() -> None:
    assert parse_settings(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ValueError):
        parse_settings(["novalue"])
    config = client_config("h:1", {"acks": "1", "linger.ms": "50"}, ["acks=all"], {"linger.ms": "5", "x": "y"})
    assert config == {"bootstrap.servers": "h:1", "acks": "all", "linger.ms": "50", "x": "y"}


def test_pipeline_settings_and_target_come_from_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from kinfer_runtime.tools.targets import load_pipeline_file, pipeline_client_config, resolve_target
    from tests.ingestion.pipelines import pipeline_manifest, write_pipeline

    topics = {"input": "in", "output": "out", "deadLetter": "dlq"}
    path = write_pipeline(
        tmp_path / "p.yaml",
        pipeline_manifest(
            "p", "broker:9092", topics, kafka={"bootstrapServers": "broker:9092", "config": {"linger.ms": "7"}}
        ),
    )
    pipeline = load_pipeline_file(path)
    settings = pipeline_client_config(pipeline)
    assert settings["linger.ms"] == "7" and settings["security.protocol"] == "PLAINTEXT"
    assert "bootstrap.servers" not in settings  # the tools' --bootstrap-servers/env decide that

    sasl = {"bootstrapServers": "b:1", "securityProtocol": "SASL_PLAINTEXT", "sasl": {"secretName": "creds"}}
    secure = write_pipeline(tmp_path / "s.yaml", pipeline_manifest("s", "b:1", topics, kafka=sasl))
    monkeypatch.setenv("KINFER_SASL_DIR", str(tmp_path / "no-such-dir"))
    monkeypatch.delenv("KINFER_SASL_USERNAME", raising=False)
    monkeypatch.delenv("KINFER_SASL_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="SASL credentials not found"):
        pipeline_client_config(load_pipeline_file(secure))
    (tmp_path / "sasl").mkdir()
    (tmp_path / "sasl" / "username").write_text("alice\n")
    (tmp_path / "sasl" / "password").write_text("s3cret\n")
    monkeypatch.setenv("KINFER_SASL_DIR", str(tmp_path / "sasl"))
    settings = pipeline_client_config(load_pipeline_file(secure))
    assert (settings["sasl.username"], settings["sasl.password"], settings["sasl.mechanism"]) == (
        "alice",
        "s3cret",
        "SCRAM-SHA-512",
    )
    for name in ("KINFER_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    args = argparse.Namespace(pipeline=str(path), topic=None, bootstrap_servers=None)
    assert resolve_target(args, "input")[:2] == ("in", "broker:9092")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env:1")
    assert resolve_target(args, "input")[:2] == ("in", "env:1")
    args.bootstrap_servers, args.topic = "flag:1", "other"
    assert resolve_target(args, "input")[:2] == ("other", "flag:1")
    with pytest.raises(ValueError, match="no topic"):
        resolve_target(argparse.Namespace(pipeline=None, topic=None, bootstrap_servers="x"), "input")


def test_the_tools_refuse_missing_inputs_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kinfer_runtime.tools import produce, replay, score
    from tests.ingestion.pipelines import pipeline_manifest, write_pipeline

    missing = str(tmp_path / "missing.jsonl")
    assert produce.main([missing, "--topic", "t", "--bootstrap-servers", "127.0.0.1:1"]) == 2
    assert f"kinfer produce: {missing}: no such file" in capsys.readouterr().err
    topics = {"input": "in", "output": "out", "deadLetter": "dlq"}
    pipeline = str(write_pipeline(tmp_path / "p.yaml", pipeline_manifest("p", "127.0.0.1:1", topics)))
    assert score.main([pipeline, "--input", missing, "--output", str(tmp_path / "o.jsonl")]) == 2
    assert f"kinfer score: {missing}: no such file" in capsys.readouterr().err
    assert replay.main([str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kinfer replay:") and "nope.yaml" in err


def test_progress_bar_on_a_terminal_redraws_one_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock = FakeClock()
    out = Terminal()
    bar = ProgressBar("x", total=4, stream=out, clock=clock)
    for done in range(1, 5):
        clock.now += 0.25
        bar.update(done)
    bar.finish()
    text = out.getvalue()
    assert text.count("\r\x1b[2K") == 5 and text.endswith("\n") and text.count("\n") == 1
    assert "4/4" in text.rsplit("\r\x1b[2K", 1)[-1]
