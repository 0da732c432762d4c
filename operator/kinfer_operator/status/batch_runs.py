"""The ``status.batch`` entry of each batch run, from its Job, the Job's pods and its progress commits (pure).

- phase: Succeeded or Failed from the Job's conditions (Complete, Failed); Running while a pod is active;
  Pending before (no Job yet, a Job being replaced, a pod not scheduled or its image not pulled: ``message`` says
  which).
- done / total: a topicRange run's progress commits; the last value is kept while Kafka cannot be read.
- records, scored, failed, modelVersions: the counts ``kinfer score --summary-file`` wrote to the succeeded pod's
  termination message.
- message of a failed run: the Job's reason and the last pod's termination message (its last log lines when it
  crashed), so ``kubectl get -o yaml`` says why without a search for the pod.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kinfer_operator.builders.manifests import spec_hash_of

MESSAGE_CHARS = 600


@dataclass(frozen=True)
class RunObserved:
    """What a pass read about one run."""

    name: str
    job_name: str
    desired_hash: str | None
    job: dict[str, Any] | None
    pods: list[dict[str, Any]]
    progress: tuple[int, int] | None = None
    apply_error: str | None = None


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return None


def _waiting(pods: list[dict[str, Any]]) -> str | None:
    """Why the newest pod is not running yet: a container's waiting reason, or the scheduler's."""
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True):
        status = pod.get("status") or {}
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                return f"{waiting['reason']}: {waiting.get('message', '')}".strip(": ")
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return f"{condition.get('reason')}: {condition.get('message', '')}".strip(": ")
        return None
    return None


def _summary(pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The counts of the pod that succeeded (its termination message), or {} when it wrote none."""
    for pod in pods:
        terminated = _terminated(pod)
        if terminated and terminated.get("exitCode") == 0 and terminated.get("message"):
            try:
                summary = json.loads(terminated["message"])
            except ValueError:
                return {}
            return summary if isinstance(summary, dict) else {}
    return {}


def _last_failure(pods: list[dict[str, Any]]) -> str | None:
    failed: list[tuple[str, dict[str, Any]]] = []
    for pod in pods:
        terminated = _terminated(pod)
        if terminated and terminated.get("exitCode"):
            failed.append((pod["metadata"].get("creationTimestamp") or "", terminated))
    if not failed:
        return None
    terminated = max(failed, key=lambda item: item[0])[1]
    text = (terminated.get("message") or terminated.get("reason") or "").strip()
    return f"exit code {terminated.get('exitCode')}: {text[-MESSAGE_CHARS:]}"


def run_status(observed: RunObserved, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The status entry of one run."""
    previous = previous or {}
    entry: dict[str, Any] = {"name": observed.name, "job": observed.job_name, "phase": "Pending"}
    job = observed.job
    if observed.apply_error:
        entry["message"] = observed.apply_error
        return entry
    if job is None or spec_hash_of(job) != observed.desired_hash:
        entry["message"] = "the Job is being created" if job is None else "the Job of the entry's old version is going"
        return entry
    status = job.get("status") or {}
    for key, field in (("startTime", "startTime"), ("completionTime", "completionTime")):
        if status.get(key):
            entry[field] = status[key]
    progress = observed.progress
    if progress is None and previous.get("total") is not None and previous.get("job") == observed.job_name:
        progress = (previous.get("done", 0), previous["total"])
    if progress is not None:
        entry["done"], entry["total"] = progress
    if (complete := _condition(job, "Complete")) is not None or _condition(job, "SuccessCriteriaMet"):
        entry["phase"] = "Succeeded"
        summary = _summary(observed.pods)
        for key in ("records", "scored", "failed", "modelVersions"):
            if key in summary:
                entry[key] = summary[key]
        if complete is not None and complete.get("lastTransitionTime") and "completionTime" not in entry:
            entry["completionTime"] = complete["lastTransitionTime"]
        return entry
    if (failed := _condition(job, "Failed")) is not None:
        entry["phase"] = "Failed"
        reason = f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".strip(": ")
        last = _last_failure(observed.pods)
        entry["message"] = f"{reason}; last pod: {last}" if last else reason
        return entry
    if status.get("active"):
        entry["phase"] = "Running"
        if (last := _last_failure(observed.pods)) is not None:
            entry["message"] = f"retrying after a pod failed ({last})"
        if (why := _waiting(observed.pods)) is not None:
            entry["phase"], entry["message"] = "Pending", why
        return entry
    entry["message"] = _waiting(observed.pods) or "waiting for the Job's pod"
    return entry
