"""Pure builders for the consumer side of a pipeline: runtime ConfigMap, consumer Deployment, metrics Service.

The ConfigMap holds the whole InferencePipeline with defaults filled (docs/runtime.md) and is what
``kinfer run /etc/kinfer/pipeline.yaml`` reads. Its content hash is stamped on the pod template, so a spec change
that only touches the runtime's config (batch size, say) rolls the pods. The Deployment is hardened (non-root,
read-only root filesystem, no capabilities), spread across nodes, and given the grace period the spec asks for
so a pod can finish its batch, commit and leave the group before it is killed.
"""

from __future__ import annotations

from typing import Any

import yaml

from kinfer_operator.builders import naming
from kinfer_operator.builders.manifests import Owner, build_deployment, child, content_hash
from kinfer_operator.builders.volumes import PodVolumes, add_kafka_secret_volumes, add_model_volume
from kinfer_runtime.spec import InferencePipeline, ServingMode

RUNTIME_USER = 10001

CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUNTIME_USER,
    "runAsGroup": RUNTIME_USER,
    "fsGroup": RUNTIME_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def runtime_document(pipeline: InferencePipeline) -> dict[str, Any]:
    """The manifest the runtime reads: apiVersion, kind, metadata {name, namespace}, spec with defaults filled.

    Without ``ingestion``: the runtime never reads it, and a ConfigMap is readable by anyone with ``view`` on the
    namespace, so the connectors' configs stay in the pipeline object only."""
    spec = pipeline.spec.to_wire()
    spec.pop("ingestion", None)
    spec.pop("batch", None)  # each run's Job gets its part on its command line (builders/batch_jobs.py)
    return {
        "apiVersion": naming.PIPELINE_API_VERSION,
        "kind": naming.PIPELINE_KIND,
        "metadata": {"name": pipeline.metadata.name, "namespace": pipeline.metadata.namespace},
        "spec": spec,
    }


def build_runtime_configmap(pipeline: InferencePipeline, owner: Owner) -> dict[str, Any]:
    text = yaml.safe_dump(runtime_document(pipeline), sort_keys=False)
    return child(
        "v1",
        "ConfigMap",
        naming.runtime_config_name(owner.name),
        owner,
        naming.COMPONENT_RUNTIME_CONFIG,
        {"data": {naming.RUNTIME_CONFIG_KEY: text}},
    )


def runtime_volumes(pipeline: InferencePipeline, owner: Owner) -> tuple[PodVolumes, list[dict[str, Any]]]:
    """What every pod running the runtime mounts and gets in its environment (the consumers and the batch runs'
    Jobs): the runtime ConfigMap, /tmp, the model, the Kafka Secrets, and TF Serving's address in tfserving mode."""
    spec = pipeline.spec
    volumes = PodVolumes()
    volumes.add(
        {"name": "runtime-config", "configMap": {"name": naming.runtime_config_name(owner.name)}},
        {"mountPath": naming.RUNTIME_CONFIG_DIR, "readOnly": True},
    )
    volumes.add({"name": "tmp", "emptyDir": {}}, {"mountPath": "/tmp"})
    add_model_volume(volumes, spec.model, CONTAINER_SECURITY)
    env: list[dict[str, Any]] = [{"name": "KINFER_MODEL_ROOT", "value": naming.MODEL_ROOT}]
    env += add_kafka_secret_volumes(volumes, spec.kafka)
    if spec.serving.mode is ServingMode.TFSERVING:
        env.append({"name": "KINFER_TFSERVING_ENDPOINT", "value": pipeline.tfserving_address})
    return volumes, env


def build_consumer_deployment(
    pipeline: InferencePipeline,
    owner: Owner,
    replicas: int | None,
    config_hash: str,
    runtime_image: str = naming.DEFAULT_RUNTIME_IMAGE,
) -> dict[str, Any]:
    """The consumer Deployment. ``replicas`` None leaves the count to an autoscaler (not part of the hash)."""
    spec = pipeline.spec
    port = spec.monitoring.metrics_port
    volumes, env = runtime_volumes(pipeline, owner)
    env.insert(0, {"name": "KINFER_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "metrics"},
            "periodSeconds": period,
            "failureThreshold": failures,
            "timeoutSeconds": 3,
        }

    container = {
        "name": "consumer",
        "image": spec.consumer.image or runtime_image,
        "command": ["kinfer", "run", f"{naming.RUNTIME_CONFIG_DIR}/{naming.RUNTIME_CONFIG_KEY}"],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        # Loading and warming a model can take minutes: the startup probe holds liveness off until then.
        "startupProbe": probe("/healthz", 5, 60),
        "livenessProbe": probe("/healthz", 10, 3),
        "readinessProbe": probe("/readyz", 5, 2),
        "resources": spec.consumer.resources.to_wire(),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": volumes.mounts,
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes.volumes,
        "securityContext": POD_SECURITY,
        "terminationGracePeriodSeconds": spec.consumer.termination_grace_seconds,
        "automountServiceAccountToken": False,
        **spec.consumer.placement.pod_fields(),
    }
    if volumes.init_containers:
        pod_spec["initContainers"] = volumes.init_containers
    return build_deployment(
        naming.consumer_name(owner.name),
        owner,
        naming.COMPONENT_CONSUMER,
        pod_spec,
        config_hash=config_hash,
        metrics_port=port,
        metrics_path="/metrics",
        replicas=replicas,
    )


def build_metrics_service(pipeline: InferencePipeline, owner: Owner) -> dict[str, Any]:
    """Service in front of the consumers' metrics port (what a ServiceMonitor or Prometheus scrapes)."""
    port = pipeline.spec.monitoring.metrics_port
    return child(
        "v1",
        "Service",
        naming.metrics_service_name(owner.name),
        owner,
        naming.COMPONENT_METRICS,
        {
            "spec": {
                "selector": naming.selector_labels(owner.name, naming.COMPONENT_CONSUMER),
                "ports": [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}],
            }
        },
    )


# Spec fields the runtime process doesn't act on: changing them must not roll the consumer pods
# (a `kubectl scale` or a partition increase is not a reason to restart every consumer).
_NOT_FOR_THE_RUNTIME = {
    "consumer": ("replicas",),
    "autoscaling": None,
    "ingestion": None,
    "deletionPolicy": None,
    "batch": None,
    "topics": None,  # names matter, but the runtime never creates or sizes topics; names are handled below
}


def rollout_hash(pipeline: InferencePipeline, secret_versions: dict[str, str] | None = None) -> str:
    """Hash of the runtime config the consumers act on: stamped on the pod template so a change rolls them.

    ``secret_versions``: the resourceVersion of each Secret the pods mount. The runtime reads its credentials
    once, at start, so a rotated password must roll the pods to reach them (the version, never a value, is
    hashed: the template is readable with ``view``)."""
    spec = pipeline.spec.to_wire()
    for key, fields in _NOT_FOR_THE_RUNTIME.items():
        if fields is None:
            spec.pop(key, None)
        else:
            for name in fields:
                spec.get(key, {}).pop(name, None)
    spec["topicNames"] = [topic.name for _, topic in pipeline.spec.topics.roles()]
    tfserving = spec.get("serving", {}).get("tfserving", {})
    for name in ("replicas", "resources", "image", "batching"):
        tfserving.pop(name, None)
    if secret_versions:
        spec["secretVersions"] = dict(sorted(secret_versions.items()))
    return content_hash(spec)
