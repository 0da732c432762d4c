"""``kinfer kafka``: a single-node Apache Kafka broker on this machine, for ``kinfer run`` on a laptop and the demo.

The broker runs with ``java``, formatted with ``kafka.tools.StorageTool`` and started as ``kafka.Kafka``, exactly
as the release scripts do (jars and settings: :mod:`kinfer_runtime.tools.broker_setup`). ``kinfer kafka`` runs one
in the foreground until Ctrl-C; the demo and the test bed (tests/testbed/) use :class:`LocalKafka`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from kinfer_runtime.tools.broker_setup import (
    LOG4J2,
    KafkaStartError,
    free_port,
    kafka_libs,
    new_cluster_id,
    server_properties,
)

START_TIMEOUT_S = 120.0


class LocalKafka:
    """One broker: data in ``data_dir`` (kept across restarts), log in ``log_dir/kafka.log``.

    ``on_spawn(pid)`` is called as soon as the JVM exists, before it is ready, so that a caller can record it
    for clean-up even if the start never finishes. ``address_listeners`` (name -> (address, port)) are PLAINTEXT
    listeners beside loopback's, for clients in other network namespaces (:meth:`listener_address`)."""

    def __init__(
        self,
        libs_dir: Path,
        data_dir: Path,
        log_dir: Path,
        port: int | None = None,
        heap_mb: int = 768,
        *,
        controller_port: int | None = None,
        extra_listeners: dict[str, int] | None = None,
        extra_properties: str = "",
        address_listeners: dict[str, tuple[str, int]] | None = None,
        extra_listeners_host: str = "127.0.0.1",
        on_spawn: Callable[[int], None] | None = None,
    ):
        self.libs_dir, self.data_dir, self.log_dir = libs_dir, data_dir, log_dir
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.heap_mb = heap_mb
        self.extra_listeners = extra_listeners or {}
        self.extra_properties = extra_properties
        self.address_listeners = address_listeners or {}
        self.extra_listeners_host = extra_listeners_host  # where the extra (e.g. SASL) listeners bind
        self.on_spawn = on_spawn
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def listener_address(self, name: str) -> str:
        """``host:port`` of one of the ``address_listeners``: the bootstrap servers of the clients that use it."""
        host, port = self.address_listeners[name]
        return f"{host}:{port}"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def log_path(self) -> Path:
        return self.log_dir / "kafka.log"

    def _java(self, main_class: str, *args: str) -> list[str]:
        return [
            "java", f"-Xms{self.heap_mb // 2}m", f"-Xmx{self.heap_mb}m", "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",  # faster start; a local broker rarely runs long enough for C2 to pay off
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_dir}", "-cp", f"{self.libs_dir}/*", main_class, *args,
        ]  # fmt: skip

    def format(self) -> None:
        """Write the configuration and format the log directory (once; a restart keeps the data)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "log4j2.properties").write_text(LOG4J2)
        properties = self.data_dir / "server.properties"
        properties.write_text(server_properties(self.data_dir / "log", self.port, self.controller_port,
                                                self.extra_listeners, self.extra_properties,
                                                address_listeners=self.address_listeners,
                                                extra_listeners_host=self.extra_listeners_host))  # fmt: skip
        if (self.data_dir / "log" / "meta.properties").exists():
            return
        command = self._java("kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(properties),
                             "--ignore-formatted")  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaStartError(f"Kafka format failed\ncommand: {' '.join(command)}\n{result.stderr[-3000:]}")

    def start(self, timeout: float = START_TIMEOUT_S) -> LocalKafka:
        self.format()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = self._java("kafka.Kafka", str(self.data_dir / "server.properties"))
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(command)}\n".encode())
            log.flush()
            # A session of its own: stopping the broker never signals whoever started it.
            self.popen = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)  # fmt: skip
        if self.on_spawn is not None:
            self.on_spawn(self.popen.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise self._start_error(f"exited with code {self.popen.returncode}")
            if self.ready():
                return self
            time.sleep(0.25)
        raise self._start_error(f"not ready after {timeout:.0f} s")

    def ready(self) -> bool:
        from confluent_kafka.admin import AdminClient

        settings: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "socket.timeout.ms": 2000,
            "log_level": 0,
        }
        with AdminClient(settings) as admin:
            try:
                return len(admin.list_topics(timeout=3).brokers) == 1
            except Exception:  # not listening yet
                return False

    def _start_error(self, what: str) -> KafkaStartError:
        try:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])
        except FileNotFoundError:
            tail = "(no log written)"
        return KafkaStartError(f"Kafka {what}\nlog {self.log_path} (last lines):\n{tail}")

    def signal(self, signum: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signum)

    def pause(self) -> None:
        """SIGSTOP: the broker stops answering but keeps its sockets open (a hung broker)."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a paused broker is continued first), then SIGKILL after ``timeout``."""
        if self.popen is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(10)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@contextlib.contextmanager
def running_broker(port: int | None = None) -> Iterator[LocalKafka]:
    """A broker in a throwaway directory for the duration of the block (built on first use)."""
    root = Path(tempfile.mkdtemp(prefix="kinfer-kafka-"))
    broker = LocalKafka(kafka_libs(), root / "data", root / "logs", port)
    try:
        yield broker.start()
    finally:
        broker.stop()
        if broker.popen is not None and broker.popen.returncode not in (0, 143, -15):
            print(f"kafka exited with {broker.popen.returncode}; its log: {broker.log_path}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kinfer kafka", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=9092, help="PLAINTEXT port on 127.0.0.1 (default 9092)")
    parser.add_argument("--build", action="store_true", help="only resolve the broker's jars, then exit")
    args = parser.parse_args(argv)
    try:
        if args.build:
            print(kafka_libs())
            return 0
        with running_broker(args.port) as broker:
            print(f"Kafka ready at {broker.bootstrap_servers} (Ctrl-C stops it; log {broker.log_path})", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while broker.alive():
                    time.sleep(1)
    except KafkaStartError as error:
        print(f"kinfer kafka: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
