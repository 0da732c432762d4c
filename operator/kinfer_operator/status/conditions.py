"""Status conditions of an InferencePipeline: what each part's state means, as pure functions.

Conditions follow the Kubernetes convention (type, status "True"/"False"/"Unknown", CamelCase reason, a
message a person can act on, lastTransitionTime, observedGeneration). ``Ready`` is derived from the parts;
``Degraded`` is True when something that used to work is impaired (not merely "still starting").
``merge_conditions`` keeps ``lastTransitionTime`` when the status did not change, so an idle reconcile
produces an identical status and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from kinfer_operator.status.reasons import ConditionType, Reason

CONDITION_ORDER = (
    ConditionType.READY,
    ConditionType.TOPICS_READY,
    ConditionType.CONSUMERS_READY,
    ConditionType.SERVING_READY,
    ConditionType.AUTOSCALING_READY,
    ConditionType.DEGRADED,
)


@dataclass(frozen=True)
class Condition:
    type: ConditionType
    status: Literal["True", "False", "Unknown"]
    reason: Reason
    message: str

    @property
    def is_true(self) -> bool:
        return self.status == "True"


@dataclass(frozen=True)
class DeploymentState:
    """The few fields of a Deployment's status that readiness depends on."""

    exists: bool
    desired: int  # spec.replicas
    available: int  # status.availableReplicas
    updated: int  # status.updatedReplicas
    observed_current: bool  # status.observedGeneration >= metadata.generation


def deployment_state(live: dict[str, Any] | None) -> DeploymentState:
    if live is None:
        return DeploymentState(False, 0, 0, 0, False)
    spec, status = live.get("spec") or {}, live.get("status") or {}
    generation = (live.get("metadata") or {}).get("generation") or 0
    return DeploymentState(
        exists=True,
        desired=int(spec["replicas"]) if spec.get("replicas") is not None else 1,
        available=int(status.get("availableReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        observed_current=int(status.get("observedGeneration") or 0) >= int(generation),
    )


def workload_condition(kind: ConditionType, name: str, state: DeploymentState) -> Condition:
    """ConsumersReady / ServingReady from the Deployment's rollout (available and updated replicas)."""
    if not state.exists:
        return Condition(kind, "False", Reason.CREATING, f"Deployment {name} does not exist yet")
    if state.desired == 0:
        return Condition(kind, "True", Reason.SCALED_TO_ZERO, f"Deployment {name} is scaled to zero")
    if not state.observed_current or state.updated < state.desired:
        return Condition(
            kind, "False", Reason.ROLLING_OUT, f"Deployment {name}: {state.updated}/{state.desired} replicas updated"
        )
    if state.available < state.desired:
        return Condition(
            kind,
            "False",
            Reason.REPLICAS_UNAVAILABLE,
            f"Deployment {name}: {state.available}/{state.desired} replicas available; check its pods' events",
        )
    return Condition(kind, "True", Reason.AVAILABLE, f"{state.available}/{state.desired} replicas available")


def with_model_claim(condition: Condition, claim: str | None, namespace: str) -> Condition:
    """ConsumersReady / ServingReady when the model's PersistentVolumeClaim ``claim`` does not exist (None: it
    exists, or the model is not on a claim). Pods that mount a missing claim stay Pending with nothing in the
    Deployment's status to say why, so the condition says it; a workload already available keeps its condition
    (its pods started while the claim was there)."""
    if claim is None or condition.is_true:
        return condition
    message = (
        f"PersistentVolumeClaim {claim} (from spec.model.uri) does not exist in namespace {namespace}: create it "
        "or point the uri at an existing claim; the pods wait for it"
    )
    return Condition(condition.type, "False", Reason.MODEL_CLAIM_MISSING, message)


def invalid_spec_conditions(problems: list[str]) -> list[Condition]:
    """Every condition when the spec can't work: nothing is created, the message lists what to fix."""
    message = "; ".join(problems)
    waiting = "not reconciled: the spec is invalid (see Ready)"
    return [
        Condition(ConditionType.READY, "False", Reason.INVALID_SPEC, message),
        Condition(ConditionType.TOPICS_READY, "Unknown", Reason.INVALID_SPEC, waiting),
        Condition(ConditionType.CONSUMERS_READY, "Unknown", Reason.INVALID_SPEC, waiting),
        Condition(ConditionType.SERVING_READY, "Unknown", Reason.INVALID_SPEC, waiting),
        Condition(ConditionType.AUTOSCALING_READY, "Unknown", Reason.INVALID_SPEC, waiting),
        Condition(ConditionType.DEGRADED, "False", Reason.INVALID_SPEC, waiting),
    ]


def overall_conditions(parts: list[Condition], was_ready: bool) -> list[Condition]:
    """Ready and Degraded from the part conditions, returned with the parts in a stable order.

    Ready is the first failing part's reason and message (so ``kubectl get`` tells what blocks it).
    Degraded is True when a part fails after the pipeline had been Ready, or on a refused change
    (NotSupported), which leaves the pipeline running on its old settings.
    """
    failing = [c for c in parts if not c.is_true]
    if failing:
        first = failing[0]
        ready = Condition(ConditionType.READY, "False", first.reason, f"{first.type}: {first.message}")
    else:
        ready = Condition(
            ConditionType.READY, "True", Reason.RECONCILED, "topics, consumers, serving and autoscaling are ready"
        )
    refused = [c for c in parts if c.reason == Reason.NOT_SUPPORTED]
    if refused:
        degraded = Condition(ConditionType.DEGRADED, "True", Reason.NOT_SUPPORTED, refused[0].message)
    elif failing and was_ready:
        degraded = Condition(
            ConditionType.DEGRADED, "True", failing[0].reason, f"{failing[0].type}: {failing[0].message}"
        )
    else:
        degraded = Condition(ConditionType.DEGRADED, "False", Reason.AS_EXPECTED, "no part is impaired")
    return order([ready, degraded, *parts])


def order(conditions: list[Condition]) -> list[Condition]:
    rank = {name: index for index, name in enumerate(CONDITION_ORDER)}
    return sorted(conditions, key=lambda c: rank.get(c.type, len(rank)))


def merge_conditions(
    previous: list[dict[str, Any]], current: list[Condition], generation: int, now: str
) -> list[dict[str, Any]]:
    """Conditions as status dicts; lastTransitionTime moves only when a condition's status changes."""
    before = {c.get("type"): c for c in previous or []}
    merged = []
    for condition in current:
        old = before.get(condition.type)
        changed = old is None or old.get("status") != condition.status
        merged.append(
            {
                "type": condition.type.value,
                "status": condition.status,
                "reason": condition.reason.value,
                "message": condition.message,
                "lastTransitionTime": now if changed else old.get("lastTransitionTime", now),  # type: ignore[union-attr]
                "observedGeneration": generation,
            }
        )
    return merged


def transitions(previous: list[dict[str, Any]], current: list[Condition]) -> list[tuple[Condition, str | None]]:
    """Conditions whose status or reason changed, with their previous status (None when new), for Events."""
    before = {c.get("type"): c for c in previous or []}
    changed = []
    for condition in current:
        old = before.get(condition.type)
        if old is None or old.get("status") != condition.status or old.get("reason") != condition.reason:
            changed.append((condition, old.get("status") if old else None))
    return changed


def was_ready(previous: list[dict[str, Any]]) -> bool:
    """True if the previous status said Ready, or Degraded (Degraded means it had been Ready)."""
    status = {c.get("type"): c.get("status") for c in previous or []}
    return status.get(ConditionType.READY) == "True" or status.get(ConditionType.DEGRADED) == "True"
