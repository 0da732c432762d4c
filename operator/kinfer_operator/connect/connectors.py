"""Pure logic of the Kafka Connect sources (``spec.ingestion.connectors``): names, configs, plans and status.

Nothing here talks to Connect or Kubernetes. Connector names in a Connect cluster are
``kinfer.<namespace>.<pipeline>.<name>``: dots cannot appear in Kubernetes names, so the prefix says
unambiguously which pipeline owns a connector, and a connector dropped from the spec can be found and deleted
without touching anyone else's. A failed connector or task is restarted with exponential backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kinfer_operator.status.conditions import Condition
from kinfer_operator.status.reasons import ConditionType, Reason
from kinfer_runtime.spec import ConnectorSpec, InferencePipeline

RUNNING, FAILED = "RUNNING", "FAILED"
TRACE_SUMMARY_CHARS = 300


def name_prefix(pipeline: InferencePipeline) -> str:
    return f"kinfer.{pipeline.metadata.namespace}.{pipeline.metadata.name}."


def connect_name(pipeline: InferencePipeline, connector: ConnectorSpec) -> str:
    return name_prefix(pipeline) + connector.name


def connector_config(pipeline: InferencePipeline, connector: ConnectorSpec) -> dict[str, str]:
    """The config Connect gets: the user's, plus class, tasks and (unless given) the target topic."""
    config = dict(connector.config)
    config["connector.class"] = connector.connector_class
    config["tasks.max"] = str(connector.tasks_max)
    if connector.topic_config_key and connector.topic_config_key not in config:
        config[connector.topic_config_key] = pipeline.spec.topics.input.name
    return config


def desired_configs(pipeline: InferencePipeline) -> dict[str, dict[str, str]]:
    return {connect_name(pipeline, c): connector_config(pipeline, c) for c in pipeline.spec.ingestion.connectors}


@dataclass(frozen=True)
class ConnectorChanges:
    create: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.create or self.update or self.delete)


def plan_changes(desired: dict[str, dict[str, str]], live: dict[str, dict[str, str]], prefix: str) -> ConnectorChanges:
    """What to PUT or DELETE. ``live`` maps connector names to their configs (Connect adds ``name`` to each)."""
    ours = {name: config for name, config in live.items() if name.startswith(prefix)}
    create = sorted(set(desired) - set(ours))
    update = sorted(n for n in set(desired) & set(ours) if _without_name(ours[n]) != _without_name(desired[n]))
    return ConnectorChanges(create, update, sorted(set(ours) - set(desired)))


def _without_name(config: dict[str, str]) -> dict[str, str]:
    return {k: str(v) for k, v in config.items() if k != "name"}


def trace_summary(trace: str | None) -> str:
    """A Java stack trace cut to what a person reads first: the exception line and the root cause."""
    if not trace:
        return "no trace reported"
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    causes = [line for line in lines if line.startswith("Caused by:")]
    summary = lines[0] if not causes else f"{lines[0]} | {causes[-1]}"
    return summary if len(summary) <= TRACE_SUMMARY_CHARS else summary[: TRACE_SUMMARY_CHARS - 3] + "..."


@dataclass(frozen=True)
class ConnectorHealth:
    """One connector's state from a Connect status document (REST, or a Strimzi KafkaConnector's status)."""

    name: str
    state: str  # RUNNING, FAILED, PAUSED, STOPPED, UNASSIGNED, RESTARTING, or MISSING (no status yet)
    tasks_total: int
    tasks_running: int
    failures: list[str]  # "connector: …" / "task 0: …" with the trace summary

    @property
    def running(self) -> bool:
        return self.state == RUNNING and self.tasks_total > 0 and self.tasks_running == self.tasks_total

    @property
    def failed(self) -> bool:
        return bool(self.failures)


