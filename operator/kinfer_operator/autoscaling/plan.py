"""The autoscaler's part of the one reconcile (the hook in ``kinfer_operator.hooks``): children, status, events.

``desired_autoscaler`` registers the pipeline with the running ``LagMonitor`` and hands the latest decision to
``plan_autoscaler``, which is pure: HPA/ScaledObject manifests, who owns the replica counts, the
``AutoscalingReady`` condition, ``status.autoscaling`` and Events on transitions (capped by partitions, stuck
partitions). kinfer never changes a topic's partitions to scale further; it says so.
"""

from __future__ import annotations

from typing import Any

from kinfer_operator.autoscaling.engine import Decision
from kinfer_operator.autoscaling.monitor import LagMonitor, TrackedPipeline
from kinfer_operator.autoscaling.scalers import desired_autoscaling_children
from kinfer_operator.autoscaling.service import current_monitor
from kinfer_operator.hooks import AutoscalerContext, AutoscalerPlan
from kinfer_operator.status.conditions import AUTOSCALING_READY, Condition
from kinfer_runtime.spec import AutoscalingProvider, InferencePipelineSpec


def desired_autoscaler(context: AutoscalerContext) -> AutoscalerPlan:
    pipeline = context.pipeline
    namespace, name = pipeline.metadata.namespace, pipeline.metadata.name
    monitor: LagMonitor | None = current_monitor()
    tracked = None
    if monitor is not None:
        if pipeline.spec.autoscaling.enabled:
            monitor.track(namespace, name, pipeline.spec)
            tracked = monitor.latest(namespace, name)
        else:
            monitor.forget(namespace, name)
    fresh = monitor is not None and tracked is not None and monitor.is_fresh(tracked)
    return plan_autoscaler(context, tracked, monitor is not None, fresh)


def plan_autoscaler(
    context: AutoscalerContext, tracked: TrackedPipeline | None, monitoring: bool, fresh: bool = True
) -> AutoscalerPlan:
    """``fresh``: the last successful poll is recent, so a failed poll since then is a blip, not an outage."""
    pipeline = context.pipeline
    spec, name = pipeline.spec, pipeline.metadata.name
    auto = spec.autoscaling
    if not auto.enabled:
        return AutoscalerPlan(
            manifests=[],
            condition=Condition(AUTOSCALING_READY, "True", "Disabled", "fixed size: spec.consumer.replicas"),
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
            return Condition(AUTOSCALING_READY, "True", "Keda", "scaled by KEDA's ScaledObject")
        return Condition(AUTOSCALING_READY, "False", "MonitorNotRunning", "the operator runs without its lag monitor")
    if error is not None:
        return Condition(AUTOSCALING_READY, "False", "LagUnavailable", f"cannot read consumer lag: {error}")
    if decision is None:
        # True: the HPA is in place and keeps the current size until the first poll (seconds away) serves a value
        return Condition(AUTOSCALING_READY, "True", "WaitingForLag", "the first lag poll has not finished yet")
    if decision.held_by_serving:
        return Condition(
            AUTOSCALING_READY,
            "True",
            "ScaleOutHeld",
            f"TF Serving is not Ready: consumers held at {decision.current_replicas} "
            f"(lag asks for {decision.recommended_replicas})",
        )
    if decision.capped_by_partitions:
        return Condition(AUTOSCALING_READY, "True", "CappedByPartitions", capped_message(spec, decision))
    if decision.stuck_partitions:
        return Condition(AUTOSCALING_READY, "True", "StuckPartitions", stuck_message(decision))
    return Condition(
        AUTOSCALING_READY,
        "True",
        "Scaling",
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
