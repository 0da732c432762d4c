"""(d-tfs) kinfer run in ``tfserving`` mode: every batch is one gRPC Predict call to a model server.

The server is the TF Serving stand-in of tests/tfserving (``python -m tests.tfserving``), started with TF Serving's
flags and the batching parameters the operator generates for the pipeline (``batching_config_text``, from
``spec.serving.tfserving.batching``), serving the same fraud model version as the embedded runs. It is **not**
``tensorflow_model_server`` (which cannot be had here): it decodes the request, runs the SavedModel's signature
in Python and encodes the answer, so the figures measure kinfer's side of the hop (request encoding, the gRPC
round trip on loopback, response decoding) plus a Python server, not the real server's latency or memory.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from kinfer_operator.builders.tfserving import batching_config_text
from kinfer_runtime.spec import parse_pipeline
from tests.bench.kinfer_case import peak_rss_mb
from tests.testbed import free_port

ROOT = Path(__file__).resolve().parents[2]


def tfserving_manifest(pipeline: dict[str, Any], grpc_port: int, rest_port: int) -> dict[str, Any]:
    """The same pipeline, served by the model server at 127.0.0.1 (the REST port only for its fallback)."""
    served = copy.deepcopy(pipeline)
    served["spec"]["serving"] = {
        "mode": "tfserving",
        "tfserving": {"endpoint": f"127.0.0.1:{grpc_port}", "restPort": rest_port},
    }
    return served


class ModelServer:
    """The stand-in serving ``model_dir``'s version ``version`` on loopback ports of this run."""

    def __init__(self, pipeline: dict[str, Any], model_dir: Path, work_dir: Path) -> None:
        self.grpc_port, self.rest_port = free_port(), free_port()
        spec = parse_pipeline(pipeline).spec
        name, version = spec.model.name, spec.model.version
        config = work_dir / "tfserving-models.config"
        config.write_text(
            f'model_config_list {{ config {{ name: "{name}" base_path: "{model_dir}" model_platform: "tensorflow" '
            f"model_version_policy {{ specific {{ versions: {version} }} }} }} }}\n"
        )
        batching = work_dir / "tfserving-batching.config"
        batching.write_text(batching_config_text(parse_pipeline(pipeline)))
        self.log_path = work_dir / "tfserving-standin.log"
        self.command = [sys.executable, "-m", "tests.tfserving", f"--port={self.grpc_port}",
                        f"--rest_api_port={self.rest_port}", f"--model_config_file={config}",
                        "--enable_batching=true", f"--batching_parameters_file={batching}"]  # fmt: skip
        self.status_url = f"http://127.0.0.1:{self.rest_port}/v1/models/{name}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ModelServer:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the TF Serving stand-in exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.status_url, timeout=2) as reply:
                    if b"AVAILABLE" in reply.read():
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the TF Serving stand-in did not serve the model in 120 s; see {self.log_path}")

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        return peak_rss_mb(self.process.pid)

    def __exit__(self, *_exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
