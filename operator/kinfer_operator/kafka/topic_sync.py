"""The side-effecting half of topic management: read the pipeline's topics from Kafka, carry out the plan.

``topics.plan_topics`` decides (pure); this module connects with the credentials the spec's Secrets hold, turns
the outcome into the ``TopicsReady`` condition and the Events worth posting.
"""

from __future__ import annotations

from typing import Any

from kinfer_operator.k8s.client import Kube, secret_values
from kinfer_operator.kafka import admin as kafka_admin
from kinfer_operator.kafka.topic_plan import TopicPlan, plan_topics
from kinfer_operator.status import conditions
from kinfer_operator.status.conditions import Condition
from kinfer_operator.status.document import Event
from kinfer_runtime.spec import InferencePipeline


def admin_for(kube: Kube, pipeline: InferencePipeline) -> Any:
    kafka = pipeline.spec.kafka
    secrets: dict[str, dict[str, str]] = {}
    if kafka.sasl is not None:
        keys = [kafka.sasl.username_key, kafka.sasl.password_key]
        secrets[kafka.sasl.secret_name] = secret_values(kube, pipeline.metadata.namespace, kafka.sasl.secret_name, keys)
    if kafka.tls is not None:
        keys = [k for k in (kafka.tls.ca_key, kafka.tls.cert_key, kafka.tls.key_key) if k]
        secrets.setdefault(kafka.tls.secret_name, {}).update(
            secret_values(kube, pipeline.metadata.namespace, kafka.tls.secret_name, keys)
        )
    return kafka_admin.admin_client(kafka_admin.admin_config(kafka, secrets))


def read_topics(
    kube: Kube, pipeline: InferencePipeline, previous: dict[str, Any]
) -> tuple[TopicPlan | None, Condition | None]:
    topics = pipeline.spec.topics
    names = [topics.input.name, topics.output.name, topics.dead_letter.name]
    try:
        observed = kafka_admin.describe_topics(admin_for(kube, pipeline), names)
    except kafka_admin.KafkaUnavailable as error:
        return None, Condition(conditions.TOPICS_READY, "False", conditions.KAFKA_ERROR, str(error))
    return plan_topics(pipeline.spec, observed, set(previous.get("topics") or {})), None


def apply_topics(kube: Kube, pipeline: InferencePipeline, plan: TopicPlan, events: list[Event]) -> Condition:
    kind = conditions.TOPICS_READY
    if plan.changes:
        try:
            kafka_admin.execute_plan(admin_for(kube, pipeline), plan)
        except kafka_admin.KafkaUnavailable as error:
            return Condition(kind, "False", conditions.KAFKA_ERROR, str(error))
        for name in plan.recreated:
            events.append(Event("Warning", "TopicRecreated", f"topic {name} was deleted outside kinfer; re-created"))
        created = [t.name for t in plan.create if t.name not in plan.recreated]
        if created:
            events.append(Event("Normal", "TopicsCreated", f"created topics {', '.join(created)}"))
        for name, count in plan.increase.items():
            events.append(Event("Normal", "PartitionsIncreased", f"topic {name} now has {count} partitions"))
        for name in sorted(set(plan.set_configs) | set(plan.delete_configs)):
            events.append(Event("Normal", "TopicConfigUpdated", f"topic {name}: configs aligned with the spec"))
    if plan.refused:
        return Condition(kind, "False", conditions.NOT_SUPPORTED, "; ".join(plan.refused))
    if plan.waiting:
        return Condition(kind, "False", "TopicMissing", "; ".join(plan.waiting))
    summary = ", ".join(f"{name} ({count})" for name, count in plan.partitions.items())
    return Condition(kind, "True", "TopicsReady", f"topics and partitions: {summary}")
