"""The bed's real node runs kinfer's runtime image the way the operator's pods run it.

One pod, hardened as the operator's consumer pods are (uid 10001, read-only root, ``drop: [ALL]``, seccomp
RuntimeDefault) with a ConfigMap and a Secret mounted, placed on the real node by its label and toleration. From
inside, it checks its own confinement, resolves a Service through CoreDNS, and talks to the bed's Kafka through
the broker's NODE listener: it consumes the record the test produced on the host and produces one back. What it
saw comes back through ``kubectl logs`` (the API server calling the kubelet).
"""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kubernetes import client

from tests.polling import wait_until
from tests.testbed import TestBed
from tests.testbed.node import NodeAccess

pytestmark = pytest.mark.realnode

# Runs in the pod with the image's python; prints one JSON line (what it saw), then exits 0.
POD_SCRIPT = """
import json, os, socket, sys, time
from confluent_kafka import Consumer, Producer
seen = {"uid": os.getuid(), "gid": os.getgid()}
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
seen["cap_eff"], seen["seccomp"] = status["CapEff"].strip(), status["Seccomp"].strip()
try:
    open("/written-by-a-test", "w")
except OSError as error:
    seen["root_write"] = error.strerror
seen["config"] = open("/etc/smoke/config/greeting").read()
seen["secret"] = open("/etc/smoke/secret/token").read()
seen["service_ip"] = socket.gethostbyname(os.environ["SERVICE_NAME"])
bootstrap, topic = os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["TOPIC"]
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pod-" + topic, "auto.offset.reset": "earliest"})
consumer.subscribe([topic])
deadline = time.monotonic() + 60
while "consumed" not in seen and time.monotonic() < deadline:
    message = consumer.poll(1.0)
    if message is not None and not message.error() and message.key() == b"from-host":
        seen["consumed"] = message.value().decode()
consumer.close()
producer = Producer({"bootstrap.servers": bootstrap})
producer.produce(topic, key=b"from-pod", value=json.dumps(seen).encode())
seen["unflushed"] = producer.flush(30)
print(json.dumps(seen), flush=True)
sys.exit(0 if "consumed" in seen and seen["unflushed"] == 0 else 1)
"""


def smoke_pod(node: NodeAccess, topic: str, service: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "smoke", "labels": {"app": "smoke"}},
        "spec": {
            **node.placement(),
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "smoke",
                    "image": node.images["runtime"],
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", POD_SCRIPT],
                    "env": [
                        {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": node.kafka_bootstrap},
                        {"name": "TOPIC", "value": topic},
                        {"name": "SERVICE_NAME", "value": service},
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/smoke/config", "readOnly": True},
                        {"name": "secret", "mountPath": "/etc/smoke/secret", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "config", "configMap": {"name": "smoke"}},
                {"name": "secret", "secret": {"secretName": "smoke"}},
            ],
        },
    }


def pod_in(core: client.CoreV1Api, namespace: str, *phases: str) -> Any:
    """The smoke pod once it is in one of ``phases``, else None."""
    pod = core.read_namespaced_pod("smoke", namespace)
    return pod if pod.status.phase in phases else None


def read_key(bootstrap: str, topic: str, key: bytes, timeout: float = 60) -> bytes:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"host-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and not message.error() and message.key() == key:
                return bytes(message.value() or b"")
    finally:
        consumer.close()
    raise AssertionError(f"no record with key {key!r} in {topic} within {timeout:.0f} s")


def test_a_hardened_pod_on_the_real_node(
    testbed: TestBed, real_node: NodeAccess, kube_api: client.ApiClient, namespace: str, kafka_bootstrap: str
) -> None:
    core = client.CoreV1Api(kube_api)
    topic = f"real-node-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"from-host", value=b"hello from the host")
    assert producer.flush(30) == 0
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "smoke"}, "data": {"greeting": "hello"}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "smoke"}, "stringData": {"token": "s3cret"}})
    service = core.create_namespaced_service(
        namespace, {"metadata": {"name": "smoke"}, "spec": {"selector": {"app": "smoke"}, "ports": [{"port": 80}]}}
    )
    service_name = f"smoke.{namespace}.svc.cluster.local"

    started = time.monotonic()
    core.create_namespaced_pod(namespace, smoke_pod(real_node, topic, service_name))
    pod = wait_until(lambda: pod_in(core, namespace, "Running", "Succeeded", "Failed"), 180, "the pod to start")
    running = time.monotonic() - started
    finished = wait_until(lambda: pod_in(core, namespace, "Succeeded", "Failed"), 180, "the pod to finish")
    done = time.monotonic() - started
    logs = testbed.kubectl("logs", "-n", namespace, "smoke").stdout
    assert finished.status.phase == "Succeeded", f"pod {finished.status.phase}; logs:\n{logs}"

    assert pod.spec.node_name == real_node.name
    pod_ip = ipaddress.ip_address(finished.status.pod_ip)
    assert pod_ip in ipaddress.ip_network(f"{real_node.ip}/24", strict=False) and str(pod_ip) != real_node.ip
    seen = json.loads(logs.strip().splitlines()[-1])
    assert (seen["uid"], seen["gid"]) == (10001, 10001)
    assert int(seen["cap_eff"], 16) == 0, "drop: [ALL] leaves no effective capability"
    assert seen["seccomp"] == "2", "RuntimeDefault: a seccomp filter is on"
    assert seen["root_write"] == "Read-only file system"
    assert (seen["config"], seen["secret"]) == ("hello", "s3cret")
    assert seen["service_ip"] == service.spec.cluster_ip, "CoreDNS answers the Service's ClusterIP"
    assert seen["consumed"] == "hello from the host"
    assert json.loads(read_key(kafka_bootstrap, topic, b"from-pod"))["consumed"] == "hello from the host"
    print(f"pod {pod_ip} on {real_node.name}: started in {running:.1f} s, done in {done:.1f} s")
