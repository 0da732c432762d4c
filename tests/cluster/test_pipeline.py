"""kinfer as a user runs it: ``helm install`` with the images built from this tree, ``kubectl apply`` of a pipeline,
and real pods on the real node that read their config, load the model, score, dead-letter and expose metrics.

- The consumer pods run the chart's ``runtimeImage`` (the value was once read by nothing, and every pod ran the
  CRD's default image); the operator pods run the chart's ``image`` and their logs hold no 403 (RBAC complete).
- A model baked into the runtime image, and one on a PersistentVolume of the node, both score.
- Malformed records reach the dead-letter topic with their original bytes and a reason; /metrics of each pod
  counts what it did.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from kinfer_runtime.records.dead_letter import ERROR_CLASS, ERROR_MESSAGE
from kinfer_runtime.tools.demo import BAD_VALUES
from tests.autoscaling.report import record
from tests.cluster.cluster import (
    ClusterBed,
    TopicReader,
    fraud_records,
    metric_value,
    pod_log,
    produce,
    scrape,
    topic,
)
from tests.cluster.conftest import Installed
from tests.polling import wait_until

pytestmark = pytest.mark.realnode
METRICS_PORT = 9400
# The API server's refusal as the operator logs it (HTTP 403, Forbidden); not any "403", which timestamps hold
# (08:55:33.403Z) often enough to fail a run.
REFUSED = re.compile(r"forbidden|(?<![\d.])403(?![\d])", re.IGNORECASE)


def input_topic_exists(cluster: ClusterBed, manifest: dict[str, Any]) -> bool:
    return bool(cluster.topic_partitions(topic(manifest, "input")))


def test_operator_pods_run_the_charts_image_with_complete_rbac(cluster: ClusterBed, installed: Installed) -> None:
    pods = installed.operator_pods(cluster.testbed)
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == installed.node.name
        (container,) = pod["spec"]["containers"]
        assert container["image"] == installed.node.images["operator"]
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])
        log = pod_log(cluster.core, installed.release.namespace, pod["metadata"]["name"])
        refused = [line for line in log.splitlines() if REFUSED.search(line)]
        assert not refused, "the operator's ServiceAccount was refused:\n" + "\n".join(refused[:5])


def test_a_pipeline_scores_on_real_pods_with_the_charts_runtime_image(
    cluster: ClusterBed, installed: Installed, kafka_bootstrap: str
) -> None:
    name, count = "fraud", 400
    manifest = cluster.pipeline(name, partitions=3, consumer={"replicas": 2})
    output = TopicReader(kafka_bootstrap, topic(manifest, "output"))
    dead = TopicReader(kafka_bootstrap, topic(manifest, "deadLetter"))
    records = fraud_records(count, seed=11, bad=BAD_VALUES)
    bad = {key: value for key, value in records[count:]}
    try:
        applied = time.monotonic()
        cluster.apply(manifest)
        wait_until(lambda: input_topic_exists(cluster, manifest), 120, "the operator to create the input topic")
        produce(kafka_bootstrap, topic(manifest, "input"), records)
        first = output.until(bool, 300, "the first scored record")[0].at - applied
        scored = output.until(lambda got: {r.key for r in got} >= {k for k, _ in records[:count]}, 300, "all scored")
        dead_letters = dead.until(lambda got: {r.key for r in got} >= set(bad), 120, "every bad record dead-lettered")
    finally:
        output.close()
        dead.close()

    pods = cluster.wait_ready_pods(name, 2)
    for pod in pods:
        assert pod.spec.node_name == installed.node.name
        assert pod.spec.containers[0].image == installed.runtime_image, "the chart's runtimeImage"
        assert pod.status.container_statuses[0].restart_count == 0
    value = json.loads(scored[0].value)
    assert value["model"] == {"name": "fraud", "version": 2} and value["prediction"]
    for letter in dead_letters:
        assert letter.value == bad[letter.key], "the dead letter carries the original bytes"
        assert letter.headers[ERROR_CLASS] and letter.headers[ERROR_MESSAGE]

    texts = [scrape(pod.status.pod_ip, METRICS_PORT) for pod in pods]
    assert sum(metric_value(t, "kinfer_records_in_total") for t in texts) >= len(records)
    assert sum(metric_value(t, "kinfer_records_dead_lettered_total") for t in texts) == len(bad)
    assert all(metric_value(t, "kinfer_ready") == 1 for t in texts)
    cluster.wait_ready(name, timeout=120)
    record("first scored record", {"apply_to_first_scored_s": round(first, 1), "records": len(records)}, "cluster")


def test_a_model_on_a_persistent_volume(cluster: ClusterBed, kafka_bootstrap: str, model_claim: str) -> None:
    name, count = "fraud-pv", 100
    manifest = cluster.pipeline(name, partitions=1, model={"name": "fraud", "uri": f"pvc://{model_claim}/fraud"})
    output = TopicReader(kafka_bootstrap, topic(manifest, "output"))
    try:
        cluster.apply(manifest)
        wait_until(lambda: input_topic_exists(cluster, manifest), 120, "the operator to create the input topic")
        records = fraud_records(count, seed=12)
        produce(kafka_bootstrap, topic(manifest, "input"), records)
        scored = output.until(lambda got: len({r.key for r in got}) >= count, 300, "every record scored")
    finally:
        output.close()
    assert {r.key for r in scored} == {k for k, _ in records}
    (pod,) = cluster.wait_ready_pods(name, 1)
    volumes = {v.name: v for v in pod.spec.volumes}
    assert volumes["model"].persistent_volume_claim.claim_name == model_claim
    assert json.loads(scored[0].value)["model"]["version"] == 2, "the newest version on the volume"
