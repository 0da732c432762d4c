"""Batch runs (``spec.batch``) on the real node: the operator's Job runs ``kinfer score`` in the chart's runtime
image, and the pipeline's status shows how it ended.

- a topic range to a topic: every good record published once, as the live pipeline publishes it, every bad one
  dead-lettered with its original bytes, and the counts and progress in ``status.batch``;
- a file on a claim to a Parquet file on the same claim: the same predictions as ``kinfer score`` gives on this
  machine for the same file.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from kinfer_runtime.tools import score
from kinfer_runtime.tools.demo import BAD_VALUES
from tests.cluster.cluster import ClusterBed, TopicReader, fraud_records, host_path_claim, produce, topic
from tests.cluster.conftest import Installed
from tests.polling import wait_until

pytestmark = pytest.mark.realnode

GOOD = 300


def run_entry(cluster: ClusterBed, name: str) -> dict[str, Any]:
    """The first batch run's status entry once it finished, {} before."""
    entries = ((cluster.get(name) or {}).get("status") or {}).get("batch") or [{}]
    return entries[0] if entries[0].get("phase") in ("Succeeded", "Failed") else {}


def batch_pod(cluster: ClusterBed, name: str) -> Any:
    pods = cluster.pods(name, component="batch")
    assert pods, "the run's pod"
    return pods[-1]


@pytest.fixture
def data_claim(cluster: ClusterBed) -> Iterator[tuple[str, Path]]:
    """A writable claim of a hostPath directory on the node (and its PersistentVolume, same name)."""
    directory = Path(tempfile.mkdtemp(prefix="kinfer-data-", dir="/var/tmp"))
    directory.chmod(0o777)  # the pods run as uid 10001, and a hostPath volume ignores fsGroup
    claim = f"data-{uuid.uuid4().hex[:6]}"
    host_path_claim(cluster, directory, claim, "ReadWriteOnce")
    try:
        yield claim, directory
    finally:
        cluster.delete_all_pipelines(timeout=180)
        cluster.testbed.kubectl("delete", "pvc", claim, "-n", cluster.namespace, "--wait=false", check=False)
        cluster.testbed.kubectl("delete", "pv", claim, "--wait=false", check=False)
        shutil.rmtree(directory, ignore_errors=True)


def test_a_topic_range_is_scored_by_a_job_and_published_like_live(
    cluster: ClusterBed, installed: Installed, kafka_bootstrap: str
) -> None:
    name = "history"
    manifest = cluster.pipeline(name, consumer={"replicas": 0})  # no live consumer: every output is the run's
    cluster.apply(manifest)
    wait_until(lambda: topic(manifest, "input") in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(
        timeout=10).topics, 120, "the input topic")  # fmt: skip
    records = fraud_records(GOOD, seed=21, bad=BAD_VALUES)
    produce(kafka_bootstrap, topic(manifest, "input"), records)
    backfill = f"{cluster.namespace}.{name}.backfill"
    with AdminClient({"bootstrap.servers": kafka_bootstrap}) as admin:
        admin.create_topics([NewTopic(backfill, 2, 1)])[backfill].result(30)

    run = {"name": "all", "source": {"topicRange": {}}, "output": {"topic": backfill}}
    cluster.patch_spec(name, {"batch": [run]})
    entry = wait_until(lambda: run_entry(cluster, name), 300, "the batch run to finish")
    pod = batch_pod(cluster, name)
    print(f"\nstatus.batch of {name}: {orjson.dumps(entry).decode()}")
    assert entry["phase"] == "Succeeded", entry.get("message")
    assert pod.spec.node_name == installed.node.name
    assert pod.spec.containers[0].image == installed.runtime_image
    assert entry["records"] == len(records) and entry["scored"] == GOOD
    assert sum(entry["failed"].values()) == len(BAD_VALUES)
    assert entry["modelVersions"] == {"2": GOOD}
    assert entry["done"] == entry["total"] == len(records)

    good = {key for key, _ in records[:GOOD]}
    output, dead = TopicReader(kafka_bootstrap, backfill), TopicReader(kafka_bootstrap, topic(manifest, "deadLetter"))
    try:
        published = output.until(lambda got: {r.key for r in got} >= good, 60, "every good record published")
        letters = dead.until(lambda got: len(got) >= len(BAD_VALUES), 60, "every bad record dead-lettered")
        output.poll(2.0)
    finally:
        output.close()
        dead.close()
    assert len(output.received) == GOOD and {r.key for r in published} == good  # each once
    value = orjson.loads(published[0].value)
    assert value["model"] == {"name": "fraud", "version": 2} and value["source"]["topic"] == topic(manifest, "input")
    assert published[0].headers["kinfer.pipeline"] == name.encode()
    bad = {key: value for key, value in records[GOOD:]}
    assert {r.key: r.value for r in letters} == bad  # the original bytes


def test_a_file_on_a_claim_is_scored_to_parquet_like_kinfer_score_here(
    cluster: ClusterBed, data_claim: tuple[str, Path], tmp_path: Path
) -> None:
    claim, directory = data_claim
    lines = [value for _, value in fraud_records(200, seed=22, bad=[BAD_VALUES[0], BAD_VALUES[3]])]
    (directory / "in").mkdir(mode=0o755)
    (directory / "in" / "transactions.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (directory / "in" / "transactions.jsonl").chmod(0o644)
    name = "audit"
    run = {
        "name": "december",
        "source": {"file": {"claimName": claim, "path": "in/transactions.jsonl"}},
        "output": {"file": {"claimName": claim, "path": "out/scores.parquet"}},
    }
    cluster.apply(cluster.pipeline(name, consumer={"replicas": 0}, batch=[run]))
    entry = wait_until(lambda: run_entry(cluster, name), 300, "the batch run to finish")
    assert entry["phase"] == "Succeeded", entry.get("message")
    assert entry["records"] == len(lines) and entry["scored"] == 200 and "done" not in entry

    in_pod = pq.read_table(directory / "out" / "scores.parquet").to_pylist()
    pipeline = tmp_path / "pipeline.yaml"
    manifest = cluster.pipeline(name)
    manifest["spec"]["model"]["uri"] = str(Path(__file__).resolve().parents[2] / "models" / "fraud")
    pipeline.write_bytes(orjson.dumps(manifest))  # YAML is a superset of JSON
    here = tmp_path / "here.parquet"
    assert score.main([str(pipeline), "--input", str(directory / "in" / "transactions.jsonl"), "--output", str(here),
                       "--no-progress"]) == 0  # fmt: skip
    expected = pq.read_table(here).to_pylist()
    assert len(in_pod) == len(expected) == len(lines)
    for got, want in zip(in_pod, expected, strict=True):
        assert got["error_class"] == want["error_class"]
        assert got["prediction_label"] == want["prediction_label"]
        if want["prediction_fraud_probability"] is not None:
            assert got["prediction_fraud_probability"] == pytest.approx(want["prediction_fraud_probability"], abs=1e-6)
