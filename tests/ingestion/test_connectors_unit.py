"""Unit tests of the Kafka Connect plug-in's pure parts: names, configs, plans, health, backoff, Strimzi."""

from __future__ import annotations

from typing import Any

import pytest

from kinfer_operator.connect.connectors import (
    ConnectorHealth,
    RestartBackoff,
    connect_name,
    connectors_condition,
    desired_configs,
    health_from_status,
    name_prefix,
    plan_changes,
    trace_summary,
)
from kinfer_operator.connect.rest import ConnectClient
from kinfer_operator.connect.strimzi import build_kafka_connectors, kafka_connector_health, strimzi_condition
from kinfer_operator.connect.sync import delete_connectors_of, has_rest_connectors, reconcile_connectors
from kinfer_runtime.spec import InferencePipeline, SpecError, parse_pipeline
from tests.ingestion.pipelines import pipeline_manifest
from tests.testbed.process import free_port

FILE_SOURCE = "org.apache.kafka.connect.file.FileStreamSourceConnector"
TOPICS = {"input": "tx-in", "output": "tx-out", "deadLetter": "tx-dlq"}
TRACE = """org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception from producer send callback
\tat org.apache.kafka.connect.runtime.AbstractWorkerSourceTask.maybeThrowProducerSendException(X.java:1)
Caused by: org.apache.kafka.common.errors.TimeoutException: boom
\tat a.b.C(C.java:2)
Caused by: java.io.IOException: root cause here
\tat d.e.F(F.java:3)
"""


def pipeline(ingestion: dict[str, Any], name: str = "fraud") -> InferencePipeline:
    manifest = pipeline_manifest(name, "k:9092", TOPICS, ingestion=ingestion)
    manifest["metadata"]["namespace"] = "team-a"
    return parse_pipeline(manifest)


def connectors(*specs: dict[str, Any]) -> dict[str, Any]:
    return {"connectUrl": "http://connect:8083", "connectors": list(specs)}


def test_configs_carry_class_tasks_and_the_input_topic() -> None:
    p = pipeline(connectors(
        {"name": "files", "connectorClass": FILE_SOURCE, "tasksMax": 2, "config": {"file": "/data/a.jsonl"}},
        {"name": "own-topic", "connectorClass": "x.Y", "config": {"topic": "elsewhere"}},
        {"name": "no-topic", "connectorClass": "x.Z", "topicConfigKey": None},
        {"name": "debezium", "connectorClass": "x.D", "topicConfigKey": "topic.prefix"},
    ))  # fmt: skip
    configs = desired_configs(p)
    assert configs == {
        "kinfer.team-a.fraud.files": {"file": "/data/a.jsonl", "connector.class": FILE_SOURCE, "tasks.max": "2",
                                      "topic": "tx-in"},
        "kinfer.team-a.fraud.own-topic": {"topic": "elsewhere", "connector.class": "x.Y", "tasks.max": "1"},
        "kinfer.team-a.fraud.no-topic": {"connector.class": "x.Z", "tasks.max": "1"},
        "kinfer.team-a.fraud.debezium": {"connector.class": "x.D", "tasks.max": "1", "topic.prefix": "tx-in"},
    }  # fmt: skip
    assert connect_name(p, p.spec.ingestion.connectors[0]) == "kinfer.team-a.fraud.files"


def test_spec_validation_of_ingestion() -> None:
    with pytest.raises(SpecError, match="connectUrl"):
        pipeline({"connectors": [{"name": "a", "connectorClass": "x"}]})
    with pytest.raises(SpecError, match="strimziCluster"):
        pipeline({"useStrimzi": True})
    with pytest.raises(SpecError, match="unique"):
        pipeline(connectors({"name": "a", "connectorClass": "x"}, {"name": "a", "connectorClass": "y"}))
    assert pipeline({"useStrimzi": True, "strimziCluster": "c", "connectors": [{"name": "a", "connectorClass": "x"}]})


def test_plan_touches_only_this_pipelines_connectors() -> None:
    prefix = "kinfer.team-a.fraud."
    desired = {prefix + "a": {"k": "1"}, prefix + "b": {"k": "2"}, prefix + "c": {"k": "3"}}
    live = {
        prefix + "a": {"k": "1", "name": prefix + "a"},  # same config (Connect adds the name): unchanged
        prefix + "b": {"k": "old", "name": prefix + "b"},  # changed
        prefix + "gone": {"k": "x"},  # dropped from the spec
        "kinfer.team-a.fraud-2.a": {"k": "1"},  # another pipeline whose name starts the same: not ours
        "someone-elses": {"k": "1"},
    }
    changes = plan_changes(desired, live, prefix)
    assert (changes.create, changes.update, changes.delete) == ([prefix + "c"], [prefix + "b"], [prefix + "gone"])
    in_line = {name: {**config, "name": name} for name, config in desired.items()}
    assert not plan_changes(desired, in_line, prefix).any
    assert name_prefix(pipeline(connectors())) == prefix


def test_trace_summary_keeps_the_first_line_and_the_root_cause() -> None:
    assert trace_summary(TRACE) == (
        "org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception from producer send callback"
        " | Caused by: java.io.IOException: root cause here"
    )
    assert trace_summary("x" * 1000).endswith("...") and len(trace_summary("x" * 1000)) == 300
    assert trace_summary(None) == "no trace reported"


