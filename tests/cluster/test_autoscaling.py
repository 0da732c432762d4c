"""Autoscaling on real consumption: the operator's lag metric, the real HPA and real consumer pods.

A pipeline with ``minReplicas: 0`` sits at zero pods; a backlog produced into its input topic wakes it, the HPA
scales it out to the partition count, the new pods join the consumer group and drain the backlog, and once idle
past the cooldown it goes back to zero. With two operator replicas, every call of the HPA (through the API
server's aggregator and the chart's Service, to either pod) gets a value: the standby answers too.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from tests.autoscaling.report import record
from tests.cluster.cluster import ClusterBed, TopicReader, fraud_records, metric_value, produce, scrape, topic
from tests.cluster.conftest import Installed
from tests.polling import wait_until

pytestmark = pytest.mark.realnode
PARTITIONS = 3
OPERATOR_METRICS_PORT = 8080


def scaling(**changes: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "minReplicas": 0,
        "maxReplicas": PARTITIONS,
        "lagThreshold": 200,
        "cooldownSeconds": 20,
        "scaleUpStabilizationSeconds": 0,
        "scaleDownStabilizationSeconds": 10,
        **changes,
    }


class Sampler:
    """Samples, every half second on a thread, the Deployment's ready pods and the consumer group's members (the
    pods that joined it): a backlog can drain between two polls of the output."""

    def __init__(self, cluster: ClusterBed, deployment: str, group: str):
        self.cluster, self.deployment, self.group = cluster, deployment, group
        self.admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        self.ready: list[int] = [0]
        self.members: list[int] = [0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.ready.append(self.cluster.deployment_replicas(self.deployment)[1])
            described = self.admin.describe_consumer_groups([self.group])[self.group].result(10)
            self.members.append(len(described.members))


def test_a_backlog_wakes_a_pipeline_from_zero_scales_it_out_and_back(cluster: ClusterBed, kafka_bootstrap: str) -> None:
    name, count = "fraud-scale", 120_000
    deployment = f"{name}-consumer"
    manifest = cluster.pipeline(name, partitions=PARTITIONS, autoscaling=scaling())
    cluster.apply(manifest)
    wait_until(lambda: cluster.topic_partitions(topic(manifest, "input")), 120, "the input topic")
    wait_until(lambda: cluster.deployment_replicas(deployment)[0] == 0, 180, "the idle pipeline at zero pods")

    output = TopicReader(kafka_bootstrap, topic(manifest, "output"))
    records = fraud_records(count, seed=21)
    keys = {key for key, _ in records}
    sampler = Sampler(cluster, deployment, manifest["spec"]["consumer"].get("group") or f"kinfer-{name}").start()
    try:
        started = time.monotonic()
        produce(kafka_bootstrap, topic(manifest, "input"), records)
        produced = time.monotonic() - started
        scored = output.until(lambda got: {r.key for r in got} >= keys, 600, "the backlog drained")
        drained_after = time.monotonic() - started
    finally:
        output.close()
        sampler.stop()
    woke = next(r.at for r in scored) - started
    most = max(sampler.members)
    assert most == PARTITIONS, f"real pods in the consumer group, at most {most} (ready pods: {set(sampler.ready)})"
    wait_until(lambda: cluster.deployment_replicas(deployment) == (0, 0), 240, "back to zero pods when idle")
    back_to_zero = time.monotonic() - started
    figures = {
        "records": count,
        "produce_s": round(produced, 1),
        "first_scored_after_s": round(woke, 1),
        "drained_after_s": round(drained_after, 1),
        "max_ready_pods": max(sampler.ready),
        "max_group_members": most,
        "back_to_zero_after_s": round(back_to_zero, 1),
        "cooldown_s": 20,
    }
    record("backlog from zero", figures, "cluster")


def external_metric(cluster: ClusterBed, pipeline: str) -> list[dict[str, Any]]:
    path = (
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{cluster.namespace}/kinfer_pipeline_scaling_lag"
        f"?labelSelector=kinfer.io%2Fpipeline%3D{pipeline}"
    )
    items: list[dict[str, Any]] = json.loads(cluster.testbed.kubectl("get", "--raw", path).stdout)["items"]
    return items


def operator_metrics(installed: Installed, bed: Any) -> dict[str, str]:
    """Each operator pod's /metrics text, by pod name."""
    return {
        pod["metadata"]["name"]: scrape(pod["status"]["podIP"], OPERATOR_METRICS_PORT)
        for pod in installed.operator_pods(bed)
    }


def test_every_hpa_call_gets_a_value_whichever_operator_replica_answers(
    cluster: ClusterBed, installed: Installed
) -> None:
    """The aggregator keeps its connection to the Service open, so its calls may all reach one pod: what proves
    that either replica can answer is that each one polls the pipeline's lag (the gauge its metrics API answers
    from), seen on each pod's /metrics, and that no call anywhere was answered without a value."""
    name, calls = "fraud-ha", 40
    cluster.apply(cluster.pipeline(name, partitions=2, autoscaling=scaling(minReplicas=1)))
    cluster.wait_ready(name, timeout=180)
    wait_until(lambda: external_metric(cluster, name), 60, "a first value of the metric")
    answer = "kinfer_operator_external_metric_answers_total"
    texts = operator_metrics(installed, cluster.testbed)
    before = {pod: metric_value(text, answer, answer="empty") for pod, text in texts.items()}
    results = [external_metric(cluster, name) for _ in range(calls)]
    assert all(len(items) == 1 for items in results), [len(items) for items in results]

    def every_replica_polls() -> dict[str, str]:
        texts = operator_metrics(installed, cluster.testbed)
        labels = (f'namespace="{cluster.namespace}"', f'pipeline="{name}"')

        def polls(text: str) -> bool:
            lines = (line for line in text.splitlines() if line.startswith("kinfer_pipeline_lag{"))
            return any(all(label in line for label in labels) for line in lines)

        return texts if len(texts) == 2 and all(polls(text) for text in texts.values()) else {}

    texts = wait_until(every_replica_polls, 30, "the pipeline's lag on both operator pods' /metrics")
    empty = {pod: metric_value(text, answer, answer="empty") - before.get(pod, 0) for pod, text in texts.items()}
    assert not any(empty.values()), f"answers without a value, by pod: {empty}"
    values = {pod: metric_value(text, answer, answer="values") for pod, text in texts.items()}
    hpa = cluster.testbed.kubectl("get", "hpa", f"{name}-consumer", "-n", cluster.namespace, "-o", "json").stdout
    conditions = {c["type"]: c for c in json.loads(hpa)["status"]["conditions"]}
    assert conditions["ScalingActive"]["status"] == "True", conditions["ScalingActive"]
    record("operator replicas", {"calls": calls, "values_answered_by_pod": sorted(values.values())}, "cluster")
