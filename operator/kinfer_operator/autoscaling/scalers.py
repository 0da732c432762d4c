"""Manifests for autoscaling (pure): the per-pipeline HPA or KEDA ScaledObject, and the metrics API's plumbing.

Per pipeline (returned by ``desired_autoscaling_children``, adopted by the reconcile like any child):
* provider ``hpa``: an ``autoscaling/v2`` HPA on the External metric ``kinfer_pipeline_scaling_lag`` with an
  ``AverageValue`` target of ``lagThreshold``. The operator already applied caps and stabilization windows to
  that metric (it is ``desired * lagThreshold``), so the HPA's behaviour only limits the step size, with a
  zero tolerance and no second window (a second window would double every scale-down delay);
* provider ``keda``: a KEDA ``ScaledObject`` with KEDA's own ``kafka`` trigger, the spec mapped onto KEDA's
  options (its windows in ``advanced.horizontalPodAutoscalerConfig.behavior``, since KEDA's metric is raw);
* in ``tfserving`` mode (hpa provider): an HPA for TF Serving on ``kinfer_pipeline_serving_demand``.

Once per cluster (Helm chart, or ``kinfer operator`` tests): the APIService for ``external.metrics.k8s.io``,
its Service, and the RBAC that lets the HPA controller read external metrics.
"""

from __future__ import annotations

import base64
from typing import Any

from kinfer_operator.autoscaling.engine import read_committed
from kinfer_operator.builders import naming
from kinfer_runtime.spec import AutoscalingProvider, InferencePipelineSpec

METRICS_GROUP = "external.metrics.k8s.io"
METRICS_VERSION = "v1beta1"
APISERVICE_NAME = f"{METRICS_VERSION}.{METRICS_GROUP}"
METRIC_LAG = "kinfer_pipeline_lag"  # raw total lag (for people and dashboards)
METRIC_SCALING_LAG = "kinfer_pipeline_scaling_lag"  # desired consumers * lagThreshold (the consumer HPA's)
METRIC_SERVING_DEMAND = "kinfer_pipeline_serving_demand"  # consumers wanted before the serving hold
METRIC_NAMES = (METRIC_LAG, METRIC_SCALING_LAG, METRIC_SERVING_DEMAND)
SCALE_PERIOD_SECONDS = 15


def pipeline_selector(pipeline: str) -> dict[str, Any]:
    return {"matchLabels": {naming.LABEL_PIPELINE: pipeline}}


def _metadata(name: str, pipeline: str, component: str) -> dict[str, Any]:
    return {"name": name, "labels": naming.common_labels(pipeline, component)}


def hpa_behavior(scale_up_window: int = 0, scale_down_window: int = 0) -> dict[str, Any]:
    """Step limits: up by max(4 pods, 100 %) per 15 s, down by at most half per 15 s; tolerance 0."""
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": scale_up_window,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": SCALE_PERIOD_SECONDS},
                {"type": "Percent", "value": 100, "periodSeconds": SCALE_PERIOD_SECONDS},
            ],
            "tolerance": "0",
        },
        "scaleDown": {
            "stabilizationWindowSeconds": scale_down_window,
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": SCALE_PERIOD_SECONDS}],
            "tolerance": "0",
        },
    }


def build_consumer_hpa(pipeline: str, spec: InferencePipelineSpec) -> dict[str, Any]:
    auto = spec.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(naming.consumer_name(pipeline), pipeline, naming.COMPONENT_CONSUMER),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": naming.consumer_name(pipeline)},
            # the HPA can't hold 0; scale to and from zero is the operator's (as with KEDA)
            "minReplicas": max(1, auto.min_replicas),
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": METRIC_SCALING_LAG, "selector": pipeline_selector(pipeline)},
                        "target": {"type": "AverageValue", "averageValue": str(auto.lag_threshold)},
                    },
                }
            ],
            "behavior": hpa_behavior(),
        },
    }


