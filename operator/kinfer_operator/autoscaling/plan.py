"""The autoscaler's part of the one reconcile (pure): children, replica ownership, status and Events.

The reconcile asks the running ``LagMonitor`` for its latest view of the pipeline
(:meth:`kinfer_operator.autoscaling.monitor.LagMonitor.observe`) and hands it to ``plan_autoscaler``: HPA or
ScaledObject manifests, who owns the replica counts, the ``AutoscalingReady`` condition,
``status.autoscaling`` and Events on transitions (capped by partitions, stuck partitions). kinfer never changes
a topic's partitions to scale further; it says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from kinfer_operator.autoscaling.engine import Decision
from kinfer_operator.autoscaling.scalers import desired_autoscaling_children
from kinfer_operator.status.conditions import Condition
from kinfer_operator.status.reasons import ConditionType, Reason
from kinfer_runtime.spec import AutoscalingProvider, InferencePipeline, InferencePipelineSpec


@dataclass(frozen=True)
class AutoscalerContext:
    """What the reconcile knows when it asks for the autoscaler's children."""

    pipeline: InferencePipeline
    uid: str
    partitions: int | None  # partitions of the input topic (None while topics are not ready)
    consumer_replicas: int | None  # live consumer Deployment's spec.replicas (None before it exists)
    consumer_ready_replicas: int
    serving_ready: bool  # TF Serving Ready (always True in embedded mode)
    status: dict[str, Any]  # the pipeline's current status (A's own ``status.autoscaling`` is in it)


@dataclass(frozen=True)
class AutoscalerPlan:
    """What the autoscaler wants.

    ``consumer_replicas``: None = the operator leaves the consumer Deployment's replicas alone (an HPA or KEDA
    owns them); an int = the operator sets it (fixed size, or 0 when scaled to zero).
    ``tfserving_replicas``: the same for the TF Serving Deployment.
    ``status``: merged into ``status.autoscaling``; ``lag``: total lag for ``status.lag`` (None = unknown).
    """

    manifests: list[dict[str, Any]]
    condition: Condition
    consumer_replicas: int | None
    tfserving_replicas: int | None = None
    status: dict[str, Any] = field(default_factory=dict)
    lag: int | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type Normal|Warning, reason, message)


class LagView(Protocol):
    """What the lag monitor knows of a pipeline (``TrackedPipeline``)."""

    decision: Decision | None
    error: str | None


def plan_autoscaler(
    context: AutoscalerContext, tracked: LagView | None, monitoring: bool, fresh: bool = True
) -> AutoscalerPlan:
    """``fresh``: the last successful poll is recent, so a failed poll since then is a blip, not an outage."""
    pipeline = context.pipeline
    spec, name = pipeline.spec, pipeline.metadata.name
    auto = spec.autoscaling
    if not auto.enabled:
        return AutoscalerPlan(
            manifests=[],
            condition=Condition(
                ConditionType.AUTOSCALING_READY, "True", Reason.DISABLED, "fixed size: spec.consumer.replicas"
            ),
            consumer_replicas=spec.consumer.replicas,
            tfserving_replicas=spec.serving.tfserving.replicas,
        )
    manifests = desired_autoscaling_children(name, spec)
    serving_hpa = any(m["metadata"]["name"].endswith("-tfserving") for m in manifests)
    tfserving_replicas = None if serving_hpa else spec.serving.tfserving.replicas
    decision = tracked.decision if tracked is not None else None
    previous = (context.status or {}).get("autoscaling") or {}
    error = tracked.error if tracked is not None and not (fresh and decision is not None) else None
    condition = autoscaling_condition(spec, decision, error, monitoring)
    status = autoscaling_status(spec, decision, context.consumer_replicas) if decision is not None else {}
    return AutoscalerPlan(
        manifests=manifests,
        condition=condition,
        consumer_replicas=None,  # the HPA (or KEDA) owns it; the monitor sets 0 and back for scale to zero
        tfserving_replicas=tfserving_replicas,
        status=status,
        lag=decision.total_lag if decision is not None else None,
        events=autoscaling_events(spec, decision, previous),
    )


