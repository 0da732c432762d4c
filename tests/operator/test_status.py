"""Status document and patch: identical input gives an empty patch (no idle writes)."""

from __future__ import annotations

from typing import Any

from kinfer_operator.conditions import Condition, overall_conditions
from kinfer_operator.kube import contains, needs_write
from kinfer_operator.status import Observed, build_status, status_patch
from tests.operator.pipelines import pipeline

PARTS = [Condition(t, "True", "Ok", "") for t in ("TopicsReady", "ConsumersReady", "ServingReady", "AutoscalingReady")]


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