def build_tfserving_hpa(pipeline: str, spec: InferencePipelineSpec) -> dict[str, Any]:
    """TF Serving follows consumer demand: one server replica per ``servingConsumersPerReplica`` consumers."""
    auto, serving = spec.autoscaling, spec.serving.tfserving
    target = auto.lag_threshold * auto.serving_consumers_per_replica
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(naming.tfserving_name(pipeline), pipeline, naming.COMPONENT_TFSERVING),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": naming.tfserving_name(pipeline)},
            "minReplicas": max(1, serving.replicas),
            "maxReplicas": max(serving.replicas, auto.serving_max_replicas),
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": METRIC_SERVING_DEMAND, "selector": pipeline_selector(pipeline)},
                        "target": {"type": "AverageValue", "averageValue": str(target)},
                    },
                }
            ],
            # a model server starts slowly and holds a model in memory: keep it longer than consumers
            "behavior": hpa_behavior(0, auto.scale_down_stabilization_seconds),
        },
    }


def build_keda_scaled_object(pipeline: str, spec: InferencePipelineSpec, polling_seconds: int = 5) -> dict[str, Any]:
    """A KEDA ScaledObject with the ``kafka`` trigger (KEDA computes lag itself, with its own semantics)."""
    auto = spec.autoscaling
    windows = (auto.scale_up_stabilization_seconds, auto.scale_down_stabilization_seconds)
    metadata = {
        "bootstrapServers": spec.kafka.bootstrap_servers,
        "consumerGroup": spec.consumer_group(pipeline),
        "topic": spec.topics.input.name,
        "lagThreshold": str(auto.lag_threshold),
        "activationLagThreshold": str(auto.activation_lag_threshold),
        "offsetResetPolicy": spec.consumer.auto_offset_reset.value,
        "allowIdleConsumers": "false",
        "excludePersistentLag": "true",  # KEDA's nearest to our stuck-partition exclusion
        "limitToPartitionsWithLag": str(auto.limit_to_partitions_with_lag).lower(),
    }
    if not read_committed(spec):
        metadata["isolationLevel"] = "read_uncommitted"
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(naming.consumer_name(pipeline), pipeline, naming.COMPONENT_CONSUMER),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": naming.consumer_name(pipeline)},
            "pollingInterval": polling_seconds,
            "cooldownPeriod": auto.cooldown_seconds,
            "minReplicaCount": auto.min_replicas,
            "maxReplicaCount": auto.max_replicas,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "name": naming.consumer_name(pipeline),
                    "behavior": hpa_behavior(*windows),
                }
            },
            "triggers": [{"type": "kafka", "metadata": metadata}],
        },
    }


def desired_autoscaling_children(pipeline: str, spec: InferencePipelineSpec) -> list[dict[str, Any]]:
    """The pipeline's autoscaling children (namespace, owner and hash are added by the reconcile)."""
    auto = spec.autoscaling
    if not auto.enabled:
        return []
    if auto.provider is AutoscalingProvider.KEDA:
        return [build_keda_scaled_object(pipeline, spec)]
    children = [build_consumer_hpa(pipeline, spec)]
    serving = spec.serving
    if serving.deploys_tfserving:
        children.append(build_tfserving_hpa(pipeline, spec))
    return children


# --- once per cluster -----------------------------------------------------------------------------------------


def build_apiservice(service_name: str, service_namespace: str, port: int, ca_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": APISERVICE_NAME, "labels": {naming.LABEL_PART_OF: "kinfer"}},
        "spec": {
            "group": METRICS_GROUP,
            "version": METRICS_VERSION,
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
            "service": {"name": service_name, "namespace": service_namespace, "port": port},
            "caBundle": base64.b64encode(ca_pem).decode(),
        },
    }


def build_metrics_api_service(
    name: str, namespace: str, port: int, selector: dict[str, str] | None = None, external_name: str | None = None
) -> dict[str, Any]:
    """The Service the APIService points at: the operator's pods, or (test bed) an ExternalName host."""
    metadata = {"name": name, "namespace": namespace, "labels": {naming.LABEL_PART_OF: "kinfer"}}
    if external_name is not None:
        spec: dict[str, Any] = {"type": "ExternalName", "externalName": external_name}
    else:
        spec = {"selector": selector or {}, "ports": [{"name": "https", "port": port, "targetPort": port}]}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}
