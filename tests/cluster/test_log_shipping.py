"""kinfer's logs through a real log shipper: the OpenTelemetry Collector (built from tests/testbed/go/otelcol) runs
docs/otelcol.yaml as it is, as a node's DaemonSet would, over the real node's pod log files (the kubelet's
podLogsDir, /var/log/pods on a production node), and sends OTLP/HTTP to a receiver in this test. The receiver
stands where Loki or OpenSearch would: it only decodes what arrives, and what arrives is what they would store.

A pipeline's pod scores records and dead-letters bad ones. Every JSON line the consumer pod wrote must arrive
parsed (its message as the body, its own time and severity, its fields as attributes, the pod's identity as
resource attributes), nothing left as raw JSON; the dead-letter line carries partition, offset, error class and
model version; the operator's lines about the pipeline carry its namespace and name.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kinfer_runtime.tools.demo import BAD_VALUES
from tests.cluster.cluster import ClusterBed, TopicReader, fraud_records, produce, topic
from tests.cluster.conftest import Installed
from tests.polling import wait_until
from tests.testbed import REPO_ROOT
from tests.testbed.bed import component_dir

pytestmark = pytest.mark.realnode
CONFIG = REPO_ROOT / "docs" / "otelcol.yaml"


def value_of(wrapped: dict[str, Any]) -> Any:
    """An OTLP JSON AnyValue as Python (numbers from JSON arrive as doubles; ints as strings, per OTLP JSON)."""
    (kind, value), = wrapped.items()  # fmt: skip
    if kind == "intValue":
        return int(value)
    if kind == "kvlistValue":
        return {kv["key"]: value_of(kv["value"]) for kv in value.get("values", [])}
    return value


class LogSink:
    """An OTLP/HTTP logs endpoint on loopback that keeps every log record it is sent, flattened."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        lock, records = threading.Lock(), self.records

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with lock:
                    records.extend(flatten(json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.lock = lock

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.records)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def flatten(export: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource_logs in export.get("resourceLogs", []):
        resource = {a["key"]: value_of(a["value"]) for a in resource_logs.get("resource", {}).get("attributes", [])}
        for scope_logs in resource_logs.get("scopeLogs", []):
            for record in scope_logs.get("logRecords", []):
                yield {
                    "resource": resource,
                    "time_ns": int(record.get("timeUnixNano", 0)),
                    "severity": record.get("severityText"),
                    "body": value_of(record["body"]) if "body" in record else None,
                    "attributes": {a["key"]: value_of(a["value"]) for a in record.get("attributes", [])},
                }


def kinfer_lines(pod_log_dir: Path) -> list[dict[str, Any]]:
    """The JSON log lines in a pod's log files (CRI framing: time, stream, tag, then the line)."""
    lines = []
    for path in sorted(pod_log_dir.glob("*/*.log")):
        for line in path.read_text(errors="replace").splitlines():
            text = line.split(" ", 3)[3] if line.count(" ") >= 3 else ""
            if text.startswith('{"timestamp":'):
                lines.append(json.loads(text))
    return lines


def time_ns(timestamp: str) -> int:
    """A kinfer line's ``timestamp`` (UTC, milliseconds) in nanoseconds since the epoch, as OTLP carries it."""
    parsed = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000) * 1_000_000


def test_kinfer_logs_arrive_parsed_through_the_opentelemetry_collector(
    cluster: ClusterBed, installed: Installed, kafka_bootstrap: str, tmp_path: Path
) -> None:
    name = "shipped"
    manifest = cluster.pipeline(name, partitions=1, consumer={"replicas": 1})
    records = fraud_records(50, seed=23, bad=BAD_VALUES)
    dead = TopicReader(kafka_bootstrap, topic(manifest, "deadLetter"))
    try:
        cluster.apply(manifest)
        wait_until(lambda: cluster.topic_partitions(topic(manifest, "input")), 120, "the input topic")
        produce(kafka_bootstrap, topic(manifest, "input"), records)
        dead.until(lambda got: len(got) >= len(BAD_VALUES), 300, "every bad record dead-lettered")
    finally:
        dead.close()
    (pod,) = cluster.wait_ready_pods(name, 1)
    pod_name, uid = pod.metadata.name, pod.metadata.uid
    pod_logs = Path(installed.node.pod_logs)
    pod_dir = pod_logs / f"{cluster.namespace}_{pod_name}_{uid}"

    def written_so_far() -> list[dict[str, Any]]:
        lines = kinfer_lines(pod_dir)
        return lines if any(line["message"] == "records dead-lettered" for line in lines) else []

    written = wait_until(written_so_far, 60, f"a dead-letter line in the pod's log files under {pod_dir}")

    sink = LogSink()
    environment = {
        **os.environ,
        "KINFER_LOG_FILES": f"{pod_logs}/*/*/*.log",  # the whole node, as a DaemonSet reads it
        "KINFER_LOGS_ENDPOINT": sink.endpoint,
    }
    collector_log = tmp_path / "otelcol.log"
    with collector_log.open("wb") as output:
        collector = subprocess.Popen(
            [str(component_dir("otelcol") / "otelcol"), "--config", str(CONFIG)],
            env=environment, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def from_pod() -> list[dict[str, Any]]:
            return [r for r in sink.snapshot() if r["resource"].get("k8s.pod.uid") == uid]

        def all_arrived() -> bool:
            shipped = {(r["time_ns"], r["body"]) for r in from_pod()}
            return all((time_ns(line["timestamp"]), line["message"]) in shipped for line in written)

        try:
            wait_until(all_arrived, 60, "every JSON line the pod wrote, shipped")
        except AssertionError as error:
            raise AssertionError(f"{error}; the collector said:\n{collector_log.read_text()[-3000:]}") from None
        operator_lines = wait_until(
            lambda: [r for r in sink.snapshot() if r["resource"].get("service.name") == "kinfer-operator"
                     and r["attributes"].get("pipeline") == name
                     and r["attributes"].get("namespace") == cluster.namespace],
            60,
            "the operator's lines about the pipeline",
        )  # fmt: skip
    finally:
        collector.terminate()
        collector.wait(30)
        sink.close()

    shipped = from_pod()
    unparsed = [r["body"] for r in shipped if isinstance(r["body"], str) and r["body"].startswith('{"timestamp":')]
    assert not unparsed, f"kinfer lines shipped unparsed: {unparsed[:3]}"
    kinfer = [r for r in shipped if r["resource"].get("service.name") == "kinfer-runtime"]
    assert len(kinfer) >= len(written)
    for record in kinfer:
        assert record["resource"]["k8s.namespace.name"] == cluster.namespace
        assert record["resource"]["k8s.pod.name"] == pod_name
        assert record["resource"]["k8s.container.name"] == "consumer"
        assert record["severity"] in {"DEBUG", "INFO", "WARNING", "ERROR"}
        attributes = record["attributes"]
        assert (attributes["pipeline"], attributes["namespace"], attributes["component"]) == (
            name, cluster.namespace, "runtime")  # fmt: skip
        assert "timestamp" not in attributes and "level" not in attributes and "message" not in attributes
    (first, *_) = [r for r in kinfer if r["body"] == "records dead-lettered"]
    attributes = first["attributes"]
    assert first["severity"] == "WARNING"
    assert attributes["partition"] == 0 and attributes["offset"] >= 0
    assert attributes["error_class"] in {"MalformedJson", "EmptyValue", "NotAnObject", "MissingField", "WrongType"}
    (ready,) = [r for r in kinfer if r["body"] == "model ready"]  # the version loaded (the latest: 2)
    assert attributes["model_version"] == ready["attributes"]["model_version"] == 2 and attributes["records"] >= 1
    assert any(r["body"] == "loop started" and r["severity"] == "INFO" for r in kinfer)
    assert all(r["resource"]["k8s.container.name"] == "operator" for r in operator_lines)
    print(f"\nshipped: {len(kinfer)} runtime lines of pod {pod_name} (all {len(written)} it had written), "
          f"{len(operator_lines)} operator lines about the pipeline")  # fmt: skip
