"""Condition logic: part conditions from Deployments, Ready/Degraded derivation, transition times, Events."""

from __future__ import annotations

from kinfer_operator.status import conditions as c
from kinfer_operator.status.conditions import (
    Condition,
    deployment_state,
    merge_conditions,
    overall_conditions,
    with_model_claim,
)
from kinfer_operator.status.document import condition_events
from kinfer_operator.status.reasons import ConditionType, Reason


def _deployment(replicas: int, available: int, updated: int, generation: int = 2, observed: int = 2) -> dict:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {"availableReplicas": available, "updatedReplicas": updated, "observedGeneration": observed},
    }


def test_workload_condition_cases() -> None:
    kind = ConditionType.CONSUMERS_READY
    assert c.workload_condition(kind, "d", deployment_state(None)).reason == "Creating"
    assert c.workload_condition(kind, "d", deployment_state(_deployment(2, 2, 2))).is_true
    rolling = c.workload_condition(kind, "d", deployment_state(_deployment(2, 2, 1)))
    assert (rolling.status, rolling.reason) == ("False", "RollingOut")
    stale = c.workload_condition(kind, "d", deployment_state(_deployment(2, 2, 2, generation=3, observed=2)))
    assert stale.reason == "RollingOut"
    unavailable = c.workload_condition(kind, "d", deployment_state(_deployment(3, 1, 3)))
    assert unavailable.reason == "ReplicasUnavailable" and "1/3" in unavailable.message
    zero = c.workload_condition(kind, "d", deployment_state(_deployment(0, 0, 0)))
    assert (zero.status, zero.reason) == ("True", "ScaledToZero")


def _parts(**failing: str) -> list[Condition]:
    parts = []
    for kind in (
        ConditionType.TOPICS_READY,
        ConditionType.CONSUMERS_READY,
        ConditionType.SERVING_READY,
        ConditionType.AUTOSCALING_READY,
    ):
        reason = failing.get(kind)
        parts.append(
            Condition(kind, "False", Reason(reason), f"{kind} broken")
            if reason
            else Condition(kind, "True", Reason.AVAILABLE, "")
        )
    return parts


def test_ready_and_degraded() -> None:
    all_ok = {str(x.type): x for x in overall_conditions(_parts(), was_ready=False)}
    assert all_ok["Ready"].is_true and not all_ok["Degraded"].is_true
    starting = {str(x.type): x for x in overall_conditions(_parts(ConsumersReady="RollingOut"), was_ready=False)}
    assert starting["Ready"].reason == "RollingOut" and "ConsumersReady" in starting["Ready"].message
    assert not starting["Degraded"].is_true  # still starting is not degraded
    broken = {str(x.type): x for x in overall_conditions(_parts(ServingReady="ReplicasUnavailable"), was_ready=True)}
    assert broken["Degraded"].is_true and broken["Degraded"].reason == "ReplicasUnavailable"
    refused = {str(x.type): x for x in overall_conditions(_parts(TopicsReady="NotSupported"), was_ready=False)}
    assert refused["Degraded"].reason == "NotSupported" and refused["Ready"].reason == "NotSupported"
    assert [x.type for x in overall_conditions(_parts(), False)] == list(c.CONDITION_ORDER)


def test_invalid_spec_conditions() -> None:
    result = {str(x.type): x for x in c.invalid_spec_conditions(["spec.model.uri: bad", "Secret 'x' missing"])}
    assert result["Ready"].reason == "InvalidSpec" and "Secret 'x' missing" in result["Ready"].message
    assert result["TopicsReady"].status == "Unknown"


def test_transition_time_moves_only_on_status_change() -> None:
    first = merge_conditions([], [Condition(ConditionType.READY, "False", Reason.ROLLING_OUT, "1/2")], 1, "T1")
    same_status = merge_conditions(
        first, [Condition(ConditionType.READY, "False", Reason.REPLICAS_UNAVAILABLE, "0/2")], 2, "T2"
    )
    assert same_status[0]["lastTransitionTime"] == "T1" and same_status[0]["observedGeneration"] == 2
    flipped = merge_conditions(same_status, [Condition(ConditionType.READY, "True", Reason.RECONCILED, "")], 2, "T3")
    assert flipped[0]["lastTransitionTime"] == "T3"
    assert (
        merge_conditions(flipped, [Condition(ConditionType.READY, "True", Reason.RECONCILED, "")], 2, "T4") == flipped
    )


def test_events_on_transitions_only() -> None:
    ready = overall_conditions(_parts(), was_ready=False)
    events = condition_events([], ready)
    assert [(e.type, e.reason) for e in events] == [("Normal", "Ready")]
    previous = merge_conditions([], ready, 1, "T")
    assert condition_events(previous, ready) == []  # nothing changed, nothing posted
    refused = overall_conditions(_parts(TopicsReady="NotSupported"), was_ready=True)
    reasons = {(e.type, e.reason) for e in condition_events(previous, refused)}
    assert ("Warning", "NotSupported") in reasons
    invalid = c.invalid_spec_conditions(["bad"])
    assert ("Warning", "InvalidSpec") in {(e.type, e.reason) for e in condition_events([], invalid)}
    assert condition_events(merge_conditions([], invalid, 1, "T"), invalid) == []


def test_missing_model_claim_explains_a_workload_that_is_not_available() -> None:
    waiting = Condition(ConditionType.CONSUMERS_READY, "False", Reason.REPLICAS_UNAVAILABLE, "0/1 replicas available")
    missing = with_model_claim(waiting, "models", "risk")
    assert (missing.type, missing.status, missing.reason) == ("ConsumersReady", "False", "ModelClaimMissing")
    assert "PersistentVolumeClaim models" in missing.message and "namespace risk" in missing.message
    assert with_model_claim(waiting, None, "risk") is waiting  # the claim exists, or the model is not on one
    available = Condition(ConditionType.CONSUMERS_READY, "True", Reason.AVAILABLE, "1/1 replicas available")
    assert with_model_claim(available, "models", "risk") is available  # its pods started while the claim was there
