"""Status document and patch, and the drift check of children: identical input gives no write (no idle writes)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from kinfer_operator.k8s.client import contains, needs_write, same_quantity
from kinfer_operator.status.conditions import Condition, overall_conditions
from kinfer_operator.status.document import Observed, build_status, status_patch
from kinfer_operator.status.reasons import ConditionType, Reason
from tests.operator.pipelines import pipeline

PARTS = [
    Condition(t, "True", Reason.AVAILABLE, "")
    for t in (
        ConditionType.TOPICS_READY,
        ConditionType.CONSUMERS_READY,
        ConditionType.SERVING_READY,
        ConditionType.AUTOSCALING_READY,
    )
]


def _observed(**changes: Any) -> Observed:
    values: dict[str, Any] = dict(
        generation=3,
        conditions=overall_conditions(PARTS, False),
        replicas=2,
        ready_replicas=2,
        partitions={"transactions": 6, "transactions-scored": 6},
        input_topic="transactions",
    )
    values.update(changes)
    return Observed(**values)


def test_status_fields() -> None:
    status = build_status({}, _observed(), pipeline(), "fraud", "T")
    assert status["observedGeneration"] == 3 and status["partitions"] == 6 and status["replicas"] == 2
    assert status["labelSelector"] == "kinfer.io/pipeline=fraud,app.kubernetes.io/component=consumer"
    assert status["modelVersion"] == "Latest"
    pinned = pipeline(model={"versionPolicy": "Pinned", "version": 4})
    assert build_status({}, _observed(), pinned, "fraud", "T")["modelVersion"] == "4"


def test_a_rollout_is_shown_while_it_is_in_the_spec() -> None:
    trying = pipeline(model={"versionPolicy": "Pinned", "version": 1,
                             "rollout": {"candidateVersion": 2, "mode": "Canary", "share": 0.1}})  # fmt: skip
    status = build_status({}, _observed(), trying, "fraud", "T1")
    assert status["rollout"] == {"summary": "Canary 2 at 10%, live 1", "liveVersion": 1, "candidateVersion": 2,
                                 "mode": "Canary", "share": 0.1}  # fmt: skip
    promoted = build_status(
        status, _observed(), pipeline(model={"versionPolicy": "Pinned", "version": 2}), "fraud", "T2"
    )
    assert "rollout" not in promoted and promoted["modelVersion"] == "2"
    assert status_patch(status, promoted)["rollout"] is None  # removed from the live object, not left stale


def test_the_committed_counts_give_records_per_version_and_where_the_candidate_is_loaded() -> None:
    trying = pipeline(model={"versionPolicy": "Pinned", "version": 1,
                             "rollout": {"candidateVersion": 2, "mode": "Shadow", "share": 1.0}})  # fmt: skip
    committed = {
        0: "kinfer-scored v1=100 v2=100 loaded=1,2",
        1: "kinfer-scored v1=40 v2=38 loaded=1,2",
        2: "kinfer-scored v1=7 loaded=1",  # its consumer could not load the candidate
        3: "kinfer-batch start=0 end=9",  # not the runtime's: left out
    }
    status = build_status({}, _observed(committed_metadata=committed), trying, "fraud", "T1")
    assert status["scoredByVersion"] == {"1": 147, "2": 138}
    assert status["rollout"]["candidateLoadedPartitions"] == 2 and status["rollout"]["reportingPartitions"] == 3
    unknown = build_status(status, _observed(committed_metadata=None), trying, "fraud", "T2")
    assert unknown["scoredByVersion"] == {"1": 147, "2": 138}, "a failed poll keeps the last counts"
    assert "candidateLoadedPartitions" not in unknown["rollout"]


def test_idle_pass_gives_empty_patch() -> None:
    first = build_status({}, _observed(), pipeline(), "fraud", "T1")
    assert status_patch({}, first) == first
    second = build_status(first, _observed(), pipeline(), "fraud", "T2")
    assert status_patch(first, second) == {}
    scaled = build_status(first, _observed(replicas=3), pipeline(), "fraud", "T3")
    assert status_patch(first, scaled) == {"replicas": 3}


def test_unknown_values_keep_their_last_reading() -> None:
    first = build_status({}, _observed(lag=120), pipeline(), "fraud", "T1")
    without_lag = build_status(first, _observed(lag=None), pipeline(), "fraud", "T2")
    assert without_lag["lag"] == 120


def test_live_object_comparison_ignores_server_defaults() -> None:
    desired: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "labels": {"a": "1"}, "annotations": {"kinfer.io/spec-hash": "h"}},
        "spec": {"ports": [{"port": 80, "targetPort": "m"}]},
    }
    live: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "s",
            "uid": "u",
            "labels": {"a": "1", "x": "y"},
            "annotations": {"kinfer.io/spec-hash": "h"},
        },
        "spec": {"clusterIP": "10.0.0.3", "ports": [{"port": 80, "targetPort": "m", "protocol": "TCP"}]},
    }
    assert not needs_write(live, desired)
    live["spec"]["ports"][0]["targetPort"] = "other"  # edited by hand, hash unchanged
    assert needs_write(live, desired)
    assert needs_write(None, desired)
    other_hash = {**desired, "metadata": {**desired["metadata"], "annotations": {"kinfer.io/spec-hash": "h2"}}}
    assert needs_write(live, other_hash)
    assert contains({"a": 1.0}, {"a": 1}) and not contains({"a": [1, 2]}, {"a": [1]})


def test_empty_maps_match_absent_fields() -> None:
    # The API server drops `resources: {requests: {}, limits: {}}`; that must not look like drift.
    assert contains({"name": "c"}, {"name": "c", "resources": {"requests": {}, "limits": {}}})
    assert contains({"resources": {}}, {"resources": {"requests": {}}})
    assert not contains({"resources": {"limits": {"cpu": "1"}}}, {"resources": {"limits": {}}})
    assert contains({}, {"env": []}) and not contains({"env": [{"name": "x"}]}, {"env": []})


def test_resource_quantities_compare_by_value_as_the_api_server_stores_them() -> None:
    # The API server canonicalises quantities: "0.5" CPU comes back as "500m", "1024Mi" as "1Gi".
    desired = {"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"cpu": 2, "memory": "1G"}}}
    live = {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1G"}}}
    assert contains(live, desired)
    live["resources"]["limits"]["memory"] = "1Gi"  # 1G is 10^9 bytes, 1Gi 2^30: a real change
    assert not contains(live, desired)
    assert contains({"emptyDir": {"sizeLimit": "2Gi"}}, {"emptyDir": {"sizeLimit": "2048Mi"}})
    # Elsewhere text is text: a label "1000m" is not the label "1".
    assert not contains({"labels": {"size": "1"}}, {"labels": {"size": "1000m"}})


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", "0.5"), ("0.5", "0.5"), ("1Gi", "1073741824"), ("1G", "1000000000"), ("1e3", "1000"),
     ("1E", "1000000000000000000"), ("100n", "0.0000001"), ("1.5Ki", "1536"), ("+2k", "2000"), (".5", "0.5")],
)  # fmt: skip
def test_same_quantity_compares_values(text: str, value: str) -> None:
    assert same_quantity(text, value) and same_quantity(value, text)
    assert not same_quantity(text, str(Decimal(value) + 1))


@pytest.mark.parametrize("text", ["", "abc", "1x", "Gi", "1.2.3", "--1"])
def test_what_is_not_a_quantity_is_never_the_same_quantity(text: str) -> None:
    assert not same_quantity(text, "1")
