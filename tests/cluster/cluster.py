"""Helpers of the real-cluster tests: kinfer installed by its chart with the images built from this tree, pipelines
whose pods run on the bed's real node, records in and out through the bed's Kafka, and what the pods expose.

Pods reach Kafka at the broker's NODE listener (``NodeAccess.kafka_bootstrap``, on the node's bridge address);
the test process reads and writes through the same broker on loopback. Nothing here is a stand-in for Kubernetes
or Kafka: the operator and consumers are the images' own processes, started by the kubelet.
"""

from __future__ import annotations

import shutil
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from kubernetes import client

from kinfer_operator.builders import naming
from kinfer_runtime.tools.synthetic import fraud_transactions
from tests.helm.chart import CHART
from tests.helm.release import Release
from tests.operator.bed import Bed
from tests.operator.pipelines import deep_update
from tests.polling import wait_until
from tests.testbed import TestBed
from tests.testbed.node import NodeAccess

BAKED_FRAUD_MODEL = "/opt/kinfer/models/fraud"  # images/runtime.Dockerfile copies models/ there
REPO = Path(__file__).resolve().parents[2]
RUNTIME_RESOURCES = {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1536Mi"}}


def split_image(reference: str) -> tuple[str, str]:
    """``registry/name:tag`` -> (``registry/name``, ``tag``); a port in the registry is not a tag."""
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        return reference, ""
    return name, tag


def chart_values(node: NodeAccess, peering: str, replicas: int) -> dict[str, Any]:
    """Values of an install on the real node: the operator and runtime images built from this tree (never
    pulled), the operator pods placed on the real node, the lag read every 2 s so that scaling is quick."""
    operator_repository, operator_tag = split_image(node.images["operator"])
    runtime_repository, runtime_tag = split_image(node.images["runtime"])
    placement = node.placement()
    return {
        "image": {"repository": operator_repository, "tag": operator_tag, "pullPolicy": "Never"},
        "runtimeImage": {"repository": runtime_repository, "tag": runtime_tag},
        "replicaCount": replicas,
        "peering": {"enabled": True, "name": peering},
        "operator": {"lagPollSeconds": 2},
        "nodeSelector": placement["nodeSelector"],
        "tolerations": placement["tolerations"],
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "768Mi"}},
    }


def helm_install(bed: TestBed, release: Release, values: dict[str, Any]) -> str:
    """``helm install --wait``: returns once the operator pods are Ready (their readiness probe is /readyz)."""
    args = ["install", release.name, str(CHART), "-n", release.namespace, "--wait", "--timeout", "300s"]
    return bed.helm(*args, "-f", "-", input=yaml.safe_dump(values)).stdout


def topic(manifest: dict[str, Any], role: str) -> str:
    """The name of a pipeline's ``input``, ``output`` or ``deadLetter`` topic."""
    return str(manifest["spec"]["topics"][role]["name"])


class ClusterBed(Bed):
    """One test's namespace, with pipelines whose pods run on the real node."""

    def __init__(self, testbed: TestBed, api: Any, bootstrap: str, namespace: str, node: NodeAccess):
        super().__init__(testbed, api, bootstrap, namespace)
        self.node = node

    def pipeline(self, name: str, partitions: int = 3, **spec_changes: Any) -> dict[str, Any]:
        """The fraud sample with its model baked in the runtime image, placed on the real node, reaching Kafka
        at the node's listener; topics unique to the test."""
        placement = self.node.placement()
        consumer = {
            "resources": RUNTIME_RESOURCES,
            "placement": {"nodeSelector": placement["nodeSelector"], "tolerations": placement["tolerations"]},
            "maxBatchWaitMs": 10,
        }
        manifest = self.manifest(
            name,
            partitions=partitions,
            kafka={"bootstrapServers": self.node.kafka_bootstrap},
            model={"name": "fraud", "uri": BAKED_FRAUD_MODEL},
            consumer=consumer,
        )
        manifest["spec"].pop("deletionPolicy", None)  # default Delete: the test's topics go with it
        deep_update(manifest["spec"], spec_changes)
        return manifest

    def pods(self, name: str, component: str = "consumer") -> list[Any]:
        selector = f"{naming.LABEL_PIPELINE}={name},{naming.LABEL_COMPONENT}={component}"
        pods: list[Any] = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return pods

    def ready_pods(self, name: str, component: str = "consumer") -> list[Any]:
        return [pod for pod in self.pods(name, component) if pod_ready(pod)]

    def wait_ready_pods(self, name: str, count: int, timeout: float = 120) -> list[Any]:
        """The pipeline's consumer pods once ``count`` are Ready: the kubelet probes /readyz every 5 s, and a pod
        is ready only once it has partitions, which can come after it scored its first records."""

        def ready() -> list[Any]:
            pods = self.ready_pods(name)
            return pods if len(pods) == count else []

        return wait_until(ready, timeout, f"{count} Ready consumer pods of {name}")

    def deployment_replicas(self, deployment: str) -> tuple[int, int]:
        """(spec.replicas, status.readyReplicas) of a Deployment."""
        live = self.apps.read_namespaced_deployment(deployment, self.namespace)
        return live.spec.replicas or 0, live.status.ready_replicas or 0


