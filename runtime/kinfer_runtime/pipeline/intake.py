"""Reading one micro-batch from the consumer: up to maxBatchSize records, closed when the batch window says.

Waits are taken in short slices so that delivery reports (and with them commits and the end-to-end latency) are
served while a batch fills at low rates. When the client's queue is found empty the output side hears of it
(exactly-once commits its open transaction then, so a slow input is not held back).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaException, Message

from kinfer_runtime.observability.logs import fields
from kinfer_runtime.pipeline.batching import BatchWindow
from kinfer_runtime.pipeline.consumed import read_each
from kinfer_runtime.pipeline.parts import DeliverySide

log = logging.getLogger("kinfer.loop")
CONSUME_SLICE_S = 0.005


class Intake:
    def __init__(
        self, consumer: Any, delivery: DeliverySide, max_batch: int, batch_wait_s: float, stop: threading.Event
    ) -> None:
        self.consumer, self.delivery, self.stop = consumer, delivery, stop
        self.max_batch = max_batch
        self.window = BatchWindow(max_batch, batch_wait_s, time.monotonic())

    def read(self) -> list[Message]:
        """The next batch's valid records (possibly none); consumer errors are logged, fatal ones raised."""
        window = self.window
        deadline = window.deadline()  # the records already queued arrived after the queue was last seen empty
        messages = self._consume(self.max_batch, 0)
        if not messages:
            self.delivery.input_idle()
            # Block for the first record alone: consume(1, t) returns as soon as one arrives, while a larger
            # count would wait all of t. It arrives after the queue was seen empty just now.
            messages = self._consume(1, CONSUME_SLICE_S)
            if not messages:
                return messages
            deadline = window.deadline()
            messages += self._consume(self.max_batch - 1, 0)
        while not self.stop.is_set():
            now = time.monotonic()
            if window.should_close(len(messages), deadline, now):
                break
            if self.delivery.records_in_flight():
                self.delivery.serve()
            messages += self._consume(self.max_batch - len(messages), min(max(deadline - now, 0.0), CONSUME_SLICE_S))
        window.closed(len(messages), time.monotonic())
        return _valid(messages)

    def _consume(self, asked: int, timeout: float) -> list[Message]:
        """One consume call, telling the batch window whether it emptied the client's queue."""
        messages: list[Message] = self.consumer.consume(asked, timeout)
        self.window.consumed(asked, len(messages), time.monotonic())
        return messages


def _valid(messages: list[Message]) -> list[Message]:
    if not any(read_each(messages, "error")):  # the usual batch: no Python code per record
        return messages
    valid = []
    for message in messages:
        error = message.error()
        if error is None:
            valid.append(message)
        elif error.fatal():
            raise KafkaException(error)
        else:
            log.warning("consumer error", extra=fields(error=error))
    return valid
