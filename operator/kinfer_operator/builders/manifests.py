"""Shared pieces of every child manifest: metadata, owner reference, and the spec-hash that makes applies idempotent.

A child is a plain dict (what ``kubectl apply`` would send). Its ``kinfer.io/spec-hash`` annotation is the hash
of everything the operator sets, computed before the annotation is added; the reconcile compares it with the
live object's annotation and writes only on a difference, so an idle reconcile sends nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from kinfer_operator.builders import naming


@dataclass(frozen=True)
class Owner:
    """The InferencePipeline a child belongs to (what an owner reference needs)."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": naming.PIPELINE_API_VERSION,
            "kind": naming.PIPELINE_KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def content_hash(value: Any) -> str:
    """A short, stable hash of any JSON-able value (key order does not matter)."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def child(
    api_version: str,
    kind: str,
    name: str,
    owner: Owner,
    component: str,
    body: dict[str, Any],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A complete child manifest with labels, owner reference and the spec-hash annotation."""
    manifest: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": naming.common_labels(owner.name, component),
            "annotations": dict(annotations or {}),
            "ownerReferences": [owner.reference()],
        },
        **body,
    }
    manifest["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH] = content_hash(manifest)
    return manifest


def spec_hash_of(manifest: dict[str, Any]) -> str | None:
    """The spec-hash annotation of a live or desired object (None when absent: a hand-made or foreign object)."""
    annotations = (manifest.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(naming.ANNOTATION_SPEC_HASH)
    return str(value) if value is not None else None


def build_deployment(
    name: str,
    owner: Owner,
    component: str,
    pod_spec: dict[str, Any],
    *,
    config_hash: str,
    metrics_port: int,
    metrics_path: str,
    replicas: int | None,
) -> dict[str, Any]:
    """A child Deployment of one component: pods spread across nodes, scrape annotations, the config hash that
    rolls the pods when their configuration changes, and ``replicas`` left out when an autoscaler owns it."""
    selector = naming.selector_labels(owner.name, component)
    spread = {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": selector},
    }
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        # One pod at a time and never below the asked count: for consumers each change is one rebalance, not a
        # storm; for TF Serving the model stays served throughout.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {
            "metadata": {
                "labels": naming.common_labels(owner.name, component),
                "annotations": {
                    naming.ANNOTATION_CONFIG_HASH: config_hash,
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(metrics_port),
                    "prometheus.io/path": metrics_path,
                },
            },
            "spec": {**pod_spec, "topologySpreadConstraints": [spread]},
        },
    }
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    return child("apps/v1", "Deployment", name, owner, component, {"spec": deployment_spec})
