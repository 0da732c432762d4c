"""The side-effecting half of topic management: read the pipeline's topics from Kafka, carry out the plan.

``topic_plan.plan_topics`` decides (pure); this module turns what a :class:`TopicAdmin` reports and does into
the ``TopicsReady`` condition and the Events worth posting. :func:`topic_admin_for` gives the real one: an
AdminClient connected with the credentials the spec's Secrets hold.
"""

from __future__ import annotations

from typing import Any, Protocol

from kinfer_operator.k8s.client import Kube, kafka_secrets
from kinfer_operator.kafka import admin as kafka_admin
from kinfer_operator.kafka.topic_plan import TopicPlan, TopicState, plan_topics
from kinfer_operator.status.conditions import Condition
from kinfer_operator.status.document import Event
from kinfer_operator.status.reasons import ConditionType, Reason
from kinfer_runtime.spec import InferencePipeline


class TopicAdmin(Protocol):
    """What a reconcile asks of Kafka: the topics, and how far the batch runs got."""

    def describe(self, names: list[str]) -> dict[str, TopicState]:
        """State of the named topics that exist; raises KafkaUnavailable."""
        ...

    def execute(self, plan: TopicPlan) -> set[str]:
        """Carry out the plan's changes; returns the topics it created. Raises KafkaUnavailable."""
        ...

    def run_progress(self, group: str) -> tuple[int, int] | None:
        """(done, total) a batch run committed to its group, None if it committed nothing. Raises KafkaUnavailable."""
        ...


class KafkaTopicAdmin:
    """:class:`TopicAdmin` over confluent-kafka's AdminClient."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def describe(self, names: list[str]) -> dict[str, TopicState]:
        return kafka_admin.describe_topics(self.client, names)

    def execute(self, plan: TopicPlan) -> set[str]:
        return kafka_admin.execute_plan(self.client, plan)

    def run_progress(self, group: str) -> tuple[int, int] | None:
        return kafka_admin.group_progress(self.client, group)


def topic_admin_for(kube: Kube, pipeline: InferencePipeline) -> TopicAdmin:
    return KafkaTopicAdmin(admin_for(kube, pipeline))


def admin_for(kube: Kube, pipeline: InferencePipeline) -> Any:
    kafka = pipeline.spec.kafka
    secrets = kafka_secrets(kube, pipeline.metadata.namespace, kafka)
    return kafka_admin.admin_client(kafka_admin.admin_config(kafka, secrets))


def read_topics(
    admin: TopicAdmin, pipeline: InferencePipeline, previous: dict[str, Any]
) -> tuple[TopicPlan | None, Condition | None]:
    names = [topic.name for _, topic in pipeline.spec.topics.roles()]
    try:
        observed = admin.describe(names)
    except kafka_admin.KafkaUnavailable as error:
        return None, Condition(ConditionType.TOPICS_READY, "False", Reason.KAFKA_ERROR, str(error))
    return plan_topics(pipeline.spec, observed, set(previous.get("createdTopics") or [])), None


def apply_topics(admin: TopicAdmin, plan: TopicPlan, events: list[Event]) -> tuple[Condition, set[str]]:
    """Carry the plan out; the ``TopicsReady`` condition and the topics created now (they become the pipeline's)."""
    kind = ConditionType.TOPICS_READY
    created: set[str] = set()
    if plan.changes:
        try:
            created = admin.execute(plan)
        except kafka_admin.KafkaUnavailable as error:
            return Condition(kind, "False", Reason.KAFKA_ERROR, str(error)), created
        for name in plan.recreated:
            events.append(Event("Warning", "TopicRecreated", f"topic {name} was deleted outside kinfer; re-created"))
        new = sorted(created - set(plan.recreated))
        if new:
            events.append(Event("Normal", "TopicsCreated", f"created topics {', '.join(new)}"))
        for name, count in plan.increase.items():
            events.append(Event("Normal", "PartitionsIncreased", f"topic {name} now has {count} partitions"))
        for name in sorted(set(plan.set_configs) | set(plan.delete_configs)):
            changes = [f"set {', '.join(sorted(plan.set_configs[name]))}"] if name in plan.set_configs else []
            changes += [f"removed {', '.join(plan.delete_configs[name])}"] if name in plan.delete_configs else []
            events.append(Event("Normal", "TopicConfigUpdated", f"topic {name}: {'; '.join(changes)}"))
    if plan.refused:
        return Condition(kind, "False", Reason.NOT_SUPPORTED, "; ".join(plan.refused)), created
    if plan.waiting:
        return Condition(kind, "False", Reason.TOPIC_MISSING, "; ".join(plan.waiting)), created
    if plan.conflicts:
        return Condition(kind, "False", Reason.TOPIC_CONFLICT, "; ".join(plan.conflicts)), created
    summary = ", ".join(f"{name} ({count})" for name, count in plan.partitions.items())
    message = f"topics and partitions: {summary}"
    if plan.not_owned:
        message += (
            f"; {', '.join(plan.not_owned)} existed before this pipeline: used as they are (kinfer sets only the "
            "configs the spec lists, and never deletes them)"
        )
    return Condition(kind, "True", Reason.TOPICS_READY, message), created
