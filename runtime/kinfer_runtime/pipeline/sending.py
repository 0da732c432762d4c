"""Handing one batch's records to the producer, shared by both delivery guarantees.

librdkafka's local queue is bounded: when it is full (the broker is slow or away), ``produce`` raises
``BufferError`` and the records wait while delivery reports are served. A stop that comes while the queue stays
full ends the wait after a few seconds, so a pod being terminated never hangs on a broker that is gone.

``produce`` may also refuse a record at once with a ``KafkaException``: larger than ``message.max.bytes``
(``MSG_SIZE_TOO_LARGE``), a topic librdkafka knows not to exist (``_UNKNOWN_TOPIC``)... Such a record is not in
flight; it is returned to the caller with its error (:mod:`kinfer_runtime.pipeline.delivery_failures` decides).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from confluent_kafka import KafkaException

from kinfer_runtime.pipeline.commits import InFlightBatch

STOPPED_QUEUE_FULL_S = 5.0


class PipelineStopped(Exception):
    """The loop was asked to stop while waiting (the batch in hand is not committed)."""


def produce_records(
    producer: Any,
    batch: InFlightBatch,
    indices: Sequence[int] | range,
    heartbeat: Callable[[], None],
    stop: threading.Event,
    callback: Callable[[int], Callable[[Any, Any], None]] | None = None,
) -> list[tuple[int, Any]]:
    """Produce ``batch.records[i]`` for each index, each with its delivery callback (``batch.delivered`` for
    record i unless ``callback(i)`` gives another); then serve reports once. Returns the records ``produce`` refused
    at once, as (index, KafkaError): no delivery report will come for them."""
    produce, poll, records = producer.produce, producer.poll, batch.records
    on_delivery = callback or partial(partial, batch.delivered)
    refused: list[tuple[int, Any]] = []
    for i in indices:
        record = records[i]
        full_since = 0.0
        while True:
            try:
                produce(record.topic, record.value, record.key, headers=record.headers, on_delivery=on_delivery(i))
                break
            except BufferError:
                full_since = full_since or time.monotonic()
                poll(0.05)
                heartbeat()
                if stop.is_set() and time.monotonic() - full_since > STOPPED_QUEUE_FULL_S:
                    raise PipelineStopped from None
            except KafkaException as exception:
                refused.append((i, exception.args[0]))
                break
    poll(0)
    return refused