def test_health_and_condition() -> None:
    running = health_from_status("kinfer.n.p.a", {"connector": {"state": "RUNNING"}, "tasks": [
        {"id": 0, "state": "RUNNING"}, {"id": 1, "state": "RUNNING"}]})  # fmt: skip
    failed = health_from_status("kinfer.n.p.b", {"connector": {"state": "RUNNING"}, "tasks": [
        {"id": 0, "state": "RUNNING"}, {"id": 1, "state": "FAILED", "trace": TRACE}]})  # fmt: skip
    starting = health_from_status("kinfer.n.p.c", {"connector": {"state": "RUNNING"}, "tasks": []})
    missing = health_from_status("kinfer.n.p.d", None)
    assert running.running and not running.failed
    assert failed.failed and failed.failures == [f"task 1: {trace_summary(TRACE)}"]
    assert not starting.running and missing.state == "MISSING"

    ok = connectors_condition([running], [])
    assert (ok.status, ok.reason, ok.message) == ("True", "ConnectorsRunning", "running: a (2 tasks)")
    bad = connectors_condition([running, failed, starting], [], {"kinfer.n.p.b": (2, 39.6)})
    assert (bad.status, bad.reason) == ("False", "ConnectorFailed")
    assert bad.message.startswith("b: task 1: org.apache.kafka.connect.errors.ConnectException")
    assert bad.message.endswith("(restarted 2x, next restart in 40s)")
    assert connectors_condition([running, starting], []).message == "not running yet: c RUNNING (0/0 tasks)"
    assert connectors_condition([], ["Kafka Connect unreachable"]).reason == "ConnectError"
    assert connectors_condition([], []).reason == "NoConnectors"


def test_restart_backoff_doubles_and_is_forgotten_only_after_a_stable_run() -> None:
    now = [0.0]
    backoff = RestartBackoff(base_s=10, max_s=35, stable_s=100, clock=lambda: now[0])
    assert backoff.due("c")
    assert [backoff.record("c") for _ in range(4)] == [10, 20, 35, 35]
    assert not backoff.due("c") and backoff.wait_s("c") == 35
    now[0] = 50
    backoff.running("c")  # ran 50 s after the last restart: not yet trusted
    assert backoff.restarts["c"] == 4 and backoff.due("c")
    now[0] = 100
    backoff.running("c")
    assert "c" not in backoff.restarts and backoff.record("c") == 10


def test_unreachable_connect_is_a_condition_not_an_exception() -> None:
    p = pipeline(connectors({"name": "a", "connectorClass": FILE_SOURCE}))
    outcome = reconcile_connectors(p, ConnectClient(f"http://127.0.0.1:{free_port()}", timeout_s=2), RestartBackoff())
    assert (outcome.condition.status, outcome.condition.reason) == ("False", "ConnectError")
    assert "unreachable" in outcome.condition.message


STRIMZI = {"useStrimzi": True, "strimziCluster": "my-connect", "connectors": [
    {"name": "files", "connectorClass": FILE_SOURCE, "tasksMax": 3, "config": {"file": "/d/a.jsonl"}}]}  # fmt: skip


def test_strimzi_kafka_connector_manifest() -> None:
    (manifest,) = build_kafka_connectors(pipeline(STRIMZI))
    assert manifest == {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaConnector",
        "metadata": {
            "name": "fraud-files",
            "namespace": "team-a",
            "labels": {
                "strimzi.io/cluster": "my-connect",
                "app.kubernetes.io/managed-by": "kinfer",
                "app.kubernetes.io/part-of": "kinfer",
                "app.kubernetes.io/component": "connector",
                "kinfer.io/pipeline": "fraud",
            },
        },
        "spec": {
            "class": FILE_SOURCE,
            "tasksMax": 3,
            "config": {"file": "/d/a.jsonl", "topic": "tx-in"},  # class and tasks.max only in their own fields
            "autoRestart": {"enabled": True},
            "state": "running",
        },
    }


def test_strimzi_condition_from_kafka_connector_status() -> None:
    p = pipeline(STRIMZI)
    assert strimzi_condition(p, {}, crd_installed=False).reason == "StrimziNotInstalled"
    assert strimzi_condition(p, {}, crd_installed=True).reason == "ConnectorsStarting"
    live = {"fraud-files": {"status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "connectorStatus": {"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "FAILED", "trace": TRACE}]},
        "autoRestart": {"count": 3},
    }}}  # fmt: skip
    condition = strimzi_condition(p, live, crd_installed=True)
    assert condition.reason == "ConnectorFailed" and "(restarted 3x" in condition.message
    not_ready = {"status": {"conditions": [{"type": "NotReady", "status": "True", "message": "cluster not found"}]}}
    health = kafka_connector_health("fraud-files", not_ready)
    assert health == ConnectorHealth("fraud-files", "FAILED", 0, 0, ["Strimzi: cluster not found"])


def test_which_deleted_pipelines_have_connectors_to_clean_up() -> None:
    rest = {"ingestion": {"connectUrl": "http://c:8083", "connectors": [{"name": "a", "connectorClass": "x"}]}}
    assert has_rest_connectors(rest)
    assert not has_rest_connectors({"ingestion": {**rest["ingestion"], "useStrimzi": True}})  # owner references
    assert not has_rest_connectors({"ingestion": {"connectUrl": "http://c:8083", "connectors": []}})
    assert not has_rest_connectors({})
    # A spec that never parsed created no connectors: nothing to delete, and no Connect call is made.
    assert delete_connectors_of("p", "ns", {**rest, "kafka": "not an object"}) == []
