"""Fixtures of the real-cluster tests: one ``helm install`` of kinfer for this package on the bed's real node (two
operator replicas, as a production install has them), watching one namespace of its own where the tests put their
pipelines. Namespaced, and uninstalled after the package: the other tests run operators of their own, and an
operator watching every namespace would reconcile their pipelines too."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.cluster import ClusterBed, chart_values, helm_install, model_volume
from tests.helm.release import Release, adopt_crd, external_metrics_api_free, kubectl_json
from tests.testbed import TestBed
from tests.testbed.node import NodeAccess

OPERATOR_REPLICAS = 2


@dataclass(frozen=True)
class Installed:
    release: Release
    node: NodeAccess
    values: dict[str, Any]
    pipelines_namespace: str  # the one namespace the operator watches

    @property
    def runtime_image(self) -> str:
        return self.node.images["runtime"]

    def operator_pods(self, bed: TestBed) -> list[dict[str, Any]]:
        selector = "app.kubernetes.io/name=kinfer-operator"
        listed = kubectl_json(bed, "get", "pods", "-n", self.release.namespace, "-l", selector)
        return [p for p in (listed or {}).get("items", []) if not p["metadata"].get("deletionTimestamp")]


@pytest.fixture(scope="package")
def installed(testbed: TestBed, real_node: NodeAccess) -> Iterator[Installed]:
    suffix = uuid.uuid4().hex[:6]
    release = Release(f"kinfer-{suffix}", f"kinfer-system-{suffix}")
    pipelines = f"kinfer-cluster-{suffix}"
    values = {**chart_values(real_node, f"kinfer-{suffix}", OPERATOR_REPLICAS), "watchNamespaces": [pipelines]}
    for namespace in (release.namespace, pipelines):
        testbed.kubectl("create", "namespace", namespace)
    with external_metrics_api_free(testbed):
        adopt_crd(testbed, release)
        helm_install(testbed, release, values)
        try:
            yield Installed(release, real_node, values, pipelines)
        finally:
            testbed.helm("uninstall", release.name, "-n", release.namespace, "--wait", check=False)
            for namespace in (release.namespace, pipelines):
                testbed.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def cluster(testbed: TestBed, kube_api: Any, kafka_bootstrap: str, installed: Installed) -> Iterator[ClusterBed]:
    bed = ClusterBed(testbed, kube_api, kafka_bootstrap, installed.pipelines_namespace, installed.node)
    try:
        yield bed
    finally:
        bed.delete_all_pipelines(timeout=180)  # the next test starts with an idle operator


@pytest.fixture
def model_claim(cluster: ClusterBed) -> Iterator[str]:
    """A claim (and its PersistentVolume, same name) of a hostPath directory on the node holding models/fraud at
    fraud/; the model's URI is ``pvc://<claim>/fraud``. Removed with the test's pipelines, which mount it."""
    directory = Path(tempfile.mkdtemp(prefix="kinfer-models-", dir="/var/tmp"))  # tmp_path is private to root
    directory.chmod(0o755)
    claim = f"models-{uuid.uuid4().hex[:6]}"
    try:
        model_volume(cluster, directory, claim)
        yield claim
    finally:
        cluster.delete_all_pipelines(timeout=180)
        cluster.testbed.kubectl("delete", "pvc", claim, "-n", cluster.namespace, "--wait=false", check=False)
        cluster.testbed.kubectl("delete", "pv", claim, "--wait=false", check=False)
        shutil.rmtree(directory, ignore_errors=True)