def health_from_status(name: str, status: dict[str, Any] | None) -> ConnectorHealth:
    if not status:
        return ConnectorHealth(name, "MISSING", 0, 0, [])
    connector = status.get("connector") or {}
    state = str(connector.get("state", "MISSING"))
    failures = [f"connector: {trace_summary(connector.get('trace'))}"] if state == FAILED else []
    tasks = status.get("tasks") or []
    for task in tasks:
        if task.get("state") == FAILED:
            failures.append(f"task {task.get('id')}: {trace_summary(task.get('trace'))}")
    running = sum(1 for task in tasks if task.get("state") == RUNNING)
    return ConnectorHealth(name, state, len(tasks), running, failures)


class RestartBackoff:
    """When a failed connector may be restarted again: at once, then after ``base_s``, doubling up to ``max_s``.

    A restarted task often runs for a moment and fails again, so the backoff is forgotten only once the
    connector has kept running for ``stable_s`` after its last restart. Kept in the operator's memory: after an
    operator restart the next restart is immediate, which is fine.
    """

    def __init__(
        self,
        base_s: float = 10.0,
        max_s: float = 600.0,
        stable_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_s, self.max_s, self.stable_s, self.clock = base_s, max_s, stable_s, clock
        self.restarts: dict[str, int] = {}
        self.last_restart: dict[str, float] = {}
        self.not_before: dict[str, float] = {}

    def due(self, key: str) -> bool:
        return self.clock() >= self.not_before.get(key, 0.0)

    def record(self, key: str) -> float:
        """Counts a restart; returns the wait before the next one may happen."""
        count = self.restarts.get(key, 0)
        self.restarts[key] = count + 1
        delay = min(self.max_s, self.base_s * 2**count)
        now = self.clock()
        self.last_restart[key] = now
        self.not_before[key] = now + delay
        return delay

    def wait_s(self, key: str) -> float:
        return max(0.0, self.not_before.get(key, 0.0) - self.clock())

    def running(self, key: str) -> None:
        """The connector runs: forget its failures once it has run long enough since the last restart."""
        if self.clock() - self.last_restart.get(key, float("-inf")) >= self.stable_s:
            self.forget(key)

    def forget(self, key: str) -> None:
        self.restarts.pop(key, None)
        self.last_restart.pop(key, None)
        self.not_before.pop(key, None)


def short_name(name: str) -> str:
    """The spec's connector name from a ``kinfer.<ns>.<pipeline>.<name>`` Connect name."""
    return name.rsplit(".", 1)[-1]


def connectors_condition(
    healths: list[ConnectorHealth], problems: list[str], restarts: dict[str, tuple[int, float]] | None = None
) -> Condition:
    """``ConnectorsReady``: True when every connector and task runs; otherwise what is wrong, worst first.

    ``problems`` are errors met while talking to Connect; ``restarts`` maps names to (restarts so far, seconds
    until the next one may happen), so the message says what the operator is doing about a failure.
    """
    restarts = restarts or {}
    if problems:
        return Condition(ConditionType.CONNECTORS_READY, "False", Reason.CONNECT_ERROR, "; ".join(problems))
    failed = [h for h in healths if h.failed]
    if failed:
        parts = []
        for health in failed:
            count, wait = restarts.get(health.name, (0, 0.0))
            note = f" (restarted {count}x, next restart in {wait:.0f}s)" if count else ""
            parts.append(f"{short_name(health.name)}: {'; '.join(health.failures)}{note}")
        return Condition(ConditionType.CONNECTORS_READY, "False", Reason.CONNECTOR_FAILED, " | ".join(parts))
    waiting = [h for h in healths if not h.running]
    if waiting:
        states = ", ".join(f"{short_name(h.name)} {h.state} ({h.tasks_running}/{h.tasks_total} tasks)" for h in waiting)
        return Condition(
            ConditionType.CONNECTORS_READY, "False", Reason.CONNECTORS_STARTING, f"not running yet: {states}"
        )
    if not healths:
        return Condition(
            ConditionType.CONNECTORS_READY, "True", Reason.NO_CONNECTORS, "no connectors in spec.ingestion"
        )
    running = ", ".join(f"{short_name(h.name)} ({h.tasks_total} tasks)" for h in healths)
    return Condition(ConditionType.CONNECTORS_READY, "True", Reason.CONNECTORS_RUNNING, f"running: {running}")
