"""Metrics (names and labels the dashboards use), the bulk histogram, probes and JSON logs."""

from __future__ import annotations

import logging

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from kinfer_runtime.observability.health import LoopState, probe_result
from kinfer_runtime.observability.logs import JsonFormatter, fields
from kinfer_runtime.observability.metrics import LATENCY_BUCKETS, BulkHistogram, RuntimeMetrics


def test_bulk_histogram_matches_prometheus_histogram() -> None:
    values = np.array([0.0005, 0.001, 0.0011, 0.02, 0.5, 31.0, 0.05])
    bulk = BulkHistogram("x_seconds", "x", {"pipeline": "p"}, LATENCY_BUCKETS)
    bulk.observe_many(values)
    bulk.observe_many(np.empty(0))
    reference = Histogram("y_seconds", "y", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    for value in values:
        reference.observe(float(value))
    expected = {s.labels["le"]: s.value for s in next(iter(reference.collect())).samples if s.name.endswith("_bucket")}
    buckets, total = bulk.snapshot()
    assert {float(le): count for le, count in buckets} == {float(le): count for le, count in expected.items()}
    assert abs(total - values.sum()) < 1e-9


def test_runtime_metrics_expose_the_agreed_names_with_pipeline_labels() -> None:
    metrics = RuntimeMetrics("risk", "fraud")
    metrics.records_in.inc(3)
    metrics.dead_lettered("MalformedJson", 2)
    metrics.end_to_end.observe_many(np.array([0.01]))
    metrics.set_model_version("fraud", 4)
    metrics.set_lag({("in", 0): 5, ("in", 1): 0})
    metrics.set_lag({("in", 1): 7})  # partition 0 went to another member
    text = generate_latest(metrics.registry).decode()
    assert 'kinfer_records_in_total{namespace="risk",pipeline="fraud"} 3.0' in text
    assert 'kinfer_records_dead_lettered_total{namespace="risk",pipeline="fraud",reason="MalformedJson"} 2.0' in text
    assert 'kinfer_end_to_end_seconds_count{namespace="risk",pipeline="fraud"} 1.0' in text
    assert 'kinfer_model_version{model="fraud",namespace="risk",pipeline="fraud"} 4.0' in text
    assert 'kinfer_partition_lag{namespace="risk",partition="1",pipeline="fraud",topic="in"} 7.0' in text
    assert 'partition="0"' not in text
    for name in ("kinfer_batch_size", "kinfer_stage_seconds", "kinfer_rebalances_total", "kinfer_ready",
                 "kinfer_predictor_unavailable_total", "kinfer_records_out_total"):  # fmt: skip
        assert name in text


def test_probes() -> None:
    state = LoopState(stall_seconds=60)
    state.last_heartbeat = 100.0
    assert probe_result("/healthz", state, now=150.0)[0] == 200
    assert probe_result("/healthz", state, now=161.0)[0] == 503
    assert probe_result("/readyz", state, now=100.0) == (503, "model not loaded\n")
    state.model_loaded = True
    assert probe_result("/readyz", state, now=100.0) == (503, "no partitions assigned\n")
    state.assigned_partitions = 2
    assert probe_result("/readyz", state, now=100.0)[0] == 200
    assert probe_result("/nope", state, now=100.0)[0] == 404


def test_json_log_lines_carry_static_and_extra_fields() -> None:
    record = logging.LogRecord("kinfer.loop", logging.WARNING, __file__, 1, "commit failed", None, None)
    record.__dict__.update(fields(error="timeout"))
    line = orjson.loads(JsonFormatter({"pipeline": "fraud"}).format(record))
    assert line["message"] == "commit failed" and line["level"] == "WARNING"
    assert line["pipeline"] == "fraud" and line["error"] == "timeout" and line["timestamp"].endswith("Z")


def test_an_error_is_logged_with_its_class_for_grouping() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from kinfer_runtime.records.dead_letter import Failure, dead_letter_summary
    from tests.runtime.fake_kafka import FakeMessage

    def line(**values: object) -> dict[str, object]:
        record = logging.LogRecord("kinfer.loop", logging.WARNING, __file__, 1, "failed", None, None)
        record.__dict__.update(fields(**values))
        return dict(orjson.loads(JsonFormatter().format(record)))

    assert (
        line(error=TimeoutError("no answer")).items()
        >= {
            "error": "no answer",
            "error_class": "TimeoutError",
        }.items()
    )
    kafka = line(error=KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down")))
    assert kafka["error_class"] == "_TRANSPORT" and "broker down" in str(kafka["error"])
    assert "error_class" not in line(error="text only")
    messages = [FakeMessage("in", 2, 40 + i, b"x", None) for i in range(4)]
    failures = [(1, Failure("MalformedJson", "bad")), (3, Failure("MissingField", "no amount")),
                (2, Failure("MalformedJson", "bad"))]  # fmt: skip
    summary = line(**dead_letter_summary(messages, failures))
    assert summary.items() >= {"records": 3, "partition": 2, "offset": 41, "error_class": "MalformedJson",
                                         "reasons": {"MalformedJson": 2, "MissingField": 1}}.items()  # fmt: skip


def test_the_operator_logs_the_same_json_with_the_object_kopf_names() -> None:
    record = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, "Handler 'reconcile' succeeded.", None, None)
    record.__dict__["k8s_ref"] = {"namespace": "shop", "name": "fraud", "uid": "u"}
    line = orjson.loads(JsonFormatter({"component": "operator"}).format(record))
    assert (line["component"], line["namespace"], line["pipeline"]) == ("operator", "shop", "fraud")
    assert set(line) >= {"timestamp", "level", "logger", "message"}


def test_kinfer_version_is_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    from kinfer_runtime.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"kinfer {version('kinfer')}"
