"""Small real-Kafka helpers for the autoscaling tests (topics, producing, committing as a group)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap: str, partitions: int, prefix: str = "as") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with AdminClient({"bootstrap.servers": bootstrap}) as admin:  # destroyed here, never by the collector
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
        # creation is acknowledged before every partition has a leader in the metadata: wait for that too
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            topic = admin.list_topics(name, timeout=10).topics.get(name)
            complete = topic is not None and topic.error is None and len(topic.partitions) == partitions
            if complete and all(p.leader >= 0 for p in topic.partitions.values()):  # type: ignore[union-attr]
                return name
            time.sleep(0.1)
    raise AssertionError(f"topic {name} has no leaders after 30 s")


def produce_spread(bootstrap: str, topic: str, partitions: int, count: int) -> None:
    """``count`` records round-robin over the partitions, acknowledged before returning."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for index in range(count):
        producer.produce(topic, value=b'{"x": 1}', key=str(index).encode(), partition=index % partitions)
    assert producer.flush(30) == 0


def commit_offsets(
    bootstrap: str, group: str, topic: str, offsets: dict[int, int], metadata: dict[int, str] | None = None
) -> None:
    """Commit as the group without joining it (what a consumer that processed up to there would have done),
    with ``metadata`` per partition when given."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    texts = metadata or {}
    try:
        partitions = [TopicPartition(topic, p, o, texts.get(p, "")) for p, o in offsets.items()]
        consumer.commit(offsets=partitions, asynchronous=False)
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:6]}"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        consumer.close()
