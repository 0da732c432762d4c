"""A single-node Apache Kafka 4.x broker in KRaft mode (combined broker and controller), run with ``java``.

The jars come from Maven Central through ``build.sh``; the broker is formatted with ``kafka.tools.StorageTool``
and started as ``kafka.Kafka``, exactly as the release scripts do. Settings are those of a one-node test cluster
(replication factor 1 for internal topics, no initial rebalance delay).
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import uuid
from pathlib import Path

from .process import ManagedProcess, StartError, free_port

# Log4j 2 to the console (the process log file), shared by every Java component of the bed.
LOG4J2_CONSOLE = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
"""
LOG4J2 = (
    LOG4J2_CONSOLE
    + """\
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.coordinator.name = org.apache.kafka.coordinator
logger.coordinator.level = WARN
"""
)


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's Uuid form).

    Like Kafka's own ``Uuid.randomUuid``, it never starts with "-": the storage tool's argument parser would read
    such an id as an option and fail the format (one id in 64 did, and failed a CI run).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(
    data_dir: Path, port: int, controller_port: int, extra_listeners: dict[str, int] | None = None, extra: str = ""
) -> str:
    """``extra_listeners`` maps a security protocol (``SASL_SSL``...) to its port; each is a listener of that name.
    ``extra`` is appended (the listeners' own settings)."""
    extra_listeners = extra_listeners or {}
    listeners = "".join(f",{name}://127.0.0.1:{extra_port}" for name, extra_port in extra_listeners.items())
    protocols = "".join(f",{name}:{name}" for name in extra_listeners)
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}{listeners}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}{listeners}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT{protocols}
log.dirs={data_dir}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
log.flush.interval.messages=9223372036854775807
{extra}"""


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class KafkaBroker:
    """One broker with its data in ``data_dir`` and its log in ``log_dir/kafka.log``."""

    def __init__(
        self,
        libs_dir: Path,
        data_dir: Path,
        log_dir: Path,
        port: int | None = None,
        heap_mb: int = 768,
        *,
        extra_listeners: dict[str, int] | None = None,
        extra_properties: str = "",
    ):
        self.extra_listeners = extra_listeners or {}
        self.extra_properties = extra_properties
        self.libs_dir = libs_dir
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.port = port or free_port()
        self.controller_port = free_port()
        self.heap_mb = heap_mb
        self.process: ManagedProcess | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, main_class: str, *args: str) -> list[str]:
        config = self.data_dir / "log4j2.properties"
        return [
            "java",
            f"-Xms{self.heap_mb // 2}m",
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",  # faster start; a test broker never runs long enough for C2 to pay off
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={config}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            f"{self.libs_dir}/*",
            main_class,
            *args,
        ]

    def format(self) -> None:
        """Write the configuration and format the log directory (once; a restart keeps the data)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "log4j2.properties").write_text(LOG4J2)
        properties = self.data_dir / "server.properties"
        properties.write_text(
            server_properties(
                self.data_dir / "log", self.port, self.controller_port, self.extra_listeners, self.extra_properties
            )
        )
        if (self.data_dir / "log" / "meta.properties").exists():
            return
        command = self._java(
            "kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(properties), "--ignore-formatted"
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StartError(f"test bed: Kafka format failed\ncommand: {' '.join(command)}\n{result.stderr[-3000:]}")

    def start(self) -> None:
        self.format()
        self.process = ManagedProcess(
            name="kafka",
            command=self._java("kafka.Kafka", str(self.data_dir / "server.properties")),
            log_path=self.log_dir / "kafka.log",
            ready=self._ready,
            start_timeout=120,
        )
        self.process.start()

    def _ready(self) -> bool:
        if not _port_open(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "socket.timeout.ms": 2000})
        metadata = admin.list_topics(timeout=3)
        return len(metadata.brokers) == 1

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def pause(self) -> None:
        """SIGSTOP: the broker stops answering but keeps its sockets open (a hung broker)."""
        if self.process:
            self.process.signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process:
            self.process.signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process:
            self.process.signal(signal.SIGCONT)
            self.process.signal(signal.SIGKILL)
            if self.process.popen is not None:
                self.process.popen.wait(30)

    def stop(self) -> None:
        if self.process:
            self.process.stop(timeout=30)

    def alive(self) -> bool:
        return bool(self.process and self.process.alive())


def java_available() -> bool:
    return any(os.access(Path(p) / "java", os.X_OK) for p in os.environ.get("PATH", "").split(os.pathsep))
