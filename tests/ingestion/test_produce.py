"""``kinfer produce`` against the test bed's broker: what arrives on the topic is exactly what the file held."""

from __future__ import annotations

import io
import time
from pathlib import Path

import orjson
import pytest

from kinfer_runtime.tools import produce
from tests.ingestion.kafka_helpers import create_topic, read_topic


def test_jsonl_file_arrives_verbatim_with_keys(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = create_topic(kafka_bootstrap, "produce-jsonl")
    lines = [orjson.dumps({"card_id": f"c{i % 7}", "amount": i * 1.5}) for i in range(300)]
    lines.insert(10, b"{not json")  # a broken line is sent as it is (to test the dead-letter path, say)
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    code = produce.main(
        [
            str(path),
            "--topic",
            topic,
            "--bootstrap-servers",
            kafka_bootstrap,
            "--key-field",
            "card_id",
            "--header",
            "origin=test",
        ]
    )

    assert code == 0
    assert "sent 301, delivered 301, failed 0" in capsys.readouterr().err
    messages = read_topic(kafka_bootstrap, topic, expected=301)
    assert sorted(m.value() for m in messages) == sorted(lines)
    by_value = {m.value(): m for m in messages}
    assert by_value[lines[0]].key() == b"c0"
    assert by_value[b"{not json"].key() is None
    assert all(m.headers() == [("origin", b"test")] for m in messages)
    # The same key always lands on the same partition (ordering per card is kept).
    partitions_by_key: dict[bytes, set[int]] = {}
    for m in messages:
        partitions_by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(p) == 1 for k, p in partitions_by_key.items() if k is not None)


def test_csv_file_with_rate_and_limit(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = create_topic(kafka_bootstrap, "produce-csv", partitions=1)
    path = tmp_path / "records.csv"
    path.write_text("card_id,amount,country\n" + "".join(f"c{i},{i}.25,DE\n" for i in range(1000)))

    started = time.monotonic()
    code = produce.main(
        [
            str(path),
            "--topic",
            topic,
            "--bootstrap-servers",
            kafka_bootstrap,
            "--key-field",
            "card_id",
            "--rate",
            "1000",
            "--limit",
            "600",
            "--no-progress",
        ]
    )
    elapsed = time.monotonic() - started

    assert code == 0
    # The pacing is a lower bound (a loaded machine only makes it slower): 600 records at 1,000/s
    # with a 50-record burst cannot finish in less than 0.55 s.
    assert elapsed >= 0.55
    messages = read_topic(kafka_bootstrap, topic, expected=600)
    assert len(messages) == 600
    first = orjson.loads(messages[0].value())
    assert first == {"card_id": "c0", "amount": 0.25, "country": "DE"} and messages[0].key() == b"c0"
    assert orjson.loads(messages[-1].value())["card_id"] == "c599"  # one partition: file order kept


def test_undeliverable_records_are_failures_not_deliveries(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n')
    # The bed does not auto-create topics, so nothing can be acked; the summary must say so.
    code = produce.main(
        [
            str(path),
            "--topic",
            "no-such-topic-for-produce",
            "--bootstrap-servers",
            kafka_bootstrap,
            "-X",
            "message.timeout.ms=2000",
            "--no-progress",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "sent 2, delivered 0, failed 2" in err


def test_stdin_is_read_as_jsonl(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    topic = create_topic(kafka_bootstrap, "produce-stdin", partitions=1)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"k": "a"}\n{"k": "b"}\n')))
    assert produce.main(["--topic", topic, "--bootstrap-servers", kafka_bootstrap, "--key-field", "k"]) == 0
    messages = read_topic(kafka_bootstrap, topic, expected=2)
    assert [(m.key(), m.value()) for m in messages] == [(b"a", b'{"k": "a"}'), (b"b", b'{"k": "b"}')]
