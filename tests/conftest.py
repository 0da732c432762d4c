"""Session fixtures over the real test bed (Kafka broker, Kubernetes control plane) and per-test helpers.

A live bed started by ``make testbed-up`` is reused; otherwise the session starts its own and stops it at the
end. Tests that use any of these fixtures are marked ``testbed`` automatically (``make unit`` deselects them).
With KINFER_REAL_NODE=1 the bed runs a real node (tests/testbed/node/) and the tests that use the ``real_node``
fixture (marked ``realnode``) run; without it they are skipped.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.testbed import DEFAULT_ROOT, KafkaBroker, TestBed, component_dir, free_port
from tests.testbed.ledger import Ledger, tear_down
from tests.testbed.node import NodeAccess
from tests.testbed.process import pid_alive

BED_FIXTURES = {
    "testbed",
    "kafka_bootstrap",
    "kube_api",
    "namespace",
    "private_kafka",
    "private_kafka_factory",
    "secure_kafka",
    "real_node",
}


SESSION_ROOT = DEFAULT_ROOT / f"session-{os.getpid()}"
# Processes the tests start themselves (private brokers), recorded as the bed records its own.
PRIVATE = Ledger(SESSION_ROOT / "private.json")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove what killed sessions left behind: their beds and private brokers (their ledgers say what)."""
    for root in DEFAULT_ROOT.glob("session-*"):
        pid = root.name.removeprefix("session-")
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            TestBed.down(root)
            tear_down(root / "private.json")
            shutil.rmtree(root, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    tear_down(PRIVATE.path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.testbed)
        if "real_node" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realnode)
        if not real_node_wanted() and item.get_closest_marker("realnode"):
            item.add_marker(pytest.mark.skip(reason="needs the real node: KINFER_REAL_NODE=1 (after make images)"))


def real_node_wanted() -> bool:
    """Opt-in (CI sets it): the node's binaries and kinfer's images take half an hour to build cold."""
    return os.environ.get("KINFER_REAL_NODE") == "1"


@pytest.fixture(scope="session")
def testbed() -> Iterator[TestBed]:
    real_node = real_node_wanted()
    running = TestBed.attach(DEFAULT_ROOT)
    if running is not None and (running.real_node or not real_node):
        yield running
        return
    bed = TestBed(SESSION_ROOT, real_node=real_node).start()
    try:
        yield bed
    finally:
        bed.stop()


@pytest.fixture(scope="session")
def real_node(testbed: TestBed) -> NodeAccess:
    """The bed's real node: its name, IP, Kafka bootstrap servers for its pods, image references, placement."""
    assert testbed.real_node is not None, "the session bed was started without a real node"
    return testbed.real_node


@pytest.fixture(scope="session")
def kafka_bootstrap(testbed: TestBed) -> str:
    return testbed.bootstrap_servers


@pytest.fixture(scope="session")
def kube_api(testbed: TestBed) -> Any:
    from kubernetes import config

    return config.new_client_from_config(str(testbed.kubeconfig))


@pytest.fixture
def namespace(kube_api: Any) -> Iterator[str]:
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": name, "labels": {"kinfer.io/test": "true"}}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def private_kafka_factory(tmp_path: Path) -> Iterator[Callable[..., KafkaBroker]]:
    """Brokers of the test's own (not started), with ports from this session's block and recorded for clean-up;
    stopped at the end of the test."""
    made: list[KafkaBroker] = []

    def make(**options: Any) -> KafkaBroker:
        port = free_port()
        broker = KafkaBroker(
            component_dir("kafka") / "libs",
            tmp_path / f"kafka-{len(made)}",
            DEFAULT_ROOT / "logs" / f"private-kafka-{port}",
            port=port,
            controller_port=free_port(),
            on_spawn=lambda pid: PRIVATE.process("kafka", pid),
            **options,
        )
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture
def private_kafka(private_kafka_factory: Callable[..., KafkaBroker]) -> KafkaBroker:
    """A broker of the test's own, for tests that pause, kill or restart it."""
    return private_kafka_factory().start()


SECURE_KAFKA_USERS = {"scorer": "s3cret-Kinfer-pw-7731"}


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A broker of the module's own with SASL_PLAINTEXT and SASL_SSL listeners (PLAIN and SCRAM users)."""
    from tests.testbed.secure_kafka import SecureKafka

    root = tmp_path_factory.mktemp("secure-kafka")
    broker = SecureKafka(component_dir("kafka") / "libs", root, DEFAULT_ROOT / "logs" / "secure-kafka",
                         SECURE_KAFKA_USERS, on_spawn=lambda pid: PRIVATE.process("secure-kafka", pid))  # fmt: skip
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
