"""The operator's Prometheus metrics (listed in docs/operator.md) and its ``/metrics``, ``/healthz`` and ``/readyz``
HTTP server.

Per-pipeline gauges carry the labels ``namespace`` and ``pipeline``; the autoscaler sets the lag,
desired-replica, capped and drain gauges, the reconcile sets the rest from the status it wrote.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

LABELS = ("namespace", "pipeline")

PIPELINE_READY = Gauge("kinfer_pipeline_ready", "1 when the pipeline's Ready condition is True", LABELS)
PIPELINE_LAG = Gauge("kinfer_pipeline_lag", "Total consumer lag of the input topic (records)", LABELS)
PIPELINE_PARTITION_LAG = Gauge("kinfer_pipeline_partition_lag", "Lag of one input partition", (*LABELS, "partition"))
PIPELINE_REPLICAS = Gauge("kinfer_pipeline_replicas", "Consumer pods", LABELS)
PIPELINE_DESIRED_REPLICAS = Gauge("kinfer_pipeline_desired_replicas", "Consumer pods the autoscaler asks", LABELS)
PIPELINE_PARTITIONS = Gauge("kinfer_pipeline_partitions", "Partitions of the input topic", LABELS)
PIPELINE_CAPPED = Gauge("kinfer_pipeline_capped_by_partitions", "1 when scaling is capped by partitions", LABELS)
PIPELINE_SERVING_READY = Gauge("kinfer_pipeline_serving_ready", "1 when the model server is ready", LABELS)
PIPELINE_DRAIN_SECONDS = Gauge("kinfer_pipeline_drain_seconds", "Estimated seconds to drain the lag", LABELS)
RECONCILE_TOTAL = Counter("kinfer_operator_reconcile_total", "Reconcile passes by result", ("result",))
RECONCILE_SECONDS = Histogram("kinfer_operator_reconcile_seconds", "Duration of one reconcile pass")
OPERATOR_INFO = Gauge("kinfer_operator_info", "1 while an operator runs (the alert on its absence)", ("version",))
API_REQUESTS = Counter("kinfer_operator_api_requests_total", "Requests to the Kubernetes API by verb", ("verb",))
EXTERNAL_METRIC_ANSWERS = Counter(
    "kinfer_operator_external_metric_answers_total",
    "Answers of the external metrics API to the HPA: values, empty (no fresh lag of a matching pipeline: the HPA "
    "holds its size), refused (caller or access review), error",
    ("answer",),
)


def _condition(status: dict[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or [])


def observe_pipeline(namespace: str, pipeline: str, status: dict[str, Any]) -> None:
    """Set the reconcile-owned gauges from a pipeline's status."""
    PIPELINE_READY.labels(namespace, pipeline).set(1 if _condition(status, "Ready") else 0)
    PIPELINE_SERVING_READY.labels(namespace, pipeline).set(1 if _condition(status, "ServingReady") else 0)
    PIPELINE_REPLICAS.labels(namespace, pipeline).set(status.get("replicas") or 0)
    if status.get("partitions") is not None:
        PIPELINE_PARTITIONS.labels(namespace, pipeline).set(status["partitions"])


def forget_pipeline(namespace: str, pipeline: str) -> None:
    """Drop a deleted pipeline's series (otherwise they'd be exported for ever)."""
    for gauge in (
        PIPELINE_READY,
        PIPELINE_SERVING_READY,
        PIPELINE_REPLICAS,
        PIPELINE_PARTITIONS,
        PIPELINE_LAG,
        PIPELINE_DESIRED_REPLICAS,
        PIPELINE_CAPPED,
        PIPELINE_DRAIN_SECONDS,
    ):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, pipeline)


class _Handler(BaseHTTPRequestHandler):
    ready: Callable[[], tuple[bool, str]] = staticmethod(lambda: (True, "ok"))  # set by serve_http

    def do_GET(self) -> None:
        code = 200
        if self.path.startswith("/metrics"):
            body, content_type = generate_latest(), CONTENT_TYPE_LATEST
        elif self.path.startswith("/healthz"):
            body, content_type = b"ok\n", "text/plain"
        elif self.path.startswith("/readyz"):
            ready, reason = self.ready()
            code, body, content_type = (200 if ready else 503), f"{reason}\n".encode(), "text/plain"
        else:
            self.send_error(404)
            return
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: no access log
        return


def serve_http(host: str, port: int, ready: Callable[[], tuple[bool, str]] | None = None) -> ThreadingHTTPServer:
    """Start the metrics and health server (``/metrics``, ``/healthz``, ``/readyz``) in a daemon thread; returns it
    (``server_address`` has the real port). ``ready()`` answers ``/readyz``: (ready, reason)."""
    handler = type("Handler", (_Handler,), {"ready": staticmethod(ready)} if ready else {})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="kinfer-metrics", daemon=True).start()
    return server
