"""Volumes shared by the consumer and TF Serving pods: the model, Kafka credentials, scratch space.

Model URIs (docs/models.md): ``pvc://CLAIM/PATH`` mounts the claim read-only at the model root, so the
model is at ``$KINFER_MODEL_ROOT/PATH``; ``s3://BUCKET/PATH`` and ``gs://BUCKET/PATH`` are copied there by an
init container into an emptyDir (TF Serving's own S3 support is broken since 2.7, tensorflow/serving#1963);
an absolute path is inside the image and needs nothing. Kafka SASL and TLS Secrets are mounted as files, only
the keys the spec names, so credentials never pass through a ConfigMap, an env var or the status.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from kinfer_operator.builders import naming
from kinfer_runtime.spec import KafkaSpec, ModelSpec, uri_scheme

S3_SYNC_IMAGE = "amazon/aws-cli:2.27.0"
GS_SYNC_IMAGE = "google/cloud-sdk:530.0.0-slim"
MODEL_VOLUME = "model"


@dataclass
class PodVolumes:
    """Volumes, their mounts in the main container, and init containers that fill them."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)

    def add(self, volume: dict[str, Any], mount: dict[str, Any]) -> None:
        self.volumes.append(volume)
        self.mounts.append({"name": volume["name"], **mount})


def split_model_uri(uri: str) -> tuple[str, str, str]:
    """(scheme, claim or bucket, path inside it); for a plain path: ("file", "", path)."""
    scheme = uri_scheme(uri)
    if scheme == "file":
        return scheme, "", uri
    rest = uri.split("://", 1)[1]
    location, _, path = rest.partition("/")
    return scheme, location, path.strip("/")


def model_local_path(uri: str) -> str:
    """Where the model lives inside a pod (TF Serving's ``base_path``)."""
    scheme, _, path = split_model_uri(uri)
    return path if scheme == "file" else posixpath.join(naming.MODEL_ROOT, path)


def add_model_volume(volumes: PodVolumes, model: ModelSpec, security_context: dict[str, Any]) -> None:
    scheme, location, path = split_model_uri(model.uri)
    if scheme == "file":
        return
    if scheme == "pvc":
        claim = {"claimName": location, "readOnly": True}
        volumes.add({"name": MODEL_VOLUME, "persistentVolumeClaim": claim}, {"mountPath": naming.MODEL_ROOT})
        return
    volumes.add({"name": MODEL_VOLUME, "emptyDir": {}}, {"mountPath": naming.MODEL_ROOT, "readOnly": True})
    target = posixpath.join(naming.MODEL_ROOT, path)
    if scheme == "s3":
        image, command = S3_SYNC_IMAGE, ["aws", "s3", "sync", "--only-show-errors", model.uri, target]
    else:
        image, command = GS_SYNC_IMAGE, ["gcloud", "storage", "rsync", "--recursive", model.uri, target]
    init: dict[str, Any] = {
        "name": "model-sync",
        "image": image,
        "command": command,
        "env": [{"name": "HOME", "value": "/tmp"}],  # the CLIs write caches under $HOME
        "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": naming.MODEL_ROOT}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": security_context,
    }
    if model.storage_secret:
        init["envFrom"] = [{"secretRef": {"name": model.storage_secret}}]
    volumes.init_containers.append(init)


def add_kafka_secret_volumes(volumes: PodVolumes, kafka: KafkaSpec) -> list[dict[str, Any]]:
    """Mount the SASL and TLS Secrets (only the named keys); returns the env vars pointing the runtime at them."""
    env = []
    if kafka.sasl is not None:
        keys = kafka.sasl.keys
        volumes.add(
            _secret_volume("kafka-sasl", kafka.sasl.secret_name, keys), {"mountPath": naming.SASL_DIR, "readOnly": True}
        )
        env.append({"name": "KINFER_SASL_DIR", "value": naming.SASL_DIR})
    if kafka.tls is not None:
        keys = kafka.tls.keys
        volumes.add(
            _secret_volume("kafka-tls", kafka.tls.secret_name, keys), {"mountPath": naming.TLS_DIR, "readOnly": True}
        )
        env.append({"name": "KINFER_TLS_DIR", "value": naming.TLS_DIR})
    return env


def _secret_volume(volume: str, secret: str, keys: list[str]) -> dict[str, Any]:
    items = [{"key": key, "path": key} for key in dict.fromkeys(keys)]
    return {"name": volume, "secret": {"secretName": secret, "items": items, "defaultMode": 0o440}}


def referenced_secrets(kafka: KafkaSpec, model: ModelSpec) -> dict[str, list[str]]:
    """Secret name → keys the pods will need (checked before anything is created)."""
    needed = kafka.secret_keys()
    if model.storage_secret:
        needed.setdefault(model.storage_secret, [])
    return needed
