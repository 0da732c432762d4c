"""InferencePipeline manifests for the ingestion tests, and ``kinfer run`` of one as a local process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.testbed.process import free_port

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


@contextlib.contextmanager
def running_pipeline(path: Path, bootstrap: str, log_path: Path) -> Iterator[None]:
    """``kinfer run`` as a process for the duration of the block, stopped with SIGTERM."""
    env = {**os.environ, "KINFER_BOOTSTRAP_SERVERS": bootstrap}
    with log_path.open("wb") as log:
        runtime = subprocess.Popen(
            [sys.executable, "-m", "kinfer_runtime.cli", "run", str(path), "--metrics-port", str(free_port())],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip
        try:
            yield
        finally:
            runtime.send_signal(signal.SIGTERM)
            runtime.wait(60)
