"""Helpers of the chart tests on the test bed: install a release, make room for cluster-wide singletons, run the
operator out of cluster with a release's ServiceAccount identity.

Two things in a cluster have one owner at a time: the InferencePipeline CRD and the external metrics APIService.
Other tests on the shared bed may have created them without Helm, so `adopt_crd` marks an existing CRD as the
release's (Helm's documented adoption: the managed-by label and release annotations), and
`external_metrics_api_free` sets an existing APIService aside for the duration and puts it back afterwards.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from tests.polling import wait_until
from tests.testbed import TestBed, free_port

CRD_NAME = "inferencepipelines.kinfer.io"
APISERVICE = "v1beta1.external.metrics.k8s.io"

# Most checks here run kubectl (a process per poll): once a second is often enough.
wait_for = partial(wait_until, interval=1.0)


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str

    @property
    def fullname(self) -> str:
        return f"{self.name}-kinfer-operator"

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"


def kubectl_json(bed: TestBed, *args: str) -> dict[str, Any] | None:
    result = bed.kubectl(*args, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr or "not found" in result.stderr, result.stderr
        return None
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def adopt_crd(bed: TestBed, release: Release) -> None:
    if kubectl_json(bed, "get", "crd", CRD_NAME) is None:
        return
    bed.kubectl(
        "annotate", "crd", CRD_NAME, "--overwrite",
        f"meta.helm.sh/release-name={release.name}", f"meta.helm.sh/release-namespace={release.namespace}",
    )  # fmt: skip
    bed.kubectl("label", "crd", CRD_NAME, "--overwrite", "app.kubernetes.io/managed-by=Helm")


@contextlib.contextmanager
def external_metrics_api_free(bed: TestBed) -> Iterator[None]:
    stashed = kubectl_json(bed, "get", "apiservice", APISERVICE)
    if stashed is not None:
        bed.kubectl("delete", "apiservice", APISERVICE, "--wait=true")
    try:
        yield
    finally:
        if stashed is not None and kubectl_json(bed, "get", "apiservice", APISERVICE) is None:
            metadata = stashed["metadata"]
            stashed["metadata"] = {k: metadata[k] for k in ("name", "labels", "annotations") if k in metadata}
            stashed.pop("status", None)
            bed.kubectl("create", "-f", "-", input=json.dumps(stashed))


def service_account_kubeconfig(bed: TestBed, release: Release, path: Path) -> Path:
    """A kubeconfig for the bed's API server whose user is the release's ServiceAccount (a bound token)."""
    token = bed.kubectl("create", "token", release.fullname, "-n", release.namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(bed.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "chart-sa", "user": {"token": token}}],
        "contexts": [{"name": "chart-sa", "context": {"cluster": cluster["name"], "user": "chart-sa"}}],
        "current-context": "chart-sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def operator_command_from_chart(bed: TestBed, release: Release, tls_dir: Path) -> tuple[list[str], dict[str, str]]:
    """`kinfer operator` with the args and env of the release's Deployment; ports moved to free loopback ports and
    the serving certificate read from the release's Secret (a pod would mount it)."""
    deployment = kubectl_json(bed, "get", "deployment", release.fullname, "-n", release.namespace)
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args: list[str] = []
    for arg in container["args"]:
        if arg.startswith(("--metrics-port=", "--external-metrics-port=")):
            arg = f"{arg.split('=')[0]}={free_port()}"
        elif arg.startswith(("--tls-cert-file=", "--tls-key-file=")):
            flag, mounted = arg.split("=")
            secret = kubectl_json(bed, "get", "secret", f"{release.fullname}-metrics-api-tls", "-n", release.namespace)
            assert secret is not None
            import base64

            key = Path(mounted).name
            (tls_dir / key).write_bytes(base64.b64decode(secret["data"][key]))
            arg = f"{flag}={tls_dir / key}"
        args.append(arg)
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    env["KINFER_OPERATOR_NAMESPACE"] = release.namespace
    return [*container["command"], *args], env


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
