"""A pipeline cannot make the operator reach what the installation does not allow (docs/security.md): a Kafka
cluster outside ``--allowed-bootstrap``, a Kafka Connect URL outside the allowed ones, a Secret without the
required label. Each is InvalidSpec before any connection: the test's own listeners see none."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.operator.bed import RECONCILE_SECONDS, Bed
from tests.operator.conftest import OperatorProcess
from tests.testbed import free_port


class Listener:
    """A TCP port that counts the connections it is offered (and answers none of them)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def strict_operator(bed: Bed, tmp_path: Path) -> Iterator[OperatorProcess]:
    args = [f"--allowed-bootstrap={bed.bootstrap}", "--secret-label=kinfer.io/use=true"]
    process = OperatorProcess(bed.testbed, bed.namespace, tmp_path / "operator.log", extra_args=args).start()
    try:
        yield process
    finally:
        bed.delete_all_pipelines(timeout=90)
        process.stop()


def message(bed: Bed, name: str) -> str:
    return str(bed.wait_reason(name, "Ready", "InvalidSpec")["message"])


def test_a_pipeline_cannot_send_the_operator_elsewhere(bed: Bed, strict_operator: Any, listener: Listener) -> None:
    elsewhere = f"127.0.0.1:{listener.port}"
    bed.apply(bed.manifest("exfil", kafka={"bootstrapServers": elsewhere}))
    assert f"{elsewhere} is not a Kafka cluster this kinfer installation may connect to" in message(bed, "exfil")
    connect = bed.manifest(
        "ssrf",
        ingestion={
            "connectUrl": f"http://127.0.0.1:{listener.port}/",
            "connectors": [{"name": "files", "connectorClass": "FileStreamSource", "config": {"file": "/etc/hosts"}}],
        },
    )
    bed.apply(connect)
    assert "is not a Kafka Connect API this kinfer installation may call" in message(bed, "ssrf")
    time.sleep(2 * RECONCILE_SECONDS + 1)  # several passes of the resync: still nothing
    assert listener.accepted == 0, "the operator connected to an address the installation does not allow"
    assert not bed.children("exfil") and not bed.children("ssrf"), "nothing is created for a refused spec"


def test_a_secret_without_the_required_label_is_not_used(bed: Bed, strict_operator: Any) -> None:
    data = {"username": base64.b64encode(b"u").decode(), "password": base64.b64encode(b"p").decode()}
    bed.core.create_namespaced_secret(bed.namespace, {"metadata": {"name": "someone-elses"}, "data": data})
    sasl = {"securityProtocol": "SASL_PLAINTEXT", "sasl": {"mechanism": "PLAIN", "secretName": "someone-elses"}}
    bed.apply(bed.manifest("borrow", kafka=sasl))
    assert "Secret 'someone-elses' is not labelled kinfer.io/use=true" in message(bed, "borrow")
