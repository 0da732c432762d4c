"""The loop's Kafka clients: built from the pipeline's settings with their event handlers, and replaced when one is
stranded, knowing no broker any more (:mod:`kinfer_runtime.kafka.client_events` explains how librdkafka gets
there: a broker in controlled shutdown answering Metadata with no broker, confluentinc/librdkafka#5301).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from kinfer_runtime.kafka.client_events import ClientEvents
from kinfer_runtime.observability.logs import fields
from kinfer_runtime.pipeline.assignment import Assignment
from kinfer_runtime.pipeline.parts import LoopParts

log = logging.getLogger("kinfer.loop")


class Clients:
    """The consumer and producer; a test may pass its own (then nothing is watched or replaced)."""

    def __init__(self, parts: LoopParts, consumer: Any = None, producer: Any = None) -> None:
        self.parts = parts
        # Events of the clients built here (None for given ones): errors, logs, and whether the client still
        # knows a broker.
        self.consumer_events: ClientEvents | None = None
        self.producer_events: ClientEvents | None = None
        self.consumer = consumer or self._new_consumer()
        self.producer = producer or self._new_producer()

    def _new_consumer(self) -> Any:
        self.consumer_events = ClientEvents(
            "consumer", self.parts.state.kafka_problem, connected=self.parts.metrics.brokers_up("consumer")
        )
        return Consumer({**self.parts.consumer_config, **self.consumer_events.settings()})

    def _new_producer(self) -> Any:
        self.producer_events = ClientEvents(
            "producer", self.parts.state.kafka_problem, connected=self.parts.metrics.brokers_up("producer")
        )
        return Producer({**self.parts.producer_config, **self.producer_events.settings()})

    def replace_stranded(self, now: float, exactly_once: bool, assignment: Assignment, users: Sequence[Any]) -> bool:
        """Put a new client, bootstrapped afresh, in the place of one that knows no broker any more (it never finds
        one again by itself); ``users`` (the intake, the delivery side) are pointed at it. True when one was."""
        consumer_stranded = self.consumer_events is not None and self.consumer_events.stranded(now)
        producer_stranded = self.producer_events is not None and self.producer_events.stranded(now)
        if not (consumer_stranded or producer_stranded):
            return False
        if exactly_once:
            # The open transaction binds the producer (its transactional.id) and the consumer's group metadata:
            # a new process starts both afresh (its init_transactions aborts what this one left open).
            raise KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN, "Kafka client knows no broker any more",
                                            fatal=True))  # fmt: skip
        if consumer_stranded:
            log.error("kafka consumer knows no broker any more; replacing it",
                      extra=fields(partitions=sorted(assignment.assigned)))  # fmt: skip
            old = self.consumer
            self.consumer = self._new_consumer()
            for user in users:
                user.consumer = self.consumer
            assignment.replace_consumer(self.consumer)
            # Its close may wait for requests that can never be sent; its callbacks are no longer the loop's.
            threading.Thread(target=_close_quietly, args=(old,), name="kinfer-close-consumer", daemon=True).start()
        if producer_stranded:
            log.error("kafka producer knows no broker any more; replacing it")
            old_producer = self.producer
            self.producer = self._new_producer()
            for user in users:
                if hasattr(user, "producer"):
                    user.producer = self.producer
            # Its records fail with _PURGE_QUEUE or _PURGE_INFLIGHT and the delivery side produces them again on
            # the new producer (a purged in-flight record may have been written: a duplicate, as at-least-once
            # allows).
            old_producer.purge(in_queue=True, in_flight=True)
            old_producer.poll(0)
        return True


def _close_quietly(consumer: Any) -> None:
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as error:
        log.warning("closing the replaced consumer failed", extra=fields(error=error))
