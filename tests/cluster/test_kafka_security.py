"""SASL and TLS from Secrets, on real pods: a pipeline whose Kafka speaks SASL_SSL (SCRAM-SHA-512, a CA of its own)
gets its topics made by the operator pods and its records scored by consumer pods that log in with the Secret's
credentials, mounted as files, and trust the CA from the other Secret.

The broker is one of the test's own with its SASL listeners on the real node's bridge address (where pods reach
the host) and a server certificate for that address; the set-up and the reading of results use its PLAINTEXT
listener on loopback.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.cluster import ClusterBed, TopicReader, fraud_records, produce, topic
from tests.conftest import PRIVATE, SECURE_KAFKA_USERS
from tests.testbed import DEFAULT_ROOT, component_dir
from tests.testbed.node import NodeAccess

pytestmark = pytest.mark.realnode
USER, PASSWORD = next(iter(SECURE_KAFKA_USERS.items()))


@pytest.fixture(scope="module")
def node_secure_kafka(real_node: NodeAccess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.testbed.secure_kafka import SecureKafka

    broker = SecureKafka(
        component_dir("kafka") / "libs",
        tmp_path_factory.mktemp("node-secure-kafka"),
        DEFAULT_ROOT / "logs" / "node-secure-kafka",
        SECURE_KAFKA_USERS,
        on_spawn=lambda pid: PRIVATE.process("node-secure-kafka", pid),
        host=real_node.ip,
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def secret(name: str, values: dict[str, str]) -> dict[str, Any]:
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    return {"metadata": {"name": name}, "data": data}


def test_sasl_ssl_credentials_and_ca_from_secrets_on_real_pods(cluster: ClusterBed, node_secure_kafka: Any) -> None:
    broker = node_secure_kafka
    cluster.core.create_namespaced_secret(cluster.namespace, secret("kafka-login", {"username": USER,
                                                                                    "password": PASSWORD}))  # fmt: skip
    ca = broker.tls.ca_certificate.read_text()
    cluster.core.create_namespaced_secret(cluster.namespace, secret("kafka-ca", {"ca.crt": ca}))
    name, count = "secured", 300
    manifest = cluster.pipeline(
        name,
        partitions=2,
        kafka={
            "bootstrapServers": broker.bootstrap("SASL_SSL"),
            "securityProtocol": "SASL_SSL",
            "sasl": {"mechanism": "SCRAM-SHA-512", "secretName": "kafka-login"},
            "tls": {"secretName": "kafka-ca"},
        },
    )
    output = TopicReader(broker.plaintext_bootstrap, topic(manifest, "output"))
    try:
        cluster.apply(manifest)
        cluster.wait_ready(name, timeout=240)
        records = fraud_records(count, seed=41)
        produce(broker.plaintext_bootstrap, topic(manifest, "input"), records)
        scored = output.until(lambda got: len({r.key for r in got}) >= count, 300, "every record scored")
    finally:
        output.close()
    assert {r.key for r in scored} == {key for key, _ in records}
    pod = cluster.pods(name)[0]
    mounted = {v.name: v.secret.secret_name for v in pod.spec.volumes if v.secret is not None}
    assert set(mounted.values()) >= {"kafka-login", "kafka-ca"}, mounted
    assert PASSWORD not in str(pod.spec.containers[0].env), "credentials are mounted as files, not put in env"
