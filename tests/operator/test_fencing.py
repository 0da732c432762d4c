"""An exactly-once consumer pod that is gone has its open transaction ended by the operator, not by the broker's
``transaction.timeout.ms``. On the bed's real broker and API server (kwok plays the pods): a transaction left open
under a consumer pod's transactional id holds read_committed readers back until the pod object is deleted, and
then they read on within seconds, the open transaction aborted and its producer fenced."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from kinfer_runtime.spec import parse_pipeline
from tests.operator.bed import Bed
from tests.operator.conftest import OperatorProcess
from tests.polling import wait_until

ZOMBIE_TRANSACTION_TIMEOUT_MS = 300_000  # far beyond the wait below: only fencing can end the transaction in time


def read_values(reader: Consumer, seconds: float) -> list[bytes | None]:
    return [message.value() for message in reader.consume(100, seconds) if message.error() is None]


def test_a_gone_exactly_once_pods_open_transaction_is_aborted_at_once(bed: Bed, operator: OperatorProcess) -> None:
    manifest = bed.manifest("fenced", consumer={"delivery": "exactlyOnce"})
    bed.apply(manifest)
    bed.wait_ready("fenced")
    _, output, _ = bed.topic_names(manifest)
    selector = "app.kubernetes.io/component=consumer,kinfer.io/pipeline=fenced"
    pods = wait_until(lambda: bed.core.list_namespaced_pod(bed.namespace, label_selector=selector).items, 60, "pods")
    pod = pods[0].metadata.name
    transactional_id = parse_pipeline(manifest).transactional_id(pod)

    # What a consumer pod killed mid-transaction leaves behind: an open transaction under its id.
    zombie = Producer(
        {
            "bootstrap.servers": bed.bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": ZOMBIE_TRANSACTION_TIMEOUT_MS,
        }
    )
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(output, b"never committed", partition=0)
    zombie.flush(30)
    plain = Producer({"bootstrap.servers": bed.bootstrap})
    plain.produce(output, b"written after it", partition=0)
    plain.flush(30)

    reader = Consumer(
        {
            "bootstrap.servers": bed.bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    reader.assign([TopicPartition(output, 0, 0)])
    try:
        assert read_values(reader, 5) == [], "a read_committed reader must wait behind the open transaction"

        bed.core.delete_namespaced_pod(pod, bed.namespace, grace_period_seconds=0)
        seen: list[bytes | None] = []

        def reads_on() -> bool:
            seen.extend(read_values(reader, 1))
            return b"written after it" in seen

        wait_until(reads_on, 30, "the reader to read past the gone pod's transaction")
        assert b"never committed" not in seen, "the gone pod's transaction must be aborted, not committed"
    finally:
        reader.close()
    with pytest.raises(KafkaException) as refused:
        zombie.commit_transaction(10)
    assert "fenced" in str(refused.value).lower() or "epoch" in str(refused.value).lower(), refused.value