def capped_message(spec: InferencePipelineSpec, decision: Decision) -> str:
    return (
        f"lag {decision.scaling_lag} needs {decision.uncapped_replicas} consumers but topic "
        f"{spec.topics.input.name} has {decision.partitions} partitions"
        + (f" ({decision.partitions_with_lag} with lag)" if spec.autoscaling.limit_to_partitions_with_lag else "")
        + ": add partitions to scale further (kinfer never changes partitions by itself)"
    )


def autoscaling_condition(
    spec: InferencePipelineSpec, decision: Decision | None, error: str | None, monitoring: bool
) -> Condition:
    provider = spec.autoscaling.provider
    if not monitoring:
        if provider is AutoscalingProvider.KEDA:
            return Condition(ConditionType.AUTOSCALING_READY, "True", Reason.KEDA, "scaled by KEDA's ScaledObject")
        return Condition(
            ConditionType.AUTOSCALING_READY,
            "False",
            Reason.MONITOR_NOT_RUNNING,
            "the operator runs without its lag monitor",
        )
    if error is not None:
        return Condition(
            ConditionType.AUTOSCALING_READY, "False", Reason.LAG_UNAVAILABLE, f"cannot read consumer lag: {error}"
        )
    if decision is None:
        # True: the HPA is in place and keeps the current size until the first poll (seconds away) serves a value
        return Condition(
            ConditionType.AUTOSCALING_READY, "True", Reason.WAITING_FOR_LAG, "the first lag poll has not finished yet"
        )
    if decision.held_by_serving:
        return Condition(
            ConditionType.AUTOSCALING_READY,
            "True",
            Reason.SCALE_OUT_HELD,
            f"TF Serving is not Ready: consumers held at {decision.current_replicas} "
            f"(lag asks for {decision.recommended_replicas})",
        )
    if decision.capped_by_partitions:
        return Condition(
            ConditionType.AUTOSCALING_READY, "True", Reason.CAPPED_BY_PARTITIONS, capped_message(spec, decision)
        )
    if decision.stuck_partitions:
        return Condition(ConditionType.AUTOSCALING_READY, "True", Reason.STUCK_PARTITIONS, stuck_message(decision))
    return Condition(
        ConditionType.AUTOSCALING_READY,
        "True",
        Reason.SCALING,
        f"lag {decision.total_lag}, {decision.desired_replicas} consumers desired ({provider.value})",
    )


def stuck_message(decision: Decision) -> str:
    listed = ", ".join(str(p) for p in decision.stuck_partitions)
    return (
        f"partitions {listed} of {decision.topic} have lag but no committed progress: excluded from scale-out; "
        "look for a poison record or a wedged consumer"
    )


def autoscaling_status(spec: InferencePipelineSpec, decision: Decision, current_replicas: int | None) -> dict[str, Any]:
    """``status.autoscaling``: only values that stand still while the pipeline is idle (no timestamps)."""
    return {
        "provider": spec.autoscaling.provider.value,
        "totalLag": decision.total_lag,
        "topPartitions": [{"partition": p, "lag": lag} for p, lag in decision.top_partitions],
        "stuckPartitions": list(decision.stuck_partitions),
        "desiredReplicas": decision.desired_replicas,
        "currentReplicas": current_replicas if current_replicas is not None else decision.current_replicas,
        "partitions": decision.partitions,
        "cappedByPartitions": decision.capped_by_partitions,
        "scaleOutHeld": decision.held_by_serving,
        "drainSeconds": None if decision.drain_seconds is None else round(decision.drain_seconds),
        "perReplicaRecordsPerSecond": None if decision.per_replica_rate is None else round(decision.per_replica_rate),
    }


def autoscaling_events(
    spec: InferencePipelineSpec, decision: Decision | None, previous: dict[str, Any]
) -> list[tuple[str, str, str]]:
    """Events for transitions only (the previous status tells what was already reported)."""
    if decision is None:
        return []
    events = []
    if decision.capped_by_partitions and not previous.get("cappedByPartitions"):
        events.append(("Warning", "CappedByPartitions", capped_message(spec, decision)))
    if decision.stuck_partitions and list(decision.stuck_partitions) != previous.get("stuckPartitions"):
        events.append(("Warning", "StuckPartitions", stuck_message(decision)))
    if decision.held_by_serving and not previous.get("scaleOutHeld"):
        events.append(("Normal", "ScaleOutHeld", "TF Serving is not Ready: consumer scale-out held"))
    return events
