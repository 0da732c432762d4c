"""Kafka Connect sources against a real distributed-mode worker (Maven Central jars) on the test bed's broker.

The REST client and ``reconcile_connectors`` create, update and delete connectors, report their state, and
restart failed tasks with backoff; the file source connector reads a JSONL file into the input topic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kinfer_operator.connect.connectors import RestartBackoff
from kinfer_operator.connect.rest import ConnectClient
from kinfer_operator.connect.sync import (
    ConnectorsOutcome,
    delete_connectors_of,
    delete_pipeline_connectors,
    reconcile_connectors,
)
from kinfer_runtime.spec import InferencePipeline, parse_pipeline
from tests.ingestion.connect_worker import ConnectWorker
from tests.ingestion.kafka_helpers import create_topic, read_topic
from tests.ingestion.pipelines import pipeline_manifest

FILE_SOURCE = "org.apache.kafka.connect.file.FileStreamSourceConnector"


@pytest.fixture
def connect(connect_worker: ConnectWorker) -> ConnectClient:
    return ConnectClient(connect_worker.url, timeout_s=15)


def make_pipeline(
    kafka_bootstrap: str, url: str, input_topic: str, connectors: list[dict[str, Any]]
) -> InferencePipeline:
    topics = {"input": input_topic, "output": f"{input_topic}-out", "deadLetter": f"{input_topic}-dlq"}
    manifest = pipeline_manifest(
        "ingest", kafka_bootstrap, topics, ingestion={"connectUrl": url, "connectors": connectors}
    )
    manifest["metadata"]["namespace"] = f"ns-{input_topic[-8:]}"  # topics end in a random suffix
    return parse_pipeline(manifest)


def reconcile_until(
    pipeline: InferencePipeline, client: ConnectClient, backoff: RestartBackoff,
    done: Callable[[ConnectorsOutcome], bool], timeout_s: float = 120, seen: list[ConnectorsOutcome] | None = None,
) -> ConnectorsOutcome:  # fmt: skip
    """Runs reconcile passes (as the operator's timer would, only faster) until ``done`` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = reconcile_connectors(pipeline, client, backoff)
        if seen is not None:
            seen.append(outcome)
        if done(outcome) or time.monotonic() > deadline:
            return outcome
        time.sleep(1)


def test_file_source_feeds_the_input_topic_and_follows_the_spec(
    connect: ConnectClient, kafka_bootstrap: str, tmp_path: Path
) -> None:
    input_topic = create_topic(kafka_bootstrap, "connect-in", partitions=1)
    lines = [f'{{"transaction_id": "tx-{i}", "amount": {i}.5}}' for i in range(50)]
    source = tmp_path / "transactions.jsonl"
    source.write_text("\n".join(lines) + "\n")
    spec: list[dict[str, Any]] = [{"name": "files", "connectorClass": FILE_SOURCE, "config": {"file": str(source)}}]
    pipeline = make_pipeline(kafka_bootstrap, connect.url, input_topic, spec)
    backoff = RestartBackoff()

    first = reconcile_connectors(pipeline, connect, backoff)
    assert first.changes.create == [f"kinfer.{pipeline.metadata.namespace}.ingest.files"]
    outcome = reconcile_until(pipeline, connect, backoff, lambda o: o.condition.status == "True")
    assert (outcome.condition.reason, outcome.condition.message) == ("ConnectorsRunning", "running: files (1 tasks)")
    # Level-based: once Connect lists the connector, a pass changes nothing.
    assert not reconcile_connectors(pipeline, connect, backoff).changes.any

    messages = read_topic(kafka_bootstrap, input_topic, expected=50, timeout_s=60)
    assert [m.value().decode() for m in messages] == lines  # one record per line, in file order

    # A config change in the spec is an update; the connector keeps running.
    spec[0]["tasksMax"] = 1
    spec[0]["config"]["batch.size"] = "100"
    changed = make_pipeline(kafka_bootstrap, connect.url, input_topic, spec)
    assert reconcile_connectors(changed, connect, backoff).changes.update == first.changes.create
    name = first.changes.create[0]
    assert connect.connectors()[name]["info"]["config"]["batch.size"] == "100"

    # Dropped from the spec: deleted from Connect (and only ours).
    emptied = make_pipeline(kafka_bootstrap, connect.url, input_topic, [])
    outcome = reconcile_connectors(emptied, connect, backoff)
    assert outcome.changes.delete == [name] and outcome.condition.reason == "NoConnectors"
    assert name not in connect.connectors()


def test_failed_task_is_reported_and_restarted_with_backoff_until_the_cause_is_fixed(
    connect: ConnectClient, kafka_bootstrap: str, tmp_path: Path
) -> None:
    missing_topic = f"connect-late-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "events.jsonl"
    source.write_text("".join(f'{{"n": {i}}}\n' for i in range(5)))
    # The target topic does not exist (the bed never auto-creates): the task fails on its first send.
    spec = [{"name": "late", "connectorClass": FILE_SOURCE,
             "config": {"file": str(source), "producer.override.max.block.ms": "2000"}}]  # fmt: skip
    pipeline = make_pipeline(kafka_bootstrap, connect.url, missing_topic, spec)
    # A failing task here fails again within seconds of a restart, so waits of 6 s then 12 s are visible.
    backoff = RestartBackoff(base_s=6, max_s=12, stable_s=60)
    name = f"kinfer.{pipeline.metadata.namespace}.ingest.late"
    restarted_at: list[float] = []

    def three_restarts(outcome: ConnectorsOutcome) -> bool:
        if outcome.restarted:
            restarted_at.append(time.monotonic())
        return backoff.restarts.get(name, 0) >= 3

    failed = reconcile_until(pipeline, connect, backoff, three_restarts)
    assert failed.condition.status == "False" and failed.condition.reason == "ConnectorFailed"
    assert failed.condition.message.startswith("late: task 0: org.apache.kafka.connect.errors.ConnectException")
    assert "Caused by:" in failed.condition.message and "(restarted 3x, next restart in" in failed.condition.message
    first_gap, second_gap = restarted_at[1] - restarted_at[0], restarted_at[2] - restarted_at[1]
    assert first_gap >= 6 and second_gap >= 12  # each restart waited for its backoff

    # Fix the cause: the next restart finds the topic and the records flow.
    create_topic_named(kafka_bootstrap, missing_topic)
    running = reconcile_until(pipeline, connect, backoff, lambda o: o.condition.status == "True", timeout_s=90)
    assert running.condition.reason == "ConnectorsRunning", running.condition.message
    assert len(read_topic(kafka_bootstrap, missing_topic, expected=5, timeout_s=60)) == 5
    assert delete_pipeline_connectors(pipeline, connect) == [f"kinfer.{pipeline.metadata.namespace}.ingest.late"]


def test_a_config_connect_rejects_is_reported_with_its_message(connect: ConnectClient, kafka_bootstrap: str) -> None:
    spec = [{"name": "typo", "connectorClass": "org.example.NoSuchConnector"}]
    pipeline = make_pipeline(kafka_bootstrap, connect.url, "connect-rejected", spec)
    outcome = reconcile_connectors(pipeline, connect, RestartBackoff())
    assert (outcome.condition.status, outcome.condition.reason) == ("False", "ConnectorRejected")
    assert "typo: Kafka Connect answered HTTP 4" in outcome.condition.message
    assert "NoSuchConnector" in outcome.condition.message


def create_topic_named(bootstrap: str, name: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    with AdminClient({"bootstrap.servers": bootstrap}) as admin:
        for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
            future.result(30)


def test_deleting_the_pipeline_deletes_its_connectors(
    connect: ConnectClient, kafka_bootstrap: str, tmp_path: Path
) -> None:
    input_topic = create_topic(kafka_bootstrap, "connect-del", partitions=1)
    source = tmp_path / "a.jsonl"
    source.write_text('{"a": 1}\n')
    spec = [{"name": name, "connectorClass": FILE_SOURCE, "config": {"file": str(source)}} for name in ("one", "two")]
    pipeline = make_pipeline(kafka_bootstrap, connect.url, input_topic, spec)
    assert len(reconcile_connectors(pipeline, connect, RestartBackoff()).changes.create) == 2
    namespace = pipeline.metadata.namespace
    wire_spec = pipeline.spec.to_wire()  # what the delete handler gets from kopf

    deleted = delete_connectors_of("ingest", namespace, wire_spec)

    assert deleted == [f"kinfer.{namespace}.ingest.one", f"kinfer.{namespace}.ingest.two"]
    assert not [name for name in connect.connectors() if name.startswith(f"kinfer.{namespace}.")]
    assert delete_connectors_of("ingest", namespace, wire_spec) == []  # idempotent
