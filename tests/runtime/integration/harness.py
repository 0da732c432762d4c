"""Helpers for the runtime's integration tests: topics, input records, a ``kinfer run`` subprocess, and a reader
that follows the output and dead-letter topics. Everything talks to a real broker; nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.testbed import REPO_ROOT, free_port

KINFER = REPO_ROOT / ".venv" / "bin" / "kinfer"
FRAUD_MODEL = REPO_ROOT / "models" / "fraud"
GOOD_TRANSACTION = {
    "amount": 42.5,
    "hour": 14,
    "distance_km": 3.2,
    "merchant_risk": 0.2,
    "merchant_category": "grocery",
    "country": "US",
    "channel": "pos",
}


@dataclass
class Topics:
    input: str
    output: str
    dead_letter: str


def create_topics(bootstrap: str, partitions: int = 3, prefix: str = "rt") -> Topics:
    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    topics = Topics(f"{tag}-in", f"{tag}-out", f"{tag}-dlq")
    with AdminClient({"bootstrap.servers": bootstrap}) as admin:
        futures = admin.create_topics(
            [NewTopic(t, partitions, 1) for t in (topics.input, topics.output, topics.dead_letter)]
        )
        for future in futures.values():
            future.result(30)
    return topics


def manifest(
    name: str,
    bootstrap: str,
    topics: Topics,
    *,
    delivery: str = "atLeastOnce",
    kafka_config: dict[str, str] | None = None,
    preprocessing: dict[str, Any] | None = None,
    max_batch_size: int = 256,
    model: str = "fraud",
    serving: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "kafka": {
            "bootstrapServers": bootstrap,
            # A killed member's partitions move after 10 s instead of 45 s (static members rejoin at once anyway).
            "config": {"session.timeout.ms": "10000", "heartbeat.interval.ms": "1000", **(kafka_config or {})},
        },
        "topics": {
            "input": {"name": topics.input},
            "output": {"name": topics.output},
            "deadLetter": {"name": topics.dead_letter},
        },
        "model": {"name": model, "uri": f"pvc://models/{model}"},
        # A group of its own per run: a static member of an earlier run (same pod name, same pipeline name) must
        # not hand this one its old assignment.
        "consumer": {
            "maxBatchSize": max_batch_size,
            "maxBatchWaitMs": 20,
            "delivery": delivery,
            "group": f"kinfer-{name}-{topics.input}",
        },
    }
    if preprocessing:
        spec["preprocessing"] = preprocessing
    if serving:
        spec["serving"] = serving
    return {"apiVersion": "kinfer.io/v1alpha1", "kind": "InferencePipeline", "metadata": {"name": name}, "spec": spec}


def transactions(count: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs with unique keys ``k-<n>``; values vary a little so predictions differ."""
    records = []
    for n in range(start, start + count):
        value = dict(GOOD_TRANSACTION, amount=round(5 + (n % 997) * 0.37, 2), hour=n % 24)
        records.append((f"k-{n}".encode(), orjson.dumps(value)))
    return records


def produce(bootstrap: str, topic: str, records: Iterable[tuple[Any, ...]], **extra: Any) -> int:
    """Produce ``(key, value)`` or ``(key, value, headers)`` tuples and wait until every one is acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "acks": "all", **extra})
    failed: list[Any] = []

    def on_delivery(error: Any, _message: Any) -> None:
        if error is not None:
            failed.append(error)

    sent = 0
    for key, value, *headers in records:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers[0] if headers else None, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        if sent % 5000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0 and not failed, f"input not delivered: {failed[:3]}"
    return sent


@dataclass
class Seen:
    """Records read from the output or dead-letter topic."""

    keys: Counter[bytes] = field(default_factory=Counter)
    messages: list[Any] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.keys.values())


class TopicReader:
    """Follows topics from the beginning without a consumer group (nothing it does can affect the runtime)."""

    def __init__(self, bootstrap: str, topics: list[str], committed_only: bool = False, keep_messages: bool = False):
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "reconnect.backoff.max.ms": 1000,
                "isolation.level": "read_committed" if committed_only else "read_uncommitted",
            }
        )
        metadata = self.consumer.list_topics(timeout=30)
        partitions = [
            TopicPartition(t, p, 0) for t in topics for p in metadata.topics[t].partitions
        ]  # offset 0: from the start
        self.consumer.assign(partitions)
        self.seen = {t: Seen() for t in topics}
        self.keep_messages = keep_messages

    def poll(self, seconds: float = 0.5) -> None:
        for message in self.consumer.consume(5000, seconds):
            if message.error():
                continue
            seen = self.seen[message.topic() or ""]
            seen.keys[message.key() or b""] += 1
            if self.keep_messages:
                seen.messages.append(message)

    def wait_for(self, condition: Callable[[], bool], timeout: float, describe: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {describe}: {self.totals()}")
            self.poll()

    def totals(self) -> dict[str, int]:
        return {topic: seen.total for topic, seen in self.seen.items()}

    def close(self) -> None:
        self.consumer.close()


class RuntimeProcess:
    """``kinfer run`` as a child process, the way the container runs it."""

    def __init__(
        self,
        pipeline: dict[str, Any],
        workdir: Path,
        bootstrap: str,
        pod_name: str | None = None,
        model_path: Path = FRAUD_MODEL,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ):
        self.env = env or {}
        self.model_path = model_path
        self.extra_args = list(extra_args)
        self.path = workdir / f"{pipeline['metadata']['name']}.yaml"
        self.path.write_text(yaml.safe_dump(pipeline))
        self.workdir = workdir
        self.bootstrap = bootstrap
        self.pod_name = pod_name
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.path.stem}-{self.pod_name or 'run'}.log"

    def start(self) -> RuntimeProcess:
        self.port = free_port()
        command = [str(KINFER), "run", str(self.path), "--model-path", str(self.model_path), "--bootstrap-servers",
                   self.bootstrap, "--metrics-port", str(self.port)]  # fmt: skip
        if self.pod_name:
            command += ["--pod-name", self.pod_name]
        command += self.extra_args
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {self.starts}\n".encode())
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **self.env)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab"), env=env)  # noqa: SIM115
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while self.get("/readyz")[0] != 200:
            if not self.alive():
                raise AssertionError(
                    f"kinfer run exited ({self.process and self.process.returncode}):\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"kinfer run not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.2)

    def metric(self, name: str) -> float:
        """Sum of a metric's samples (0 when absent)."""
        status, body = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}"
        total = 0.0
        for line in body.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            assert self.process is not None
            self.process.wait(30)

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
        return self.process.wait(timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def cpu_seconds(self) -> float:
        """User+system CPU time of the process so far (from /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.alive():
            try:
                self.terminate(30)
            except subprocess.TimeoutExpired:
                self.kill()


class SteadyProducer:
    """Produces ``transactions`` at a fixed rate on a thread until stopped; remembers which keys were acked."""

    def __init__(self, bootstrap: str, topic: str, rate: float):
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
        self.topic, self.rate = topic, rate
        self.acked: set[bytes] = set()
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is None:
            self.acked.add(message.key())
        else:
            self.failed += 1

    def _run(self) -> None:
        started, n = time.monotonic(), 0
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            for key, value in transactions(due - n, start=n):
                try:
                    self.producer.produce(self.topic, value, key, on_delivery=self._on_delivery)
                except BufferError:
                    break
                n += 1
            self.producer.poll(0.02)

    def start(self) -> SteadyProducer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.producer.flush(120)
