"""Each component of the test bed, exercised for real: Kafka, the API server with its controllers, kwok, helm."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kubernetes import client

from tests.testbed import KafkaBroker, TestBed
from tests.testbed.kafka import new_cluster_id

HERE = Path(__file__).parent


def kafka_roundtrip(bootstrap: str, records: int = 1000, timeout: float = 60) -> dict[int, int]:
    """Create a 3-partition topic, produce ``records`` and consume them back; returns records per partition."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 20000})
    delivered: list[bool] = []
    for i in range(records):
        producer.produce(topic, key=str(i), value=f"value-{i}", on_delivery=lambda e, _m: delivered.append(e is None))
        producer.poll(0)
    if producer.flush(30) != 0 or sum(delivered) != records:
        raise KafkaException(f"only {sum(delivered)} of {records} records delivered")
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": topic,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    per_partition: dict[int, int] = {}
    values: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(values) < records and time.monotonic() < deadline:
        for message in consumer.consume(500, timeout=0.5):
            if message.error():
                raise KafkaException(message.error())
            values.add(bytes(message.value() or b"").decode())
            partition = int(message.partition() or 0)
            per_partition[partition] = per_partition.get(partition, 0) + 1
    consumer.close()
    if len(values) != records:
        raise KafkaException(f"consumed {len(values)} of {records} records")
    return per_partition


def test_kafka_topic_produce_consume(kafka_bootstrap: str) -> None:
    per_partition = kafka_roundtrip(kafka_bootstrap)
    assert sum(per_partition.values()) == 1000
    assert sorted(per_partition) == [0, 1, 2], "records spread over the topic's three partitions"


def test_cluster_ids_are_never_read_as_an_option() -> None:
    """Kafka's storage tool reads an id starting with "-" as an option; 5000 ids would hit one 78 times on average."""
    ids = [new_cluster_id() for _ in range(5000)]
    assert not [cluster_id for cluster_id in ids if cluster_id.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(cluster_id + "==")) == 16 for cluster_id in ids)
    assert len(set(ids)) == len(ids)


def test_kafka_roundtrip_fails_when_broker_is_down(private_kafka: KafkaBroker) -> None:
    """The smoke check is not vacuous: against a stopped broker it fails."""
    assert sum(kafka_roundtrip(private_kafka.bootstrap_servers, records=50).values()) == 50
    private_kafka.stop()
    with pytest.raises(Exception):  # noqa: B017 - any client error (timeout, transport) is the point
        kafka_roundtrip(private_kafka.bootstrap_servers, records=50, timeout=10)


def test_crd_becomes_established(kube_api: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(kube_api)
    group = f"smoke{uuid.uuid4().hex[:6]}.kinfer.io"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    extensions.create_custom_resource_definition(crd)
    try:
        deadline = time.monotonic() + 60
        established = False
        while time.monotonic() < deadline and not established:
            conditions = extensions.read_custom_resource_definition(f"widgets.{group}").status.conditions or []
            established = any(c.type == "Established" and c.status == "True" for c in conditions)
            time.sleep(0.3)
        assert established, "CRD never became Established"
        created = client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
            group,
            "v1",
            "default",
            "widgets",
            {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}},
        )
        assert created["metadata"]["uid"]
    finally:
        extensions.delete_custom_resource_definition(f"widgets.{group}")


def test_deployment_gets_available_replicas_on_fake_nodes(kube_api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(kube_api)
    labels = {"app": "smoke"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "smoke"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
                },
            },
        },
    )
    deadline = time.monotonic() + 90
    available = 0
    while time.monotonic() < deadline and available != 3:
        available = apps.read_namespaced_deployment_status("smoke", namespace).status.available_replicas or 0
        time.sleep(0.5)
    assert available == 3
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector="app=smoke").items
    assert len(pods) == 3
    assert all(p.status.phase == "Running" and p.spec.node_name.startswith("kwok-node-") for p in pods)


def test_helm_install_and_uninstall(testbed: TestBed, kube_api: client.ApiClient, namespace: str) -> None:
    version = testbed.kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.36' in version, "server and client report the pinned Kubernetes version"
    testbed.helm("install", "smoke", str(HERE / "smoke-chart"), "--namespace", namespace, "--wait", "--timeout", "60s")
    config_map = client.CoreV1Api(kube_api).read_namespaced_config_map("smoke-smoke", namespace)
    assert config_map.data["message"] == "hello from helm"
    assert config_map.data["kubeVersion"].startswith("v1.36")
    assert "smoke" in testbed.helm("list", "--namespace", namespace, "--short").stdout.split()
    testbed.helm("uninstall", "smoke", "--namespace", namespace, "--wait")
    remaining = client.CoreV1Api(kube_api).list_namespaced_config_map(namespace).items
    assert "smoke-smoke" not in [c.metadata.name for c in remaining]


def test_the_bed_pins_the_kafka_the_product_runs() -> None:
    from kinfer_runtime.tools import broker_setup
    from tests.testbed.bed import read_versions

    versions = read_versions()
    assert (versions["KAFKA_VERSION"], versions["LOG4J_VERSION"]) == (
        broker_setup.KAFKA_VERSION,
        broker_setup.LOG4J_VERSION,
    ), "tests/testbed/versions.env and kinfer_runtime/tools/broker_setup.py must name the same Kafka"
