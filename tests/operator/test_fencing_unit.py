"""Which gone consumer pods the operator fences (``kafka.fencing.fence_departed_pod``), with an in-memory API:
only those of an existing, valid, exactly-once pipeline whose Kafka cluster the installation may reach."""

from __future__ import annotations

from typing import Any

import pytest

from kinfer_operator.k8s.client import object_path
from kinfer_operator.kafka import fencing
from kinfer_operator.status.preflight import AccessPolicy
from tests.operator.fake_cluster import FakeKube
from tests.operator.pipelines import FRAUD, deep_update, sample_manifest


@pytest.fixture
def fenced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(fencing, "fence", lambda config, tid, *_: calls.append((config["bootstrap.servers"], tid)))
    return calls


def kube_with(delivery: str, bootstrap: str = "kafka.data:9092") -> FakeKube:
    manifest: dict[str, Any] = sample_manifest(FRAUD)
    manifest["metadata"] = {"name": "p", "namespace": "team"}
    deep_update(manifest["spec"], {"consumer": {"delivery": delivery}, "kafka": {"bootstrapServers": bootstrap}})
    manifest["spec"]["kafka"].pop("sasl", None)
    manifest["spec"]["kafka"].pop("tls", None)
    kube = FakeKube()
    kube.put(object_path("kinfer.io/v1alpha1", "InferencePipeline", "team", "p"), manifest)
    return kube


def test_the_gone_pod_of_an_exactly_once_pipeline_is_fenced_under_the_runtimes_id(fenced: list) -> None:
    fenced_id = fencing.fence_departed_pod(kube_with("exactlyOnce"), AccessPolicy(), "team", "p", "p-consumer-x")  # type: ignore[arg-type]
    assert fenced == [("kafka.data:9092", "kinfer-team-p-p-consumer-x")]
    assert fenced_id == "kinfer-team-p-p-consumer-x"


@pytest.mark.parametrize(
    ("kube", "policy"),
    [
        (kube_with("atLeastOnce"), AccessPolicy()),  # nothing transactional to end
        (FakeKube(), AccessPolicy()),  # the pipeline is gone with its pods
        (kube_with("exactlyOnce", "elsewhere:9092"), AccessPolicy(bootstrap=("kafka.data:9092",))),  # not allowed
    ],
    ids=["at-least-once", "pipeline-gone", "bootstrap-not-allowed"],
)
def test_nothing_else_is_fenced(fenced: list, kube: FakeKube, policy: AccessPolicy) -> None:
    assert fencing.fence_departed_pod(kube, policy, "team", "p", "p-consumer-x") is None  # type: ignore[arg-type]
    assert fenced == []
