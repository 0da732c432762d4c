"""The operator against the real API server and broker: create, update, refuse, restore drift, delete."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from kubernetes import client

from tests.operator.bed import RECONCILE_SECONDS, Bed
from tests.operator.conftest import OperatorProcess
from tests.operator.pipelines import FRAUD, SENSOR
from tests.polling import wait_until

pytestmark = pytest.mark.testbed

EMBEDDED_CHILDREN = {"ConfigMap/{n}-runtime", "Deployment/{n}-consumer", "Service/{n}-metrics"}
TFSERVING_CHILDREN = EMBEDDED_CHILDREN | {
    "ConfigMap/{n}-tfserving-config",
    "Deployment/{n}-tfserving",
    "Service/{n}-tfserving",
}


def _names(template: set[str], name: str) -> set[str]:
    return {entry.format(n=name) for entry in template}


def test_samples_reconcile_to_ready_with_children_and_topics(bed: Bed, operator: OperatorProcess) -> None:
    bed.make_bound_claim("models")
    bed.core.create_namespaced_secret(
        bed.namespace, {"metadata": {"name": "model-store"}, "stringData": {"AWS_ACCESS_KEY_ID": "x"}}
    )
    fraud = bed.manifest("fraud", FRAUD, partitions=3, as_sample=True)
    sensor = bed.manifest("sensor-anomaly", SENSOR, partitions=2, as_sample=True)
    started = time.monotonic()
    bed.apply(fraud, sensor)
    for manifest, expected in ((fraud, EMBEDDED_CHILDREN), (sensor, TFSERVING_CHILDREN)):
        name = manifest["metadata"]["name"]
        wanted = _names(expected, name)
        wait_until(lambda n=name, w=wanted: set(bed.children(n)) == w, 60, f"children of {name}")  # type: ignore[misc]
        print(f"\nMEASURE apply→all children of {name}: {time.monotonic() - started:.2f}s")
        obj = bed.wait_ready(name)
        uid = obj["metadata"]["uid"]
        for child in bed.children(name).values():
            refs = child["metadata"]["ownerReferences"]
            assert [(r["uid"], r["controller"]) for r in refs] == [(uid, True)]
        partitions = bed.topic_partitions(*bed.topic_names(manifest))
        asked = [manifest["spec"]["topics"][r]["partitions"] for r in ("input", "output", "deadLetter")]
        assert list(partitions.values()) == asked
        status = obj["status"]
        assert status["partitions"] == asked[0] and status["replicas"] >= 1
        assert {c["type"] for c in status["conditions"]} == {
            "Ready",
            "TopicsReady",
            "ConsumersReady",
            "ServingReady",
            "AutoscalingReady",
            "Degraded",
        }
        assert "Ready" in bed.event_reasons(name)
        assert "kopf" not in str(status)  # kopf's bookkeeping lives in annotations
    config = bed.core.read_namespaced_config_map("sensor-anomaly-tfserving-config", bed.namespace).data
    assert "specific { versions: 1 }" in config["models.config"]
    assert bed.get("sensor-anomaly")["status"]["servingEndpoint"].startswith("sensor-anomaly-tfserving.")  # type: ignore[index]


def test_updates_patch_what_they_should_and_nothing_else(bed: Bed, operator: OperatorProcess) -> None:
    manifest = bed.manifest("upd", consumer={"replicas": 1})
    bed.apply(manifest)
    bed.wait_ready("upd")
    before = bed.children("upd")
    rv = {key: child["metadata"]["resourceVersion"] for key, child in before.items()}

    def changed() -> set[str]:
        now = bed.children("upd")
        return {key for key, child in now.items() if child["metadata"]["resourceVersion"] != rv[key]}

    # Batch size: the runtime's config changes and the consumers roll; the Service is untouched.
    bed.patch_spec("upd", {"consumer": {"maxBatchSize": 64}})
    bed.wait_ready("upd")
    assert "maxBatchSize: 64" in bed.core.read_namespaced_config_map("upd-runtime", bed.namespace).data["pipeline.yaml"]
    assert changed() >= {"ConfigMap/upd-runtime", "Deployment/upd-consumer"}
    assert "Service/upd-metrics" not in changed()
    wait_until(lambda: len(bed.replica_sets("upd-consumer")) == 2, 30, "a new ReplicaSet (pods rolled)")

    # Replicas: the Deployment scales; the pods don't roll.
    rv = {key: child["metadata"]["resourceVersion"] for key, child in bed.children("upd").items()}
    bed.patch_spec("upd", {"consumer": {"replicas": 3}})
    wait_until(
        lambda: bed.apps.read_namespaced_deployment("upd-consumer", bed.namespace).spec.replicas == 3,
        30,
        "consumer Deployment scaled to 3",
    )
    obj = bed.wait_ready("upd")
    wait_until(lambda: (bed.get("upd") or {}).get("status", {}).get("replicas") == 3, 30, "status.replicas 3")
    assert len(bed.replica_sets("upd-consumer")) == 2
    assert "Service/upd-metrics" not in changed()
    assert obj["status"]["labelSelector"] == "kinfer.io/pipeline=upd,app.kubernetes.io/component=consumer"

    # The scale subresource drives the same field.
    bed.testbed.kubectl("scale", "-n", bed.namespace, "ipl/upd", "--replicas=2")
    wait_until(
        lambda: bed.apps.read_namespaced_deployment("upd-consumer", bed.namespace).spec.replicas == 2,
        30,
        "kubectl scale reached the Deployment",
    )

    # Partitions up: the topic grows in Kafka and status follows; the Deployment isn't touched.
    rv = {key: child["metadata"]["resourceVersion"] for key, child in bed.children("upd").items()}
    input_topic = manifest["spec"]["topics"]["input"]["name"]
    bed.patch_spec("upd", {"topics": {"input": {"partitions": 4}}})
    wait_until(lambda: bed.topic_partitions(input_topic).get(input_topic) == 4, 30, "input topic grown to 4")
    wait_until(lambda: (bed.get("upd") or {}).get("status", {}).get("partitions") == 4, 30, "status.partitions 4")
    assert "Deployment/upd-consumer" not in changed() and "Service/upd-metrics" not in changed()
    assert "PartitionsIncreased" in bed.event_reasons("upd")

    # Model version: pinned to 2, the runtime config carries it and the consumers roll.
    bed.patch_spec("upd", {"model": {"versionPolicy": "Pinned", "version": 2}})
    wait_until(lambda: (bed.get("upd") or {}).get("status", {}).get("modelVersion") == "2", 30, "modelVersion 2")
    assert "version: 2" in bed.core.read_namespaced_config_map("upd-runtime", bed.namespace).data["pipeline.yaml"]
    wait_until(lambda: len(bed.replica_sets("upd-consumer")) == 3, 30, "pods rolled for the new version")


def test_partition_decrease_is_refused(bed: Bed, operator: OperatorProcess) -> None:
    manifest = bed.manifest("shrink", partitions=3)
    bed.apply(manifest)
    bed.wait_ready("shrink")
    bed.patch_spec("shrink", {"topics": {"input": {"partitions": 1}}})
    topics = bed.wait_reason("shrink", "TopicsReady", "NotSupported")
    assert "decreasing to 1 is not supported" in topics["message"]
    assert bed.condition("shrink", "Ready")["reason"] == "NotSupported"
    assert bed.condition("shrink", "Degraded")["status"] == "True"
    wait_until(lambda: "NotSupported" in bed.event_reasons("shrink"), 20, "a NotSupported Event")
    input_topic = manifest["spec"]["topics"]["input"]["name"]
    assert bed.topic_partitions(input_topic)[input_topic] == 3
    assert (bed.get("shrink") or {})["status"]["partitions"] == 3
    bed.patch_spec("shrink", {"topics": {"input": {"partitions": 3}}})
    bed.wait_ready("shrink")


def test_drift_is_restored_within_one_timer_period(bed: Bed, operator: OperatorProcess) -> None:
    manifest = bed.manifest("drift", topics={"output": {"config": {"retention.ms": "3600000"}}})
    bed.apply(manifest)
    bed.wait_ready("drift")
    service_uid = bed.core.read_namespaced_service("drift-metrics", bed.namespace).metadata.uid
    bed.core.delete_namespaced_service("drift-metrics", bed.namespace)
    bed.apps.patch_namespaced_deployment(
        "drift-consumer",
        bed.namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "consumer", "image": "example.com/hand-edited:1"}]}}}},
    )
    output_topic = manifest["spec"]["topics"]["output"]["name"]
    resource = ConfigResource(
        ResourceType.TOPIC,
        output_topic,
        incremental_configs=[ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)],
    )
    for future in bed.admin.incremental_alter_configs([resource]).values():
        future.result()
    dlq = manifest["spec"]["topics"]["deadLetter"]["name"]
    for future in bed.admin.delete_topics([dlq]).values():
        future.result()
    changed_at = time.monotonic()

    def restored() -> bool:
        service = bed.children("drift").get("Service/drift-metrics")
        image = (
            bed.apps.read_namespaced_deployment("drift-consumer", bed.namespace).spec.template.spec.containers[0].image
        )
        return bool(
            service
            and service["metadata"]["uid"] != service_uid
            and image == "ghcr.io/kinfer/runtime:0.1.0"
            and bed.topic_partitions(dlq).get(dlq) == 1
            and _topic_config(bed, output_topic) == "3600000"
        )

    # One timer period, plus a pass's own duration and scheduling slack on a loaded 2-core box.
    wait_until(restored, RECONCILE_SECONDS * 2 + 20, "drift restored")
    print(f"\nMEASURE drift restored after {time.monotonic() - changed_at:.1f}s (timer {RECONCILE_SECONDS}s)")
    wait_until(lambda: "TopicRecreated" in bed.event_reasons("drift"), 20, "a TopicRecreated Event")
    assert "DriftCorrected" in bed.event_reasons("drift")


def _topic_config(bed: Bed, topic: str) -> str | None:
    futures = bed.admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    for future in futures.values():
        entry = future.result().get("retention.ms")
        return str(entry.value) if entry is not None else None
    return None


def test_delete_retain_keeps_topics_delete_removes_them(bed: Bed, operator: OperatorProcess) -> None:
    keep = bed.manifest("keep", deletionPolicy="Retain")
    gone = bed.manifest("gone", deletionPolicy="Delete")
    bed.apply(keep, gone)
    bed.wait_ready("keep")
    bed.wait_ready("gone")
    assert (bed.get("keep") or {})["metadata"].get("finalizers") in (None, [])  # Retain never blocks deletion
    assert (bed.get("gone") or {})["metadata"]["finalizers"] == ["kinfer.io/finalizer"]
    bed.delete_all_pipelines(timeout=60)
    wait_until(lambda: not bed.children("keep") and not bed.children("gone"), 60, "children garbage-collected")
    assert len(bed.topic_partitions(*bed.topic_names(keep))) == 3
    wait_until(lambda: not bed.topic_partitions(*bed.topic_names(gone)), 30, "Delete-policy topics deleted")


def test_finalizer_gives_up_when_kafka_is_unreachable(
    bed: Bed, operator: OperatorProcess, private_kafka: object
) -> None:
    broker = private_kafka
    manifest = bed.manifest("stranded", deletionPolicy="Delete", kafka={"bootstrapServers": broker.bootstrap_servers})  # type: ignore[attr-defined]
    bed.apply(manifest)
    bed.wait_ready("stranded")
    broker.stop()  # type: ignore[attr-defined]
    started = time.monotonic()
    bed.custom.delete_namespaced_custom_object("kinfer.io", "v1alpha1", bed.namespace, "inferencepipelines", "stranded")
    # Give-up time in the fixture is 8 s; retries come every 10 s, and the Kafka timeouts add up to ~20 s.
    wait_until(lambda: bed.get("stranded") is None, 90, "the pipeline deleted despite Kafka being down")
    print(f"\nMEASURE deletion with Kafka down finished after {time.monotonic() - started:.1f}s")
    events = [e for e in bed.events("stranded") if e.reason == "TopicsNotDeleted"]
    assert events and "Delete them by hand" in events[0].message


@pytest.mark.timing
def test_autoscaler_children_are_applied_and_pruned(bed: Bed, operator: OperatorProcess) -> None:
    bed.apply(bed.manifest("auto", consumer={"replicas": 1}))
    bed.wait_ready("auto")
    bed.patch_spec("auto", {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3}})
    hpas = client_hpas(bed)
    wait_until(lambda: "auto-consumer" in hpas(), 30, "the consumer HPA")
    hpa = bed.api.sanitize_for_serialization(
        kube_autoscaling(bed).read_namespaced_horizontal_pod_autoscaler("auto-consumer", bed.namespace)
    )
    assert hpa["metadata"]["ownerReferences"][0]["name"] == "auto"
    assert hpa["metadata"]["labels"]["kinfer.io/pipeline"] == "auto"
    # The HPA owns the replica count now: a count set by hand (as the HPA would) survives the next passes.
    bed.apps.patch_namespaced_deployment_scale("auto-consumer", bed.namespace, {"spec": {"replicas": 2}})
    time.sleep(RECONCILE_SECONDS * 2 + 1)
    assert bed.apps.read_namespaced_deployment("auto-consumer", bed.namespace).spec.replicas == 2
    bed.patch_spec("auto", {"autoscaling": {"enabled": False}})
    wait_until(lambda: "auto-consumer" not in hpas(), 30, "the HPA pruned")
    wait_until(
        lambda: bed.apps.read_namespaced_deployment("auto-consumer", bed.namespace).spec.replicas == 1,
        30,
        "replicas back to spec.consumer.replicas",
    )
    assert "Pruned" in bed.event_reasons("auto")


def kube_autoscaling(bed: Bed) -> Any:
    from kubernetes import client

    return client.AutoscalingV2Api(bed.api)


def client_hpas(bed: Bed) -> Any:
    api = kube_autoscaling(bed)
    return lambda: {h.metadata.name for h in api.list_namespaced_horizontal_pod_autoscaler(bed.namespace).items}


def test_a_child_the_cluster_refuses_becomes_a_condition(bed: Bed, operator: OperatorProcess) -> None:
    # No KEDA on the bed: the ScaledObject can't be applied. The rest is still reconciled, and the failure is
    # reported once (condition + Event), not retried in a loop.
    bed.apply(bed.manifest("keda", autoscaling={"enabled": True, "provider": "keda"}))
    failed = bed.wait_reason("keda", "AutoscalingReady", "ApplyFailed")
    assert "keda.sh/v1alpha1 is not served by this cluster" in failed["message"]
    wait_until(lambda: "Deployment/keda-consumer" in bed.children("keda"), 30, "the consumer Deployment")
    time.sleep(RECONCILE_SECONDS * 3)
    events = [e for e in bed.events("keda") if e.reason == "ApplyFailed"]
    assert len(events) == 1 and (events[0].count or 1) == 1


def test_missing_model_claim_is_reported_until_it_exists(bed: Bed, operator: OperatorProcess) -> None:
    manifest = bed.manifest("noclaim", model={"uri": "pvc://absent-models/fraud"})
    bed.apply(manifest)
    condition = bed.wait_reason("noclaim", "ConsumersReady", "ModelClaimMissing")
    assert "PersistentVolumeClaim absent-models" in condition["message"] and bed.namespace in condition["message"]
    assert bed.condition("noclaim", "Ready")["status"] == "False"
    assert set(bed.children("noclaim")) == _names(EMBEDDED_CHILDREN, "noclaim")  # applied: pods start with the claim
    bed.make_bound_claim("absent-models")
    bed.wait_ready("noclaim")


def test_network_policies_are_accepted_and_pruned_with_tfserving(bed: Bed, tmp_path: Path) -> None:
    """``--network-policies``: the API server accepts the pipeline's policies as built, an idle pass leaves them
    alone, and the TF Serving one goes when the spec drops TF Serving. The bed enforces no NetworkPolicy (no
    network plugin does), so what they block is not tested here."""
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    args = ["--network-policies", f"--network-policy-metrics-from={json.dumps([peer])}"]
    operator = OperatorProcess(bed.testbed, bed.namespace, tmp_path / "operator.log", extra_args=args).start()
    networking = client.NetworkingV1Api(bed.api)

    def policies() -> dict[str, dict[str, Any]]:
        listed = networking.list_namespaced_network_policy(bed.namespace, label_selector="kinfer.io/pipeline=fenced")
        return {item.metadata.name: bed.api.sanitize_for_serialization(item) for item in listed.items}

    try:
        bed.apply(bed.manifest("fenced", SENSOR))
        bed.wait_ready("fenced")
        stored = policies()
        assert set(stored) == {"fenced-consumer", "fenced-tfserving"}
        (consumer_rule,) = stored["fenced-consumer"]["spec"]["ingress"]
        assert consumer_rule["from"] == [peer] and [p["port"] for p in consumer_rule["ports"]] == [9400]
        from_consumers = stored["fenced-tfserving"]["spec"]["ingress"][0]["from"]
        consumer_pods = {"kinfer.io/pipeline": "fenced", "app.kubernetes.io/component": "consumer"}
        assert from_consumers == [{"podSelector": {"matchLabels": consumer_pods}}]
        versions = {name: p["metadata"]["resourceVersion"] for name, p in stored.items()}
        time.sleep(RECONCILE_SECONDS * 2 + 1)
        assert {name: p["metadata"]["resourceVersion"] for name, p in policies().items()} == versions
        bed.patch_spec("fenced", {"serving": {"mode": "embedded"}})
        wait_until(lambda: set(policies()) == {"fenced-consumer"}, 30, "the TF Serving policy pruned")
        assert "Pruned" in bed.event_reasons("fenced")
    finally:
        bed.delete_all_pipelines(timeout=90)
        operator.stop()
