"""A Kafka Connect worker in distributed mode for the ingestion tests, run with ``java`` from the cached jars.

The jars come from Maven Central through ``tests/testbed/build.sh connect`` (cached in
``~/.cache/kinfer/connect-<kafka version>/libs``); the main class is the one ``connect-distributed.sh`` runs.
Each worker gets its own group and internal topics, so tests never share Connect state.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from pathlib import Path

from tests.testbed.bed import cache_dir, read_versions
from tests.testbed.kafka import LOG4J2_CONSOLE
from tests.testbed.process import ManagedProcess, free_port

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent / "testbed" / "build.sh"
LOG4J2 = (
    LOG4J2_CONSOLE
    + """\
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
"""
)


def connect_libs() -> Path:
    """The worker's jars, built on first use (a warm cache makes this a no-op)."""
    libs = cache_dir() / f"connect-{read_versions()['KAFKA_VERSION']}" / "libs"
    if not (libs.parent / ".done").exists():
        subprocess.run(["bash", str(BUILD), "connect"], check=True)
    return libs


def worker_properties(bootstrap: str, port: int, name: str) -> str:
    return f"""\
bootstrap.servers={bootstrap}
group.id={name}
listeners=http://127.0.0.1:{port}
rest.advertised.host.name=127.0.0.1
rest.advertised.port={port}
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
config.storage.topic={name}-configs
offset.storage.topic={name}-offsets
status.storage.topic={name}-status
config.storage.replication.factor=1
offset.storage.replication.factor=1
offset.storage.partitions=1
status.storage.replication.factor=1
status.storage.partitions=1
offset.flush.interval.ms=1000
task.shutdown.graceful.timeout.ms=2000
"""


class ConnectWorker:
    """One distributed-mode worker; ``url`` is its REST endpoint."""

    def __init__(self, bootstrap: str, work_dir: Path, heap_mb: int = 512) -> None:
        self.port = free_port()
        self.name = f"kinfer-connect-{uuid.uuid4().hex[:8]}"
        self.work_dir = work_dir
        self.bootstrap = bootstrap
        self.heap_mb = heap_mb
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ConnectWorker:
        libs = connect_libs()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "log4j2.properties").write_text(LOG4J2)
        properties = self.work_dir / "worker.properties"
        properties.write_text(worker_properties(self.bootstrap, self.port, self.name))
        command = [
            "java", f"-Xms{self.heap_mb // 2}m", f"-Xmx{self.heap_mb}m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.properties'}",
            "-cp", f"{libs}/*", "org.apache.kafka.connect.cli.ConnectDistributed", str(properties),
        ]  # fmt: skip
        self.process = ManagedProcess("kafka-connect", command, self.work_dir / "connect.log", self._ready,
                                      start_timeout=180)  # fmt: skip
        self.process.start()
        return self

    def _ready(self) -> bool:
        # /connectors answers only once the worker has joined its group and read the config topic.
        with urllib.request.urlopen(f"{self.url}/connectors", timeout=3) as response:
            return response.status == 200 and isinstance(json.load(response), list)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)
