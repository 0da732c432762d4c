"""The pipeline's status document and the Events worth posting, computed from what a reconcile saw (pure).

``build_status`` returns the complete status; the reconcile compares it with the live one and patches only a
difference, so a reconcile that found everything in place writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kinfer_operator.builders import naming
from kinfer_operator.status.conditions import Condition, merge_conditions, transitions
from kinfer_operator.status.reasons import ConditionType, Reason
from kinfer_runtime.records.scored_counts import PartitionScored, parse, totals
from kinfer_runtime.spec import InferencePipeline, VersionPolicy
from kinfer_runtime.spec.status import STATUS_KEYS, PipelineStatus


@dataclass
class Observed:
    """What one reconcile pass learnt, the input of the status."""

    generation: int
    conditions: list[Condition]
    replicas: int | None = None
    ready_replicas: int | None = None
    partitions: dict[str, int] = field(default_factory=dict)
    input_topic: str | None = None
    lag: int | None = None
    serving_endpoint: str | None = None
    autoscaling: dict[str, Any] | None = None
    created_topics: list[str] | None = None  # None: not learnt this pass (the previous list is kept)
    batch: list[dict[str, Any]] | None = None  # None: the spec has no batch runs (the key is removed)
    # The input partitions' committed metadata (records scored per version); None: not learnt this pass
    committed_metadata: Mapping[int, str] | None = None


def scored_partitions(committed_metadata: Mapping[int, str] | None) -> list[PartitionScored] | None:
    """The partitions whose committed metadata is the runtime's counts (None: not known this pass)."""
    if committed_metadata is None:
        return None
    parsed = (parse(text) for text in committed_metadata.values())
    return [scored for scored in parsed if scored is not None]


def scored_by_version(partitions: list[PartitionScored] | None) -> dict[str, int] | None:
    if not partitions:
        return None
    return {str(version): count for version, count in sorted(totals(partitions).items())}


def model_version_text(pipeline: InferencePipeline | None) -> str | None:
    if pipeline is None:
        return None
    model = pipeline.spec.model
    return str(model.version) if model.version_policy is VersionPolicy.PINNED else "Latest"


def rollout_status(
    pipeline: InferencePipeline | None, partitions: list[PartitionScored] | None = None
) -> dict[str, Any] | None:
    """The rollout in force, or None (then the key is removed from the status). ``partitions``: what the input
    partitions' last commits say (None: not known this pass)."""
    model = pipeline.spec.model if pipeline is not None else None
    if model is None or model.rollout is None or model.version is None:
        return None
    rollout = model.rollout
    status: dict[str, Any] = {
        "summary": f"{rollout.mode.value} {rollout.candidate_version} at {rollout.share:.0%}, live {model.version}",
        "liveVersion": model.version,
        "candidateVersion": rollout.candidate_version,
        "mode": rollout.mode.value,
        "share": rollout.share,
    }
    reporting = [scored for scored in partitions or [] if scored.loaded]
    if reporting:
        status["reportingPartitions"] = len(reporting)
        status["candidateLoadedPartitions"] = sum(rollout.candidate_version in s.loaded for s in reporting)
    return status


def build_status(
    previous: dict[str, Any], observed: Observed, pipeline: InferencePipeline | None, name: str, now: str
) -> dict[str, Any]:
    """The full status. Fields the pass couldn't learn keep their previous value (e.g. lag while Kafka is down)."""
    scored = scored_partitions(observed.committed_metadata)
    status: dict[str, Any] = {
        "observedGeneration": observed.generation,
        "conditions": merge_conditions(previous.get("conditions") or [], observed.conditions, observed.generation, now),
        "labelSelector": naming.consumer_label_selector(name),
        "replicas": observed.replicas if observed.replicas is not None else previous.get("replicas", 0),
    }
    optional: dict[str, Any] = {
        "readyReplicas": observed.ready_replicas,
        "topics": observed.partitions or None,
        "partitions": observed.partitions.get(observed.input_topic) if observed.input_topic else None,
        "lag": observed.lag,
        "modelVersion": model_version_text(pipeline),
        "rollout": rollout_status(pipeline, scored),
        "servingEndpoint": observed.serving_endpoint,
        "autoscaling": observed.autoscaling,
        "createdTopics": observed.created_topics,
        "batch": observed.batch,
        "scoredByVersion": scored_by_version(scored),
    }
    for key, value in optional.items():
        if value is not None:
            status[key] = value
        elif key in previous and key not in ("servingEndpoint", "modelVersion", "rollout", "batch"):
            status[key] = previous[key]
    PipelineStatus.model_validate(status)  # the shape the CRD declares: a mistake here fails the pass, not the API
    return status


def status_patch(previous: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch from the previous status to the desired one ({} when equal)."""
    patch = {key: value for key, value in desired.items() if previous.get(key) != value}
    for key in previous:
        if key not in desired and key in STATUS_KEYS:
            patch[key] = None
    return patch


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


def condition_events(previous: list[dict[str, Any]], current: list[Condition]) -> list[Event]:
    """Events for the transitions that matter: Ready flipping, Degraded rising, refused or invalid specs."""
    events = []
    for condition, old_status in transitions(previous, current):
        if condition.type == ConditionType.READY:
            if condition.is_true:
                events.append(Event("Normal", "Ready", condition.message))
            elif condition.reason in (Reason.INVALID_SPEC, Reason.NOT_SUPPORTED) or old_status == "True":
                # Not while starting up (Creating → RollingOut …): only a refusal or the loss of Ready.
                events.append(Event("Warning", condition.reason, condition.message))
        elif (
            condition.type == ConditionType.DEGRADED
            and condition.is_true
            and condition.reason not in (Reason.NOT_SUPPORTED, Reason.INVALID_SPEC)
        ):
            events.append(Event("Warning", "Degraded", condition.message))
    return events