def pod_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None or pod.status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def pod_log(core: client.CoreV1Api, namespace: str, pod: str, container: str | None = None) -> str:
    text: str = core.read_namespaced_pod_log(pod, namespace, container=container)
    return text


def scrape(pod_ip: str, port: int, path: str = "/metrics") -> str:
    """GET a pod's HTTP endpoint from the host (the node's bridge routes to pod addresses)."""
    with urllib.request.urlopen(f"http://{pod_ip}:{port}{path}", timeout=10) as response:
        return str(response.read().decode())


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus metric's samples whose labels include ``labels`` (0 when there is none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        if all(f'{key}="{wanted}"' in label_text for key, wanted in labels.items()):
            total += float(value)
    return total


# --- Kafka ---------------------------------------------------------------------------------------------------


def fraud_records(count: int, seed: int, bad: Iterable[bytes] = ()) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: ``count`` synthetic card transactions keyed by their id, then the ``bad`` values."""
    transactions, _ = fraud_transactions(count, seed)
    records = [(tx["transaction_id"].encode(), orjson.dumps(tx)) for tx in transactions]
    records += [(f"bad-{seed}-{i}".encode(), value) for i, value in enumerate(bad)]
    return records


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
    assert producer.flush(60) == 0, "records left unsent"
    return count


@dataclass
class Received:
    key: bytes
    value: bytes
    headers: dict[str, bytes]
    at: float  # time.monotonic() when the test read it


class TopicReader:
    """Reads a topic from the beginning (all partitions, no group), keeping what arrived and when."""

    def __init__(self, bootstrap: str, topic: str, isolation: str = "read_committed"):
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"cluster-test-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": isolation,
            }
        )
        self.topic = topic
        self.assigned = 0
        self.received: list[Received] = []

    def _assign(self) -> None:
        metadata = self.consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        partitions = sorted((metadata.partitions if metadata and metadata.error is None else {}).keys())
        if len(partitions) > self.assigned:
            self.consumer.assign([TopicPartition(self.topic, p, 0) for p in partitions])
            self.assigned = len(partitions)
            self.received.clear()  # reassigned from the start: read everything again

    def poll(self, seconds: float) -> list[Received]:
        self._assign()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for message in self.consumer.consume(500, timeout=0.5):
                if message.error() is None:
                    raw: Any = message.headers() or []
                    headers = {k: v if isinstance(v, bytes) else str(v or "").encode() for k, v in raw}
                    key, value = bytes(message.key() or b""), bytes(message.value() or b"")
                    self.received.append(Received(key, value, headers, time.monotonic()))
        return self.received

    def until(self, done: Callable[[list[Received]], bool], timeout: float, what: str) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(self.poll(1.0)):
                return self.received
        keys = {r.key for r in self.received}
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; {len(keys)} keys read")

    def close(self) -> None:
        self.consumer.close()


def model_volume(cluster: ClusterBed, directory: Path, claim: str) -> None:
    """A PersistentVolume on the node holding models/fraud at fraud/, bound to the claim ``claim``."""
    shutil.copytree(REPO / "models" / "fraud", directory / "fraud")
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the pods run as uid 10001
    host_path_claim(cluster, directory, claim, "ReadOnlyMany")


def host_path_claim(cluster: ClusterBed, directory: Path, claim: str, access_mode: str) -> None:
    """A PersistentVolume of a directory on the node, bound to the claim ``claim`` (both named ``claim``: a
    PersistentVolume is cluster-wide, and the tests of the package share one namespace)."""
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": claim, "labels": {"kinfer.io/test": "true"}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": [access_mode],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(directory), "type": "Directory"},
            "claimRef": {"namespace": cluster.namespace, "name": claim},
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": cluster.namespace},
        "spec": {
            "accessModes": [access_mode],
            "storageClassName": "",
            "volumeName": claim,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    items = orjson.dumps({"apiVersion": "v1", "kind": "List", "items": [pv, pvc]}).decode()
    cluster.testbed.kubectl("apply", "-f", "-", input=items)
