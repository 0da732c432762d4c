"""provider: keda — the operator writes a KEDA ScaledObject (validated by a minimal CRD of our own) and no HPA."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kinfer_operator.k8s.client import Kube, object_path
from tests.autoscaling.bed import wait_for
from tests.autoscaling.kafka_helpers import produce_spread
from tests.operator.bed import Bed
from tests.operator.conftest import CRD, OperatorProcess

pytestmark = pytest.mark.testbed
KEDA_CRD = Path(__file__).with_name("keda-scaledobject-crd.yaml")


@pytest.fixture
def keda_crd(testbed: Any) -> Iterator[None]:
    testbed.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(KEDA_CRD))
    testbed.wait_established("scaledobjects.keda.sh")
    yield
    testbed.kubectl("delete", "-f", str(KEDA_CRD), "--wait=false", check=False)


@pytest.fixture
def bed(testbed: Any, kube_api: Any, kafka_bootstrap: str, namespace: str) -> Bed:
    testbed.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    testbed.wait_established("inferencepipelines.kinfer.io")
    return Bed(testbed, kube_api, kafka_bootstrap, namespace)


def test_operator_writes_a_valid_scaled_object_instead_of_an_hpa(
    bed: Bed, kube_api: Any, keda_crd: None, tmp_path: Path
) -> None:
    kube = Kube(kube_api)
    name = "kd"
    operator = OperatorProcess(bed.testbed, bed.namespace, tmp_path / "operator.log", ["--lag-poll-seconds", "1"])
    operator.start()
    try:
        autoscaling = {"enabled": True, "provider": "keda", "minReplicas": 0, "maxReplicas": 5, "lagThreshold": 20}
        manifest = bed.manifest(name, partitions=2, autoscaling=autoscaling)
        bed.apply(manifest)
        path = object_path("keda.sh/v1alpha1", "ScaledObject", bed.namespace, f"{name}-consumer")
        scaled = wait_for(lambda: kube.request("GET", path), 90, "the ScaledObject")
        owner = scaled["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("InferencePipeline", name)
        spec = scaled["spec"]
        assert spec["scaleTargetRef"]["name"] == f"{name}-consumer"
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 5)
        trigger = spec["triggers"][0]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["topic"] == manifest["spec"]["topics"]["input"]["name"]
        assert trigger["metadata"]["bootstrapServers"] == bed.bootstrap
        assert trigger["metadata"]["lagThreshold"] == "20"
        hpa = object_path("autoscaling/v2", "HorizontalPodAutoscaler", bed.namespace, f"{name}-consumer")
        assert kube.request("GET", hpa) is None
        condition = wait_for(
            lambda: (c := bed.condition(name, "AutoscalingReady")) and c.get("reason") == "Scaling" and c,
            60,
            "AutoscalingReady from the lag monitor",
        )
        assert "keda" in condition["message"]
        # with lag and minReplicas 0 it is KEDA's to wake the Deployment, not the operator's (no double actuator)
        produce_spread(bed.bootstrap, trigger["metadata"]["topic"], 2, 50)
        wait_for(lambda: ((bed.get(name) or {}).get("status") or {}).get("lag") == 50, 60, "lag 50 in status")
        time.sleep(3)
        deployment = kube.request("GET", object_path("apps/v1", "Deployment", bed.namespace, f"{name}-consumer"))
        assert deployment is not None and deployment["spec"]["replicas"] == 0
    finally:
        bed.delete_all_pipelines(timeout=90)
        operator.stop()
