"""``kinfer score`` gives exactly the live pipeline's results for the same records, without touching its group.

The live side is the real runtime (``kinfer run`` as a process) on the test bed's broker; the records are the
synthetic fraud transactions plus bad records of several kinds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from kinfer_runtime.tools import score
from kinfer_runtime.tools.produce import send_records
from kinfer_runtime.tools.sources import OutgoingRecord, records_from_rows
from kinfer_runtime.tools.synthetic import fraud_transactions
from tests.ingestion.kafka_helpers import create_topic, read_topic
from tests.ingestion.pipelines import pipeline_manifest, running_pipeline, write_pipeline

GOOD = 600
BAD = [b"{not json", b'{"amount": "12"}', b"[1, 2]", b'{"amount": NaN, "hour": 3}', b"\xff\xfe", b""]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    with AdminClient({"bootstrap.servers": bootstrap}) as admin:
        future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
        return {(tp.topic, tp.partition): tp.offset for tp in future.result(30).topic_partitions}


@pytest.fixture(scope="module")
def live_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Records produced to a pipeline's input topic and processed by ``kinfer run`` until all came out."""
    tmp_path = tmp_path_factory.mktemp("live")
    topics = {
        "input": create_topic(kafka_bootstrap, "score-in", partitions=3),
        "output": create_topic(kafka_bootstrap, "score-out", partitions=3),
        "deadLetter": create_topic(kafka_bootstrap, "score-dlq", partitions=1),
    }
    name = f"score-{topics['input'][-8:]}"
    manifest = pipeline_manifest(name, kafka_bootstrap, topics, consumer={"maxBatchSize": 64})
    path = write_pipeline(tmp_path / "pipeline.yaml", manifest)
    rows, _ = fraud_transactions(GOOD, seed=11)
    records = list(records_from_rows(rows, key_field="card_id"))
    records[100:100] = [OutgoingRecord(value=value, key=b"bad") for value in BAD]
    from confluent_kafka import Producer

    summary = send_records(Producer({"bootstrap.servers": kafka_bootstrap}), topics["input"], records)
    assert summary.ok and summary.delivered == GOOD + len(BAD)

    with running_pipeline(path, kafka_bootstrap, tmp_path / "run.log"):
        outputs = read_topic(kafka_bootstrap, topics["output"], expected=GOOD, timeout_s=180)
        dead = read_topic(kafka_bootstrap, topics["deadLetter"], expected=len(BAD), timeout_s=60)
    assert len(outputs) == GOOD, (tmp_path / "run.log").read_text()[-3000:]
    return {"path": path, "topics": topics, "outputs": outputs, "dead": dead, "name": name, "rows": rows}


def test_topic_range_scores_identical_to_the_live_pipeline(
    live_run: dict[str, Any], kafka_bootstrap: str, tmp_path: Path
) -> None:
    group = f"kinfer-{live_run['name']}"
    before = committed_offsets(kafka_bootstrap, group)
    out = tmp_path / "scored.jsonl"

    assert (
        score.main(
            [
                str(live_run["path"]),
                "--topic-range",
                "--output",
                str(out),
                "--no-progress",
                "--bootstrap-servers",
                kafka_bootstrap,
            ]
        )
        == 0
    )

    results = read_jsonl(out)
    assert len(results) == GOOD + len(BAD)
    scored = {(r["source"]["partition"], r["source"]["offset"]): r for r in results}
    for message in live_run["outputs"]:
        live = orjson.loads(message.value())
        mine = scored[(live["source"]["partition"], live["source"]["offset"])]
        assert mine["prediction"] == live["prediction"]  # exact: same floats, same labels
        assert mine["model"] == live["model"]
        assert mine["key"] == message.key().decode()
    dead_by_source = {
        (int(dict(m.headers())["kinfer.source.partition"]), int(dict(m.headers())["kinfer.source.offset"])): dict(
            m.headers()
        )["kinfer.error.class"].decode()
        for m in live_run["dead"]
    }
    errors = {source: r["error"]["class"] for source, r in scored.items() if "error" in r}
    assert errors == dead_by_source and len(errors) == len(BAD)
    # The live group's committed offsets are untouched by scoring.
    assert committed_offsets(kafka_bootstrap, group) == before


def test_file_scores_match_the_live_pipeline_and_parquet_matches_jsonl(
    live_run: dict[str, Any], kafka_bootstrap: str, tmp_path: Path
) -> None:
    rows = live_run["rows"]
    inputs = read_topic(kafka_bootstrap, live_run["topics"]["input"], expected=GOOD + len(BAD))
    input_by_source = {(m.partition(), m.offset()): m.value() for m in inputs}
    live_by_transaction = {}
    for message in live_run["outputs"]:
        output = orjson.loads(message.value())
        source = (output["source"]["partition"], output["source"]["offset"])
        live_by_transaction[orjson.loads(input_by_source[source])["transaction_id"]] = output
    jsonl, parquet = tmp_path / "records.jsonl", tmp_path / "records.parquet"
    jsonl.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    out_jsonl, out_parquet = tmp_path / "from-jsonl.jsonl", tmp_path / "from-parquet.parquet"

    common = [str(live_run["path"]), "--no-progress"]
    assert score.main([*common, "--input", str(jsonl), "--output", str(out_jsonl)]) == 0
    assert score.main([*common, "--input", str(parquet), "--output", str(out_parquet), "--batch-size", "100"]) == 0

    from_jsonl = read_jsonl(out_jsonl)
    assert [r["source"]["record"] for r in from_jsonl] == list(range(1, GOOD + 1))
    for row, result in zip(rows, from_jsonl, strict=True):
        live = live_by_transaction[row["transaction_id"]]
        assert (result["prediction"], result["model"]) == (live["prediction"], live["model"])
    from_parquet = pq.read_table(out_parquet).to_pylist()
    assert [(r["prediction_fraud_probability"], r["prediction_label"]) for r in from_parquet] == [
        (r["prediction"]["fraud_probability"], r["prediction"]["label"]) for r in from_jsonl
    ]
