"""What to do to the pipeline's Kafka topics, decided from the spec, what the broker reports, and which topics
this pipeline created (pure). The rules, after Strimzi's topic operator minus its namespace-wedging finalizer:

* A ``mode: Create`` topic that does not exist is created, and **recorded as the pipeline's own**
  (``status.createdTopics``). Only the topics it created are the pipeline's: their partitions are increased, their
  configs aligned (set what the spec says, remove topic-level overrides it doesn't), they are re-created when
  deleted behind kinfer's back, and ``deletionPolicy: Delete`` deletes them. A partition decrease is refused with
  reason ``NotSupported`` because Kafka can't do it.
* A ``mode: Create`` topic that already existed (someone else's, or another pipeline's) is **used as it is**: its
  partitions and its other configs are never changed; kinfer sets only the configs the spec lists, and says so.
* ``mode: Adopt`` topics belong to someone else: never changed or deleted; one with fewer partitions than the
  spec asks makes the spec invalid (the pipeline can't get the parallelism it was sized for); a missing one is
  waited for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kinfer_runtime.spec import InferencePipelineSpec, TopicMode, TopicSpec


@dataclass(frozen=True)
class TopicState:
    """What the broker says about one topic (``configs``: topic-level overrides only, not broker defaults)."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass
class TopicPlan:
    create: list[TopicSpec] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)  # managed topics that existed before and are gone now
    increase: dict[str, int] = field(default_factory=dict)  # topic → new total partition count
    set_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    delete_configs: dict[str, list[str]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # NotSupported: asked for something Kafka can't do
    invalid: list[str] = field(default_factory=list)  # InvalidSpec: the spec can't work with these topics
    waiting: list[str] = field(default_factory=list)  # adopted topics that don't exist yet
    partitions: dict[str, int] = field(default_factory=dict)  # partitions once the plan is carried out
    owned: list[str] = field(default_factory=list)  # topics this pipeline created earlier and still names
    not_owned: list[str] = field(default_factory=list)  # Create-mode topics that existed before: used as they are
    conflicts: list[str] = field(default_factory=list)  # topics other pipelines ask other configs of (claims.py)

    def hold_configs(self, conflicts: dict[str, str]) -> None:
        """Change no config of these topics (``conflicts``: topic → what the pipelines disagree on)."""
        for topic, message in conflicts.items():
            self.set_configs.pop(topic, None)
            self.delete_configs.pop(topic, None)
            self.conflicts.append(message)

    @property
    def changes(self) -> bool:
        return bool(self.create or self.increase or self.set_configs or self.delete_configs)


def pipeline_topics(spec: InferencePipelineSpec) -> list[tuple[str, TopicSpec]]:
    return spec.topics.roles()


def plan_topics(spec: InferencePipelineSpec, observed: dict[str, TopicState], created: set[str]) -> TopicPlan:
    """The plan for every topic the spec names. ``created``: the topics this pipeline created (its
    ``status.createdTopics``)."""
    plan = TopicPlan()
    for role, topic in pipeline_topics(spec):
        state = observed.get(topic.name)
        if topic.mode is TopicMode.ADOPT:
            _plan_adopted(plan, role, topic, state)
        elif state is None:
            plan.create.append(topic)
            plan.partitions[topic.name] = topic.partitions
            if topic.name in created:
                plan.recreated.append(topic.name)
                plan.owned.append(topic.name)
        elif topic.name in created:
            plan.owned.append(topic.name)
            _plan_owned(plan, role, topic, state)
        else:
            plan.not_owned.append(topic.name)
            _plan_not_owned(plan, topic, state)
    return plan


def _plan_adopted(plan: TopicPlan, role: str, topic: TopicSpec, state: TopicState | None) -> None:
    if state is None:
        plan.waiting.append(
            f"topics.{role}: adopted topic {topic.name!r} does not exist; create it, or set mode Create"
        )
        return
    plan.partitions[topic.name] = state.partitions
    if state.partitions < topic.partitions:
        plan.invalid.append(
            f"topics.{role}: adopted topic {topic.name!r} has {state.partitions} partitions, fewer than the "
            f"{topic.partitions} asked; lower topics.{role}.partitions to {state.partitions} or add partitions "
            "to the topic"
        )


def _plan_owned(plan: TopicPlan, role: str, topic: TopicSpec, state: TopicState) -> None:
    plan.partitions[topic.name] = max(state.partitions, topic.partitions)
    if topic.partitions > state.partitions:
        plan.increase[topic.name] = topic.partitions
    elif topic.partitions < state.partitions:
        plan.refused.append(
            f"topics.{role}: topic {topic.name!r} has {state.partitions} partitions; decreasing to "
            f"{topic.partitions} is not supported by Kafka. Set partitions to {state.partitions} or more "
            "(records are keyed to partitions, so a smaller topic needs a new topic name)"
        )
    if topic.replication_factor != state.replication_factor:
        plan.refused.append(
            f"topics.{role}: topic {topic.name!r} has replication factor {state.replication_factor}; changing it "
            f"to {topic.replication_factor} needs a partition reassignment, which kinfer does not do"
        )
    wanted = dict(topic.config)
    changed = {key: value for key, value in wanted.items() if state.configs.get(key) != value}
    if changed:
        plan.set_configs[topic.name] = changed
    stale = sorted(key for key in state.configs if key not in wanted)
    if stale:
        plan.delete_configs[topic.name] = stale


def _plan_not_owned(plan: TopicPlan, topic: TopicSpec, state: TopicState) -> None:
    """A topic that existed before the pipeline: only the configs the spec lists are set; nothing is removed."""
    plan.partitions[topic.name] = state.partitions
    changed = {key: value for key, value in topic.config.items() if state.configs.get(key) != value}
    if changed:
        plan.set_configs[topic.name] = changed


def topics_to_delete(spec: InferencePipelineSpec, status: dict[str, Any]) -> tuple[list[str], list[str]]:
    """For ``deletionPolicy: Delete``: the topics to delete (those this pipeline created and still names in mode
    Create) and those kept (every other topic it names: adopted, or existing before it)."""
    created = set(status.get("createdTopics") or [])
    names = [topic.name for _, topic in pipeline_topics(spec)]
    delete = [t.name for _, t in pipeline_topics(spec) if t.mode is TopicMode.CREATE and t.name in created]
    return delete, [name for name in names if name not in delete]
