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

from kinfer_operator import naming


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


def key_of(manifest: dict[str, Any]) -> tuple[str, str, str]:
    """(apiVersion, kind, name): how the reconcile matches desired children with live ones."""
    return manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"]
