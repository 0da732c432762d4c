"""``serving.mode: tfserving`` on real pods: the operator's TF Serving Deployment, its headless Service and its
config files run for real, and the consumer pods reach the model servers through the cluster's DNS.

The model server is the stand-in of tests/tfserving/ packaged as an image (images/tfserving-standin.Dockerfile):
NOT TensorFlow Serving (whose image cannot be pulled here), but its gRPC API, its flags and its config files
parsed with TF Serving's own protos. What this shows: the operator's Deployment, Service, ConfigMap and model
volume give model-server pods that load the model and answer; two of them each take a share of the load (the
consumers resolve the headless Service to every pod and balance over them, where one gRPC channel to a ClusterIP
would stick to one pod). Not shown: TF Serving's own batching and performance.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cluster.cluster import (
    RUNTIME_RESOURCES,
    ClusterBed,
    TopicReader,
    fraud_records,
    metric_value,
    pod_log,
    pod_ready,
    produce,
    scrape,
    topic,
)
from tests.cluster.conftest import Installed
from tests.polling import wait_until

pytestmark = pytest.mark.realnode
REST_PORT = 8501
METRICS_PATH = "/monitoring/prometheus/metrics"


def test_tfserving_mode_scores_through_two_model_server_pods(
    cluster: ClusterBed, installed: Installed, kafka_bootstrap: str, model_claim: str
) -> None:
    name = "remote"
    placement = cluster.node.placement()
    tfserving = {
        "image": installed.node.images["tfserving-standin"],
        "replicas": 2,
        "resources": RUNTIME_RESOURCES,
        "placement": {"nodeSelector": placement["nodeSelector"], "tolerations": placement["tolerations"]},
        "restPort": REST_PORT,
    }
    manifest = cluster.pipeline(
        name,
        partitions=3,
        model={"name": "fraud", "uri": f"pvc://{model_claim}/fraud"},
        serving={"mode": "tfserving", "tfserving": tfserving},
    )
    output = TopicReader(kafka_bootstrap, topic(manifest, "output"))
    produced: list[tuple[bytes, bytes]] = []
    answered: dict[str, float] = {}
    try:
        cluster.apply(manifest)
        servers: list[Any] = wait_until(
            lambda: [pods for pods in [cluster.ready_pods(name, "tfserving")] if len(pods) == 2],
            240,
            "two Ready TF Serving pods",
        )[0]
        wait_until(lambda: cluster.topic_partitions(topic(manifest, "input")), 120, "the input topic")

        def both_servers_answered() -> bool:
            # Records keep coming, as they would: a consumer that resolved the Service while one model server was
            # still starting sees the second at its next resolution (every 15 s; CoreDNS's TTL is 5 s).
            batch = fraud_records(100, seed=len(produced))
            produce(kafka_bootstrap, topic(manifest, "input"), batch)
            produced.extend(batch)
            for pod in servers:
                text = scrape(pod.status.pod_ip, REST_PORT, METRICS_PATH)
                answered[pod.metadata.name] = metric_value(text, ":tensorflow:serving:request_count", status="OK")
            return all(calls > 0 for calls in answered.values())

        try:
            wait_until(both_servers_answered, 120, "Predict calls on both model servers", interval=2.0)
        except AssertionError as error:  # say what the consumers saw: which server they resolved, what failed
            raise AssertionError(f"{error}; OK calls per server {answered}; {consumers_seen(cluster, name)}") from None
        wanted = {key for key, _ in produced}
        scored = output.until(lambda got: {r.key for r in got} >= wanted, 300, "every record scored")
    finally:
        output.close()

    assert {r.key for r in scored} == wanted
    first = json.loads(scored[0].value)
    assert first["model"] == {"name": "fraud", "version": 2} and first["prediction"], first


def consumers_seen(cluster: ClusterBed, name: str) -> str:
    """Each consumer pod's phase and readiness, and its log's last lines (for a failure message)."""
    seen = []
    for pod in cluster.pods(name):
        try:
            tail = pod_log(cluster.core, cluster.namespace, pod.metadata.name).splitlines()[-15:]
        except Exception as error:  # a pod that never started has no log
            tail = [f"(no log: {error})"]
        seen.append(f"{pod.metadata.name} {pod.status.phase} ready={pod_ready(pod)}:\n" + "\n".join(tail))
    return "consumer pods:\n" + "\n".join(seen)
