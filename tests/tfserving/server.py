"""``TfServingTestServer``: the stand-in's gRPC and REST ports around one ``ModelManager``, with its pollers.

Start-up follows ``tensorflow_model_server``: the model config is validated, every model's aspired versions are
loaded before any port opens (a model that fails to load stops the start with TF Serving's "N model(s) did not
become available" message), then gRPC opens, then REST. While running, each base path is polled every
``file_system_poll_seconds`` (``--file_system_poll_wait_seconds``, 1 s by default as in TF Serving) and, with
``model_config_poll_seconds``, the config file is read again: a file that no longer parses, or a list that no
longer validates, is logged and the previous config stays (as TF Serving does).

Tests use it in-process: ``TfServingTestServer(model_dir, "fraud").start()`` serves one model on ephemeral
loopback ports; ``unavailable``, ``delay_seconds``, ``stop_grpc``/``start_grpc`` (same port) and
``stop_rest``/``start_rest`` rehearse outages; ``predict_calls`` and ``rest_calls`` count requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc

from tests.tfserving import config as cfg
from tests.tfserving.grpc_api import add_services
from tests.tfserving.models import ModelManager
from tests.tfserving.rest import start_http

log = logging.getLogger("tfserving-standin")


class StartError(Exception):
    """The server could not start (what tensorflow_model_server prints before exiting)."""


class TfServingTestServer:
    def __init__(
        self,
        model_base_path: Path | str | None = None,
        model_name: str | None = None,
        *,
        grpc_port: int = 0,
        rest_port: int | None = 0,  # 0: any free port; None: no REST API (TF Serving's --rest_api_port=0)
        host: str = "127.0.0.1",
        model_config: Any | None = None,  # a ModelServerConfig instead of model_base_path/model_name
        model_config_file: Path | str | None = None,
        model_config_poll_seconds: float = 0.0,
        batching: Any | None = None,  # BatchingParameters: None is TF Serving without --enable_batching
        monitoring: Any | None = None,  # MonitoringConfig
        file_system_poll_seconds: float = 1.0,
    ) -> None:
        self.model_config_file = Path(model_config_file) if model_config_file else None
        if self.model_config_file is not None:
            model_config = cfg.read_model_server_config(self.model_config_file)
        elif model_config is None:
            if model_base_path is None or model_name is None:
                raise ValueError("give model_base_path and model_name, model_config or model_config_file")
            model_config = cfg.single_model_config(model_name, Path(model_base_path))
        self.entries = cfg.model_entries(model_config)
        self.model_name = self.entries[0].name if self.entries else ""
        self.model_base_path = self.entries[0].base_path if self.entries else None
        self.host, self.grpc_port, self.rest_port = host, grpc_port, rest_port
        self.model_config_poll_seconds = model_config_poll_seconds
        self.file_system_poll_seconds = file_system_poll_seconds
        self.manager = ModelManager(cfg.input_batch_size_limit(batching))
        self.prometheus_path = cfg.prometheus_path(monitoring)
        self.unavailable = False  # answer every Predict with UNAVAILABLE
        self.delay_seconds = 0.0  # stall each Predict (past the client's deadline → DEADLINE_EXCEEDED)
        self.predict_calls = 0
        self.rest_calls = 0
        self._counter_lock = threading.Lock()
        self._grpc_server: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._stopping = threading.Event()
        self._pollers: list[threading.Thread] = []

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"{_bracket(host)}:{self.grpc_port}"

    @property
    def grpc_running(self) -> bool:
        return self._grpc_server is not None

    def note_predict_call(self) -> None:
        with self._counter_lock:
            self.predict_calls += 1

    def note_rest_call(self) -> None:
        with self._counter_lock:
            self.rest_calls += 1

    def refresh(self) -> None:
        """One file-system poll now (what the poller does every ``file_system_poll_seconds``)."""
        self.manager.refresh()

    def load_versions(self) -> list[int]:
        """Poll now; the versions of the first model that are loaded."""
        self.refresh()
        return self.manager.available_versions(self.model_name)

    def start(self, wait_seconds: float | None = 0.0) -> TfServingTestServer:
        """Load the models, then open gRPC and REST. ``wait_seconds``: how long to keep polling for a model
        that has no version yet (None: for ever, as TF Serving waits); a model whose load failed stops it."""
        self.manager.configure(self.entries)
        deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
        while missing := [n for n in self.manager.model_names() if not self.manager.available_versions(n)]:
            errors = [e for name in missing for e in self.manager.load_errors(name)]
            if errors or (deadline is not None and time.monotonic() >= deadline):
                detail = ", ".join(errors) or ", ".join(f"No versions of servable {n} found" for n in missing)
                raise StartError(f"{len(missing)} model(s) did not become available: {{{detail}}}")
            log.warning("No versions of servable %s found under base path", ", ".join(missing))
            time.sleep(max(self.file_system_poll_seconds, 0.1))
            self.manager.refresh()
        self.start_grpc()
        if self.rest_port is not None:
            self.start_rest()
        self._stopping.clear()
        if self.file_system_poll_seconds > 0:
            self._poll("fs-poll", self.file_system_poll_seconds, self.manager.refresh)
        if self.model_config_file is not None and self.model_config_poll_seconds > 0:
            self._poll("config-poll", self.model_config_poll_seconds, self.reload_config)
        return self

    def reload_config(self) -> bool:
        """Read the model config file again; a bad one is logged and the current config stays."""
        assert self.model_config_file is not None
        try:
            entries = cfg.model_entries(cfg.read_model_server_config(self.model_config_file))
        except cfg.ConfigError as error:
            log.error("Failed to read ModelServerConfig file: %s", error)
            return False
        self.entries = entries
        self.manager.configure(entries)
        return True

    def start_grpc(self) -> None:
        unlimited = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=unlimited)
        add_services(server, self)
        port = server.add_insecure_port(f"{_bracket(self.host)}:{self.grpc_port}")
        if not port:
            raise StartError(f"could not bind gRPC to {self.host}:{self.grpc_port}")
        self.grpc_port = port
        server.start()
        self._grpc_server = server

    def stop_grpc(self) -> None:
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=0).wait()
            self._grpc_server = None

    def start_rest(self) -> None:
        self._http = start_http(self, self.host, self.rest_port or 0)
        self.rest_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="tfserving-rest", daemon=True).start()

    def stop_rest(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._pollers:
            thread.join(timeout=30)
        self._pollers.clear()
        self.stop_grpc()
        self.stop_rest()

    def _poll(self, name: str, seconds: float, action: Callable[[], object]) -> None:
        def loop() -> None:
            while not self._stopping.wait(seconds):
                try:
                    action()
                except Exception:  # a poll must never end the server
                    log.exception("%s failed", name)

        thread = threading.Thread(target=loop, name=f"tfserving-{name}", daemon=True)
        thread.start()
        self._pollers.append(thread)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
