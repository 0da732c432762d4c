"""Pure builders for ``serving.mode: tfserving``: the model-server ConfigMap, Deployment and Service.

The ConfigMap holds TF Serving's text-protobuf files: ``models.config`` (a ``model_config_list`` with the
pipeline's version policy) and ``batching.config`` (server-side batching parameters from the spec), so
consumer micro-batches and server batches are sized from one place. TF Serving polls ``models.config``, so a
version change is picked up without a restart. Readiness asks TF Serving for the model's own status
(``GET /v1/models/<name>``), not merely whether the process listens.
"""

from __future__ import annotations

from typing import Any

from kinfer_operator.builders import naming
from kinfer_operator.builders.consumer import CONTAINER_SECURITY, POD_SECURITY
from kinfer_operator.builders.manifests import Owner, build_deployment, child, content_hash
from kinfer_operator.builders.volumes import PodVolumes, add_model_volume, model_local_path
from kinfer_runtime.spec import InferencePipeline, VersionPolicy

MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"
MONITORING_CONFIG = "monitoring.config"
CONFIG_POLL_SECONDS = 30
HEADLESS = "None"  # Service.spec.clusterIP of a headless Service


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def models_config_text(pipeline: InferencePipeline) -> str:
    """``model_config_list`` in protobuf text format (tensorflow_serving/config/model_server_config.proto)."""
    model = pipeline.spec.model
    if model.version_policy is VersionPolicy.PINNED:
        versions = [model.version, *([model.rollout.candidate_version] if model.rollout else [])]
        policy = "specific { " + " ".join(f"versions: {v}" for v in versions) + " }"  # a rollout serves both
    else:
        policy = "latest { num_versions: 1 }"
    return (
        "model_config_list {\n"
        "  config {\n"
        f"    name: {_quote(model.name)}\n"
        f"    base_path: {_quote(model_local_path(model.uri))}\n"
        '    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ {policy} }}\n"
        "  }\n"
        "}\n"
    )


def batching_config_text(pipeline: InferencePipeline) -> str:
    """Batching parameters (tensorflow_serving/servables/tensorflow/session_bundle_config.proto)."""
    batching = pipeline.spec.serving.tfserving.batching
    return (
        f"max_batch_size {{ value: {batching.max_batch_size} }}\n"
        f"batch_timeout_micros {{ value: {batching.batch_timeout_micros} }}\n"
        f"num_batch_threads {{ value: {batching.num_batch_threads} }}\n"
        f"max_enqueued_batches {{ value: {batching.max_enqueued_batches} }}\n"
    )


def build_tfserving_configmap(pipeline: InferencePipeline, owner: Owner) -> dict[str, Any]:
    data = {
        MODELS_CONFIG: models_config_text(pipeline),
        BATCHING_CONFIG: batching_config_text(pipeline),
        MONITORING_CONFIG: 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n',
    }
    return child(
        "v1", "ConfigMap", naming.tfserving_config_name(owner.name), owner, naming.COMPONENT_TFSERVING, {"data": data}
    )


def tfserving_args(pipeline: InferencePipeline) -> list[str]:
    tfserving = pipeline.spec.serving.tfserving
    config_dir = naming.TFSERVING_CONFIG_DIR
    args = [
        f"--port={tfserving.grpc_port}",
        f"--rest_api_port={tfserving.rest_port}",
        f"--model_config_file={config_dir}/{MODELS_CONFIG}",
        f"--model_config_file_poll_wait_seconds={CONFIG_POLL_SECONDS}",
        f"--monitoring_config_file={config_dir}/{MONITORING_CONFIG}",
        "--enable_model_warmup=true",
    ]
    if tfserving.batching.enabled:
        args += ["--enable_batching=true", f"--batching_parameters_file={config_dir}/{BATCHING_CONFIG}"]
    return args


