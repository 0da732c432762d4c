"""What to do to the pipeline's Kafka topics, decided from the spec and what the broker reports (pure).

Rules (after Strimzi's topic operator, minus its namespace-wedging finalizer):
* ``mode: Create`` topics are kinfer's: created when missing (also when deleted behind kinfer's back), partitions
  increased, configs aligned (set what the spec says, remove topic-level overrides it doesn't); a partition
  decrease is refused with reason ``NotSupported`` because Kafka can't do it, and the topic is left as it is.
* ``mode: Adopt`` topics belong to someone else: never changed or deleted; one with fewer partitions than the
  spec asks makes the spec invalid (the pipeline can't get the parallelism it was sized for); a missing one is
  waited for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

    @property
    def changes(self) -> bool:
        return bool(self.create or self.increase or self.set_configs or self.delete_configs)


def pipeline_topics(spec: InferencePipelineSpec) -> list[tuple[str, TopicSpec]]:
    return [("input", spec.topics.input), ("output", spec.topics.output), ("deadLetter", spec.topics.dead_letter)]


def plan_topics(
    spec: InferencePipelineSpec, observed: dict[str, TopicState], known_before: set[str] | None = None
) -> TopicPlan:
    """The plan for all three topics. ``known_before``: topics the pipeline's status listed last time."""
    plan = TopicPlan()
    for role, topic in pipeline_topics(spec):
        state = observed.get(topic.name)
        if topic.mode is TopicMode.ADOPT:
            _plan_adopted(plan, role, topic, state)
        else:
            _plan_managed(plan, role, topic, state, known_before or set())
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


def _plan_managed(plan: TopicPlan, role: str, topic: TopicSpec, state: TopicState | None, known: set[str]) -> None:
    if state is None:
        plan.create.append(topic)
        plan.partitions[topic.name] = topic.partitions
        if topic.name in known:
            plan.recreated.append(topic.name)
        return
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
