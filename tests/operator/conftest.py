"""Fixtures for the operator's test-bed tests: the CRD installed, and ``kinfer operator`` run as a real process.

The operator watches only the test's namespace, with a short timer (drift is restored within one period) and a
short give-up for unreachable Kafka. On teardown the test's pipelines are deleted while the operator still runs,
so no finalizer is left behind to hold up the namespace deletion.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.operator.bed import RECONCILE_SECONDS, Bed

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "kinfer.io_inferencepipelines.yaml"


@pytest.fixture(scope="session")
def pipeline_crd(testbed: Any) -> None:
    testbed.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    testbed.wait_established("inferencepipelines.kinfer.io")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OperatorProcess:
    """``kinfer operator`` as a subprocess watching one namespace; restartable, killable."""

    def __init__(self, testbed: Any, namespace: str, log_path: Path, extra_args: list[str] | None = None):
        self.testbed, self.namespace, self.log_path = testbed, namespace, log_path
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0

    def start(self) -> OperatorProcess:
        self.metrics_port = _free_port()
        args = [
            sys.executable,
            "-m",
            "kinfer_runtime.cli",
            "operator",
            "--namespace",
            self.namespace,
            "--standalone",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--external-metrics-port",
            str(_free_port()),
            "--reconcile-seconds",
            str(RECONCILE_SECONDS),
            "--delete-give-up-seconds",
            "8",
            *self.extra_args,
        ]
        env = dict(self.testbed.env)
        env.pop("KINFER_BOOTSTRAP_SERVERS", None)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited: {self.log_tail()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"operator did not come up: {self.log_tail()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text: str = response.read().decode()
            return text

    def metric(self, name: str, labels: str = "") -> float:
        prefix = f"{name}{{{labels}}}" if labels else name
        for line in self.metrics().splitlines():
            if line.startswith(prefix + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def rss_bytes(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crashed or evicted pod."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@pytest.fixture
def bed(testbed: Any, kube_api: Any, kafka_bootstrap: str, namespace: str, pipeline_crd: None) -> Bed:
    return Bed(testbed, kube_api, kafka_bootstrap, namespace)


@pytest.fixture
def operator(bed: Bed, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[OperatorProcess]:
    log_dir = Path(os.environ.get("KINFER_TEST_LOGS", tmp_path))
    process = OperatorProcess(bed.testbed, bed.namespace, log_dir / f"operator-{bed.namespace}.log").start()
    try:
        yield process
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(f"--- operator log ({process.log_path}) ---\n{process.log_tail(120)}")
        if process.process is not None and process.process.poll() is not None:
            process.start()  # a test killed it: deletion below needs a running operator
        bed.delete_all_pipelines(timeout=90)
        process.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
