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
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from itertools import repeat
from typing import Any

from confluent_kafka import KafkaException

from kinfer_runtime.pipeline.commits import InFlightBatch

STOPPED_QUEUE_FULL_S = 5.0
PARTITION_UNASSIGNED = -1  # librdkafka's RD_KAFKA_PARTITION_UA: the partitioner chooses, by key


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
    on_delivery = callback or partial(partial, batch.delivered)
    refused: list[tuple[int, Any]] = []
    order = list(indices)
    start, full_at, full_since = 0, -1, 0.0
    while start < len(order):
        start, full = _produce_from(producer, batch, order, start, on_delivery, refused)
        if not full:
            continue
        if start != full_at:  # the queue is full again, for another record
            full_at, full_since = start, time.monotonic()
        producer.poll(0.05)
        heartbeat()
        if stop.is_set() and time.monotonic() - full_since > STOPPED_QUEUE_FULL_S:
            raise PipelineStopped from None
    producer.poll(0)
    return refused


def _produce_from(
    producer: Any,
    batch: InFlightBatch,
    order: list[int],
    start: int,
    on_delivery: Callable[[int], Callable[[Any, Any], None]],
    refused: list[tuple[int, Any]],
) -> tuple[int, bool]:
    """Produce the records ``order[start:]`` until ``produce`` raises. Returns the position to go on from, and
    whether the producer's queue was full (the record there is to be produced again); a record ``produce``
    refused is added to ``refused``."""
    # One C-level map over the batch's columns: no Python code runs per record (a Python loop around produce
    # cost about 1 µs more per record on the test machine). ``produce``'s positional parameters are (topic, value,
    # key, partition, callback, on_delivery, timestamp, headers) in the pinned confluent-kafka; the bed tests read
    # back keys, values, headers and delivery reports of records produced here.
    records = batch.records
    positions = iter(range(start, len(order)))
    chosen = order[start:]
    try:
        deque(
            map(
                producer.produce,
                map(records.topics.__getitem__, chosen),
                map(records.values.__getitem__, chosen),
                map(records.keys.__getitem__, chosen),
                repeat(PARTITION_UNASSIGNED),
                map(on_delivery, map(order.__getitem__, positions)),
                repeat(None),
                repeat(0),
                map(records.headers.__getitem__, chosen),
            ),
            0,
        )
        return len(order), False
    except BufferError:
        return next(positions, len(order)) - 1, True
    except KafkaException as exception:
        position = next(positions, len(order)) - 1
        refused.append((order[position], exception.args[0]))
        return position + 1, False
