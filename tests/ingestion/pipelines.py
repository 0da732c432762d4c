"""InferencePipeline manifests for the ingestion tests, written to a temporary file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def pipeline_manifest(name: str, bootstrap: str, topics: dict[str, str], **spec: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": "kinfer.io/v1alpha1",
        "kind": "InferencePipeline",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "kafka": {"bootstrapServers": bootstrap},
            "topics": {
                "input": {"name": topics["input"]},
                "output": {"name": topics["output"]},
                "deadLetter": {"name": topics["deadLetter"]},
            },
            "model": {"name": "fraud", "uri": str(REPO / "models" / "fraud")},
        },
    }
    manifest["spec"].update(spec)
    return manifest


def write_pipeline(path: Path, manifest: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path
