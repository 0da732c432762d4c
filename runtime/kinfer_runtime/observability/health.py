"""The runtime's small HTTP server: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

``/healthz`` fails when the loop has not reported a heartbeat for ``stall_seconds`` (the process is alive but
wedged, so Kubernetes should restart it); ``/readyz`` succeeds once the model is loaded and partitions are
assigned, and fails while the loop holds records Kafka will not take (a topic gone or not authorized, a record no
smaller form of which it accepts), saying which topic and why. Holding is not a reason to restart: the loop still
runs, probes the topic with backoff and resumes by itself, and a new process would only hold the same records
again. The decision is the pure :func:`probe_result`; the server only serves it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from kinfer_runtime.kafka.client_events import AccessProblem


@dataclass
class LoopState:
    """What the loop reports for the probes (written by the loop thread, read by the server's threads)."""

    model_loaded: bool = False
    assigned_partitions: int = 0
    last_heartbeat: float = field(default_factory=time.monotonic)
    stall_seconds: float = 120.0
    kafka_problem: AccessProblem = field(default_factory=AccessProblem)  # reported by the Kafka clients
    # Why records are held and the input paused ("" when none is): the topics that refuse them and their errors.
    delivery_held: str = ""

    def heartbeat(self) -> None:
        self.last_heartbeat = time.monotonic()


def probe_result(path: str, state: LoopState, now: float) -> tuple[int, str]:
    """HTTP status and body for a probe path."""
    stalled_for = now - state.last_heartbeat
    if path == "/healthz":
        if stalled_for > state.stall_seconds:
            return 503, f"loop stalled for {stalled_for:.0f}s\n"
        return 200, "ok\n"
    if path == "/readyz":
        if not state.model_loaded:
            return 503, "model not loaded\n"
        held = state.delivery_held
        if held:
            return 503, f"records held, input paused: {held}\n"
        if state.assigned_partitions == 0:
            problem = state.kafka_problem.current(now)
            if problem is not None:
                return 503, f"no partitions assigned: {problem}\n"
            return 503, "no partitions assigned\n"
        return 200, "ok\n"
    return 404, "not found\n"


class HealthServer:
    """Serves the probes and metrics on a daemon thread."""

    def __init__(self, port: int, state: LoopState, registry: CollectorRegistry, host: str = "0.0.0.0"):
        state_ref, registry_ref = state, registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, status, content_type = generate_latest(registry_ref), 200, CONTENT_TYPE_LATEST
                else:
                    status, text = probe_result(path, state_ref, time.monotonic())
                    body, content_type = text.encode(), "text/plain; charset=utf-8"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds would drown the structured log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="kinfer-http", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
