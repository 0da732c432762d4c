"""`prune_children`: a list the API refuses is logged (kind, namespace) and skipped; the rest of the pass still prunes.

The Kubernetes side is a small in-memory stand-in for `Kube.request` (the function's only I/O); pruning against
the real API server is covered on the bed (test_lifecycle, test_chart_install).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kinfer_operator.k8s.children import prune_children
from kinfer_operator.k8s.client import KubeError, object_path
from kinfer_operator.status.document import Event

NS, NAME, UID = "team-a", "fraud", "uid-1"


class ListingApi:
    """Answers list GETs from `items` by path, or raises the status in `refuse`; records DELETEs."""

    def __init__(self, items: dict[str, list[dict[str, Any]]], refuse: dict[str, int]):
        self.items, self.refuse = items, refuse
        self.deleted: list[str] = []

    def request(self, method: str, path: str, **_: Any) -> dict[str, Any] | None:
        if method == "DELETE":
            self.deleted.append(path)
            return {}
        if path in self.refuse:
            raise KubeError(self.refuse[path], f"refused {path}")
        return {"items": self.items.get(path, [])}


def owned(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "ownerReferences": [{"uid": UID}]}}


def child(api_version: str, kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": NS}}


CONFIGMAPS = object_path("v1", "ConfigMap", NS)
DEPLOYMENTS = object_path("apps/v1", "Deployment", NS)
HPAS = object_path("autoscaling/v2", "HorizontalPodAutoscaler", NS)
SCALEDOBJECTS = object_path("keda.sh/v1alpha1", "ScaledObject", NS)
NETWORKPOLICIES = object_path("networking.k8s.io/v1", "NetworkPolicy", NS)


def prune(api: ListingApi, children: list[dict[str, Any]]) -> tuple[dict[str, str], list[Event]]:
    events: list[Event] = []
    return prune_children(api, NS, NAME, UID, children, events), events  # type: ignore[arg-type]


def test_a_refused_list_is_logged_and_the_other_kinds_still_pruned(caplog: pytest.LogCaptureFixture) -> None:
    api = ListingApi({CONFIGMAPS: [owned("fraud-runtime"), owned("fraud-tfserving-config")]}, {DEPLOYMENTS: 403})
    with caplog.at_level(logging.WARNING, logger="kinfer_operator.k8s.children"):
        pruned, events = prune(api, [child("v1", "ConfigMap", "fraud-runtime")])
    assert pruned == {"ConfigMap/fraud-tfserving-config": "deleted"}
    assert api.deleted == [object_path("v1", "ConfigMap", NS, "fraud-tfserving-config")]
    assert [e.reason for e in events] == ["Pruned"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "Deployment" in warnings[0] and NS in warnings[0] and "403" in warnings[0]


def test_an_unused_opt_in_kind_refused_is_quiet_but_a_used_one_or_another_error_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The chart grants ScaledObjects only with rbac.keda: a 403 is expected while no pipeline uses KEDA.
    with caplog.at_level(logging.WARNING, logger="kinfer_operator.k8s.children"):
        prune(ListingApi({}, {SCALEDOBJECTS: 403}), [])
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="kinfer_operator.k8s.children"):
        prune(ListingApi({}, {SCALEDOBJECTS: 403}), [child("keda.sh/v1alpha1", "ScaledObject", "fraud-consumer")])
        prune(ListingApi({}, {SCALEDOBJECTS: 500, HPAS: 404}), [])
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert all("ScaledObject" in m and NS in m for m in messages)
    assert "403" in messages[0] and "500" in messages[1]


def test_network_policies_are_opt_in_like_scaled_objects(caplog: pytest.LogCaptureFixture) -> None:
    # The chart grants networkpolicies only with networkPolicy.enabled: without the option a 403 is expected.
    with caplog.at_level(logging.WARNING, logger="kinfer_operator.k8s.children"):
        pruned, _ = prune(ListingApi({CONFIGMAPS: [owned("fraud-old")]}, {NETWORKPOLICIES: 403}), [])
    assert not caplog.records and pruned == {"ConfigMap/fraud-old": "deleted"}
    wanted = [child("networking.k8s.io/v1", "NetworkPolicy", "fraud-consumer")]
    with caplog.at_level(logging.WARNING, logger="kinfer_operator.k8s.children"):
        prune(ListingApi({}, {NETWORKPOLICIES: 403}), wanted)
    (message,) = [r.getMessage() for r in caplog.records]
    assert "NetworkPolicy" in message and "403" in message
    api = ListingApi({NETWORKPOLICIES: [owned("fraud-consumer"), owned("fraud-tfserving")]}, {})
    assert prune(api, wanted)[0] == {"NetworkPolicy/fraud-tfserving": "deleted"}