def build_tfserving_deployment(
    pipeline: InferencePipeline, owner: Owner, replicas: int | None, config_hash: str
) -> dict[str, Any]:
    """TF Serving Deployment; ``replicas`` None leaves the count to an autoscaler (not part of the hash)."""
    spec = pipeline.spec
    tfserving = spec.serving.tfserving
    model = spec.model
    volumes = PodVolumes()
    volumes.add(
        {"name": "tfserving-config", "configMap": {"name": naming.tfserving_config_name(owner.name)}},
        {"mountPath": naming.TFSERVING_CONFIG_DIR, "readOnly": True},
    )
    volumes.add({"name": "tmp", "emptyDir": {}}, {"mountPath": "/tmp"})
    add_model_volume(volumes, model, CONTAINER_SECURITY)
    status_path = f"/v1/models/{model.name}"
    if model.version_policy is VersionPolicy.PINNED:
        status_path += f"/versions/{model.version}"
    container = {
        "name": "tfserving",
        "image": tfserving.image,
        "args": tfserving_args(pipeline),
        "ports": [
            {"name": "grpc", "containerPort": tfserving.grpc_port, "protocol": "TCP"},
            {"name": "http", "containerPort": tfserving.rest_port, "protocol": "TCP"},
        ],
        "startupProbe": {"tcpSocket": {"port": "grpc"}, "periodSeconds": 5, "failureThreshold": 60},
        "livenessProbe": {"tcpSocket": {"port": "grpc"}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {
            "httpGet": {"path": status_path, "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 2,
            "timeoutSeconds": 3,
        },
        "resources": tfserving.resources.to_wire(),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": volumes.mounts,
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes.volumes,
        "securityContext": POD_SECURITY,
        "automountServiceAccountToken": False,
        **tfserving.placement.pod_fields(),
    }
    if volumes.init_containers:
        pod_spec["initContainers"] = volumes.init_containers
    return build_deployment(
        naming.tfserving_name(owner.name),
        owner,
        naming.COMPONENT_TFSERVING,
        pod_spec,
        config_hash=config_hash,
        metrics_port=tfserving.rest_port,
        metrics_path="/monitoring/prometheus/metrics",
        replicas=replicas,
    )


def build_tfserving_service(pipeline: InferencePipeline, owner: Owner) -> dict[str, Any]:
    """Headless (``clusterIP: None``): the name resolves to every ready TF Serving pod, and the consumers spread
    their calls over all of them (gRPC round_robin, re-resolved every few seconds: predictors/balancing.py).

    Behind a cluster IP each consumer's one HTTP/2 connection would stay on one pod, so added replicas got no
    load. ``clusterIP`` is immutable: kube-apiserver (checked on v1.36.3) refuses to turn an existing ClusterIP
    Service headless, whether by server-side apply (with force), merge patch or replace: 422, reason Invalid,
    ``Service "<name>" is invalid: spec.clusterIPs[0]: Invalid value: ["None"]: may not change once set``, and
    nothing else in that write lands. A Service made by an earlier operator version must be deleted and created
    again to take this change; running consumers pick up the pods' addresses at their next re-resolution.
    """
    tfserving = pipeline.spec.serving.tfserving
    ports = [
        {"name": "grpc", "port": tfserving.grpc_port, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
        {"name": "http", "port": tfserving.rest_port, "targetPort": "http", "protocol": "TCP"},
    ]
    spec = {
        "clusterIP": HEADLESS,
        "selector": naming.selector_labels(owner.name, naming.COMPONENT_TFSERVING),
        "ports": ports,
    }
    return child("v1", "Service", naming.tfserving_name(owner.name), owner, naming.COMPONENT_TFSERVING, {"spec": spec})


def tfserving_config_hash(configmap: dict[str, Any]) -> str:
    """Only batching changes need a restart: models.config is polled by TF Serving itself."""
    data = configmap.get("data", {})
    return content_hash({key: value for key, value in data.items() if key != MODELS_CONFIG})
