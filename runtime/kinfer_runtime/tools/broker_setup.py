"""What a local Kafka broker is made of: its jars, resolved from Maven Central, and its configuration.

No tarball and no Docker: ``kafka-pom.xml`` beside this module is resolved once with ``mvn`` into
``~/.cache/kinfer/kafka-<version>/`` (or ``$KINFER_CACHE``). The broker runs in KRaft mode (combined broker and
controller) with the settings of a one-node cluster (replication factor 1 for internal topics, no initial
rebalance delay). :mod:`kinfer_runtime.tools.local_kafka` starts it.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
POM = Path(__file__).with_name("kafka-pom.xml")

# Log4j 2 to the console (the process log file), shared by every Java component started this way.
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


class KafkaStartError(RuntimeError):
    """The broker could not be built or did not become ready; the message has the command and the log's tail."""


def cache_dir() -> Path:
    return Path(os.environ.get("KINFER_CACHE", Path.home() / ".cache" / "kinfer"))


def kafka_libs(version: str = KAFKA_VERSION, build: bool = True) -> Path:
    """The directory of the broker's jars, resolved with Maven on first use (into a temporary directory that is
    renamed when complete, so an interrupted build never looks finished)."""
    done = cache_dir() / f"kafka-{version}"
    if (done / ".done").exists():
        return done / "libs"
    if not build:
        raise KafkaStartError(f"Kafka {version} is not built ({done}); run `kinfer kafka --build`")
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            raise KafkaStartError(f"building Kafka needs `{tool}` on PATH (Java 17 and Maven)")
    done.parent.mkdir(parents=True, exist_ok=True)
    tmp = done.parent / f"{done.name}.tmp.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"resolving Kafka {version} from Maven Central into {done} (once) ...", file=sys.stderr, flush=True)
    versions = [f"-Dkafka.version={version}", f"-Dlog4j.version={LOG4J_VERSION}"]
    command = ["mvn", "-B", "-q", "-f", str(POM), *versions, f"-DoutputDirectory={tmp / 'libs'}",
               "dependency:copy-dependencies", "-DincludeScope=runtime"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KafkaStartError(
            f"Maven could not resolve Kafka {version}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    (tmp / ".done").touch()
    shutil.rmtree(done, ignore_errors=True)
    tmp.rename(done)
    return done / "libs"


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's Uuid form).

    Like Kafka's own ``Uuid.randomUuid``, it never starts with "-": the storage tool's argument parser would read
    such an id as an option and fail the format (one id in 64 would).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (another process may take it before the broker binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_properties(
    data_dir: Path,
    port: int,
    controller_port: int,
    extra_listeners: dict[str, int] | None = None,
    extra: str = "",
    *,
    address_listeners: dict[str, tuple[str, int]] | None = None,
    extra_listeners_host: str = "127.0.0.1",
) -> str:
    """``extra_listeners`` maps a listener name (``SASL_SSL``...) to its port on ``extra_listeners_host``, each
    with the protocol of that name; ``extra`` is appended (the listeners' own settings). ``address_listeners`` maps
    a listener name to an (address, port) outside loopback, PLAINTEXT and advertised as it is: clients that cannot
    reach 127.0.0.1 (pods in a network namespace) connect there."""
    extra_listeners = extra_listeners or {}
    address_listeners = address_listeners or {}
    host = extra_listeners_host
    listeners = "".join(f",{name}://{host}:{extra_port}" for name, extra_port in extra_listeners.items())
    listeners += "".join(f",{name}://{addr}:{addr_port}" for name, (addr, addr_port) in address_listeners.items())
    protocols = "".join(f",{name}:{name}" for name in extra_listeners)
    protocols += "".join(f",{name}:PLAINTEXT" for name in address_listeners)
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
