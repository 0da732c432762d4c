"""Autoscaling manifests and the reconcile plan: HPA, KEDA ScaledObject, TF Serving HPA, status, events."""

from __future__ import annotations

import base64

from kinfer_operator.autoscaling.monitor import TrackedPipeline
from kinfer_operator.autoscaling.plan import AutoscalerContext, plan_autoscaler
from kinfer_operator.autoscaling.scalers import (
    APISERVICE_NAME,
    METRIC_SCALING_LAG,
    METRIC_SERVING_DEMAND,
    build_apiservice,
    build_metrics_api_service,
    desired_autoscaling_children,
)
from kinfer_runtime.spec import InferencePipelineSpec
from tests.autoscaling.pipelines import decision_for, make_pipeline, make_spec, spec_dict


def test_disabled_gives_no_children() -> None:
    assert desired_autoscaling_children("p", make_spec(enabled=False)) == []


def test_consumer_hpa_targets_scaling_lag_with_threshold() -> None:
    spec = make_spec(minReplicas=0, maxReplicas=7, lagThreshold=250)
    [hpa] = desired_autoscaling_children("fraud", spec)
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["metadata"]["name"] == "fraud-consumer"
    assert hpa["metadata"]["labels"]["kinfer.io/pipeline"] == "fraud"
    body = hpa["spec"]
    assert body["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-consumer"}
    assert body["minReplicas"] == 1  # 0 is the operator's (scale to zero), the HPA can't hold it
    assert body["maxReplicas"] == 7
    [metric] = body["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"] == {
        "name": METRIC_SCALING_LAG,
        "selector": {"matchLabels": {"kinfer.io/pipeline": "fraud"}},
    }
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "250"}
    # windows are applied before the metric; the HPA only limits steps, with no tolerance to swallow +1
    assert body["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 0
    assert body["behavior"]["scaleUp"]["tolerance"] == "0"


def test_tfserving_mode_adds_serving_hpa() -> None:
    raw = spec_dict(servingConsumersPerReplica=3, servingMaxReplicas=5)
    raw["serving"] = {"mode": "tfserving", "tfserving": {"replicas": 2}}
    children = desired_autoscaling_children("s", InferencePipelineSpec.model_validate(raw))
    assert [c["metadata"]["name"] for c in children] == ["s-consumer", "s-tfserving"]
    serving = children[1]["spec"]
    assert serving["scaleTargetRef"]["name"] == "s-tfserving"
    assert (serving["minReplicas"], serving["maxReplicas"]) == (2, 5)
    external = serving["metrics"][0]["external"]
    assert external["metric"]["name"] == METRIC_SERVING_DEMAND
    assert external["target"]["averageValue"] == str(1000 * 3)
    raw["serving"]["tfserving"]["endpoint"] = "tfs.example:8500"  # an external server isn't ours to scale
    assert len(desired_autoscaling_children("s", InferencePipelineSpec.model_validate(raw))) == 1


def test_keda_scaled_object_maps_the_spec() -> None:
    spec = make_spec(
        provider="keda", minReplicas=0, maxReplicas=9, lagThreshold=50, activationLagThreshold=5, cooldownSeconds=120
    )
    [scaled] = desired_autoscaling_children("k", spec)
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    body = scaled["spec"]
    assert body["scaleTargetRef"]["name"] == "k-consumer"
    assert (body["minReplicaCount"], body["maxReplicaCount"], body["cooldownPeriod"]) == (0, 9, 120)
    [trigger] = body["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["bootstrapServers"] == "127.0.0.1:9092"
    assert meta["consumerGroup"] == "kinfer-k" and meta["topic"] == "in"
    assert (meta["lagThreshold"], meta["activationLagThreshold"]) == ("50", "5")
    assert meta["offsetResetPolicy"] == "earliest" and meta["allowIdleConsumers"] == "false"
    assert all(isinstance(value, str) for value in meta.values())  # KEDA's trigger metadata is map[string]string
    behavior = body["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300  # KEDA's metric is raw: the HPA needs it


def test_apiservice_and_loopback_service() -> None:
    api = build_apiservice("kinfer-metrics", "kinfer-system", 6443, b"PEM")
    assert api["metadata"]["name"] == APISERVICE_NAME == "v1beta1.external.metrics.k8s.io"
    assert api["spec"]["service"] == {"name": "kinfer-metrics", "namespace": "kinfer-system", "port": 6443}
    assert base64.b64decode(api["spec"]["caBundle"]) == b"PEM"
    service = build_metrics_api_service("kinfer-metrics", "kinfer-system", 6443, external_name="localhost")
    assert service["spec"] == {"type": "ExternalName", "externalName": "localhost"}


def context(spec: InferencePipelineSpec, status: dict | None = None) -> AutoscalerContext:
    pipeline = make_pipeline("p", "ns", spec.to_wire())
    return AutoscalerContext(pipeline, "uid", 3, 1, 1, True, status or {})


def tracked(spec: InferencePipelineSpec, lags: list[int], **kwargs: object) -> TrackedPipeline:
    from kinfer_operator.autoscaling.engine import PipelineAutoscaler

    entry = TrackedPipeline("ns", "p", spec, PipelineAutoscaler.for_spec(spec))
    entry.decision = decision_for(spec, lags, **kwargs)  # type: ignore[arg-type]
    return entry


def test_plan_capped_by_partitions_condition_event_once() -> None:
    spec = make_spec(lagThreshold=100)
    plan = plan_autoscaler(context(spec), tracked(spec, [900, 900, 900]), True)
    assert plan.consumer_replicas is None  # the HPA owns the count
    assert plan.condition.reason == "CappedByPartitions" and plan.condition.status == "True"
    assert "add partitions to scale further" in plan.condition.message
    assert [e[1] for e in plan.events] == ["CappedByPartitions"]
    assert plan.status["cappedByPartitions"] is True and plan.status["desiredReplicas"] == 3
    assert plan.status["provider"] == "hpa"
    assert plan.status["topPartitions"][0] == {"partition": 0, "lag": 900}
    assert plan.lag == 2700
    again = plan_autoscaler(context(spec, {"autoscaling": plan.status}), tracked(spec, [900, 900, 900]), True)
    assert again.events == []  # reported once, not on every reconcile


def test_plan_holds_scale_out_while_serving_not_ready() -> None:
    spec = make_spec(lagThreshold=100)
    plan = plan_autoscaler(context(spec), tracked(spec, [150, 0, 0], current=1, serving_ready=False), True)
    assert plan.condition.reason == "ScaleOutHeld"
    assert "TF Serving is not Ready" in plan.condition.message
    assert plan.status["scaleOutHeld"] is True and plan.status["desiredReplicas"] == 1


def test_plan_disabled_and_waiting() -> None:
    disabled = make_spec(enabled=False)
    plan = plan_autoscaler(context(disabled), None, True)
    assert plan.manifests == [] and plan.condition.reason == "Disabled" and plan.consumer_replicas == 1
    spec = make_spec()
    waiting = plan_autoscaler(context(spec), None, True)
    assert waiting.condition.reason == "WaitingForLag" and waiting.lag is None and len(waiting.manifests) == 1


def test_plan_reports_lag_unavailable_only_when_the_last_good_poll_is_stale() -> None:
    spec = make_spec()
    entry = tracked(spec, [10, 0, 0])
    entry.error = "KafkaException: UNKNOWN_TOPIC_OR_PART"
    blip = plan_autoscaler(context(spec), entry, True, fresh=True)
    assert blip.condition.status == "True" and blip.lag == 10
    outage = plan_autoscaler(context(spec), entry, True, fresh=False)
    assert outage.condition.reason == "LagUnavailable" and outage.condition.status == "False"
    assert "UNKNOWN_TOPIC_OR_PART" in outage.condition.message
