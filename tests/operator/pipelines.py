"""Sample pipelines for the operator's tests: the committed samples, parsed, with overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from kinfer_operator.builders.manifests import Owner
from kinfer_runtime.spec import InferencePipeline, parse_pipeline

SAMPLES = Path(__file__).resolve().parents[2] / "crds" / "samples"
FRAUD = SAMPLES / "fraud-embedded.yaml"
SENSOR = SAMPLES / "sensor-anomaly-tfserving.yaml"


def sample_manifest(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(path.read_text())
    return manifest


def deep_update(target: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def pipeline(path: Path = FRAUD, namespace: str = "ns1", **spec_changes: Any) -> InferencePipeline:
    manifest = sample_manifest(path)
    manifest["metadata"]["namespace"] = namespace
    deep_update(manifest["spec"], spec_changes)
    return parse_pipeline(manifest)


def owner(p: InferencePipeline) -> Owner:
    return Owner(p.metadata.name, p.metadata.namespace, "uid-1234")
