"""The whole product on the bed: ``kinfer operator`` (reconcile + lag monitor + metrics API) and the real HPA.

An InferencePipeline with autoscaling enabled gets its HPA from the operator; records produced into its input
topic with no consumer running scale the consumer Deployment up to the partition count and not beyond, the
pipeline's status and Events say it is capped by partitions, and once the lag is committed it scales back; the
status then sums the records scored per version that the commits carry.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kinfer_operator.k8s.client import Kube, object_path
from kinfer_runtime.records.scored_counts import encode
from tests.autoscaling.bed import Watcher, apiservice_to_loopback, serving_cert, wait_for
from tests.autoscaling.kafka_helpers import commit_offsets, end_offsets, produce_spread
from tests.autoscaling.report import record
from tests.operator.bed import Bed
from tests.operator.conftest import CRD, OperatorProcess
from tests.operator.pipelines import SENSOR
from tests.testbed import free_port

pytestmark = pytest.mark.testbed
PARTITIONS = 3


@pytest.fixture
def bed(testbed: Any, kube_api: Any, kafka_bootstrap: str, namespace: str) -> Bed:
    testbed.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    testbed.wait_established("inferencepipelines.kinfer.io")
    return Bed(testbed, kube_api, kafka_bootstrap, namespace)


@pytest.mark.timing
def test_operator_hpa_scales_on_lag_capped_and_reports_it(bed: Bed, kube_api: Any, tmp_path: Path) -> None:
    kube = Kube(kube_api)
    namespace, name = bed.namespace, "fraud"
    cert = serving_cert(tmp_path, namespace)
    port = free_port()
    extra = ["--external-metrics-port", str(port), "--tls-cert-file", str(cert.cert)]
    extra += ["--tls-key-file", str(cert.key), "--lag-poll-seconds", "1"]
    operator = OperatorProcess(bed.testbed, namespace, tmp_path / "operator.log", extra).start()
    try:
        with apiservice_to_loopback(kube, namespace, port, cert.ca_pem):
            autoscaling = {
                "enabled": True,
                "minReplicas": 1,
                "maxReplicas": 10,
                "lagThreshold": 50,
                "scaleDownStabilizationSeconds": 5,
            }
            manifest = bed.manifest(name, partitions=PARTITIONS, autoscaling=autoscaling)
            bed.apply(manifest)
            consumer = f"{name}-consumer"
            hpa_path = object_path("autoscaling/v2", "HorizontalPodAutoscaler", namespace, consumer)

            def hpa_active() -> bool:
                conditions = ((kube.request("GET", hpa_path) or {}).get("status") or {}).get("conditions") or []
                return any(c["type"] == "ScalingActive" and c["status"] == "True" for c in conditions)

            wait_for(hpa_active, 120, "the operator's HPA reading the external metric")
            topic = manifest["spec"]["topics"]["input"]["name"]
            with Watcher(kube, namespace, consumer) as watcher:
                jumped = time.monotonic()  # before producing: the figure includes the produce itself
                produce_spread(bed.bootstrap, topic, PARTITIONS, 600)  # needs 12 consumers; 3 partitions
                wait_for(lambda: (s := watcher.latest()) and s.deployment_replicas == PARTITIONS, 120, "scale-out")
                reaction = watcher.first_change_after(jumped)

                def capped_status() -> dict[str, Any] | None:
                    status = (bed.get(name) or {}).get("status") or {}
                    auto = status.get("autoscaling") or {}
                    return status if auto.get("cappedByPartitions") else None

                status = wait_for(capped_status, 60, "status.autoscaling.cappedByPartitions")
                condition = bed.condition(name, "AutoscalingReady")
                assert condition["reason"] == "CappedByPartitions"
                assert "add partitions to scale further" in condition["message"]
                assert status["autoscaling"]["totalLag"] == 600
                assert status["autoscaling"]["desiredReplicas"] == PARTITIONS
                assert status["lag"] == 600
                wait_for(lambda: "CappedByPartitions" in bed.event_reasons(name), 60, "the CappedByPartitions Event")
                assert bed.topic_partitions(topic) == {topic: PARTITIONS}  # never changes partitions by itself
                metric = operator.metric(
                    "kinfer_pipeline_capped_by_partitions", f'namespace="{namespace}",pipeline="{name}"'
                )
                assert metric == 1.0

                group = manifest["spec"]["consumer"].get("group") or f"kinfer-{name}"
                ends = end_offsets(bed.bootstrap, topic, PARTITIONS)
                # What the runtime's commits carry (records/scored_counts.py): here one version scored them all.
                scored = {p: encode({1: end - 10, 2: 10}, [1, 2]) for p, end in ends.items()}
                commit_offsets(bed.bootstrap, group, topic, ends, scored)
                consumed = time.monotonic()
                wait_for(lambda: (s := watcher.latest()) and s.deployment_replicas == 1, 120, "scale back down")
                back_down = time.monotonic() - consumed
                counts = wait_for(lambda: ((bed.get(name) or {}).get("status") or {}).get("scoredByVersion"), 60,
                                  "status.scoredByVersion")  # fmt: skip
                assert counts == {"1": 600 - 10 * PARTITIONS, "2": 10 * PARTITIONS}
            assert watcher.max_replicas() <= PARTITIONS
            record(
                "e2e_operator",
                {
                    "partitions": PARTITIONS,
                    "lag_jump_to_hpa_desired_change_seconds": None if reaction is None else round(reaction, 2),
                    "lag_consumed_to_min_replicas_seconds": round(back_down, 2),
                    "max_replicas_seen": watcher.max_replicas(),
                    "deployment_scale_changes": watcher.changes(),
                    "disturbed": watcher.disturbed_since(jumped),
                },
            )
    finally:
        if operator.process is not None and operator.process.poll() is None:
            bed.delete_all_pipelines(timeout=90)
        print(f"--- operator log tail ---\n{operator.log_tail(30)}")
        operator.stop()


def test_operator_tfserving_mode_gets_two_hpas_and_leaves_both_counts_to_them(
    bed: Bed, kube_api: Any, tmp_path: Path
) -> None:
    kube = Kube(kube_api)
    name = "sensor"
    operator = OperatorProcess(bed.testbed, bed.namespace, tmp_path / "operator.log", ["--lag-poll-seconds", "1"])
    operator.start()
    try:
        autoscaling = {"enabled": True, "maxReplicas": 4, "servingConsumersPerReplica": 2, "servingMaxReplicas": 3}
        bed.apply(bed.manifest(name, sample=SENSOR, partitions=2, autoscaling=autoscaling))

        def hpa(target: str) -> dict[str, Any] | None:
            return kube.request("GET", object_path("autoscaling/v2", "HorizontalPodAutoscaler", bed.namespace, target))

        consumer_hpa = wait_for(lambda: hpa(f"{name}-consumer"), 90, "the consumer HPA")
        serving_hpa = wait_for(lambda: hpa(f"{name}-tfserving"), 90, "the TF Serving HPA")
        assert consumer_hpa["spec"]["scaleTargetRef"]["name"] == f"{name}-consumer"
        assert serving_hpa["spec"]["scaleTargetRef"]["name"] == f"{name}-tfserving"
        assert serving_hpa["spec"]["maxReplicas"] == 3
        external = serving_hpa["spec"]["metrics"][0]["external"]
        assert external["metric"]["name"] == "kinfer_pipeline_serving_demand"
        # a count set by the HPA (here: by hand, as the HPA would) survives the operator's next passes
        serving_path = object_path("apps/v1", "Deployment", bed.namespace, f"{name}-tfserving")
        kube.request("PATCH", serving_path, body={"spec": {"replicas": 2}}, content_type="application/merge-patch+json")
        time.sleep(8)  # more than two reconcile periods of the test operator
        assert (kube.request("GET", serving_path) or {})["spec"]["replicas"] == 2
    finally:
        bed.delete_all_pipelines(timeout=90)
        operator.stop()
