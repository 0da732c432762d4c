"""``kinfer score --output-topic``: a batch run's results published as the live pipeline publishes them.

A scored record becomes the same output record as live (value, the input's key, the input's headers and the
``kinfer.*`` ones: records/output.py), so whatever reads the live output topic reads a backfill too; a record the
live pipeline would dead-letter goes to the pipeline's dead-letter topic with its original key, value and headers
and the reason (records/dead_letter.py). ``flush`` waits for every delivery and raises if Kafka refused one, so
the caller commits progress only past records that are stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Producer

from kinfer_runtime.records.dead_letter import Failure, dead_letter_headers
from kinfer_runtime.records.output import BatchContext, output_headers, output_value


@dataclass
class BatchTimings:
    """The current batch's stage times, which every output value carries (``timings_ms``)."""

    preprocess_ms: float = 0.0
    predict_ms: float = 0.0


class DeliveryRefused(RuntimeError):
    pass


class TopicSink:
    def __init__(
        self,
        producer: Producer,
        pipeline: str,
        model_name: str,
        output_topic: str,
        dead_letter_topic: str,
        timings: BatchTimings,
    ) -> None:
        self.producer = producer
        self.pipeline = pipeline
        self.model_name = model_name
        self.output_topic = output_topic
        self.dead_letter_topic = dead_letter_topic
        self.timings = timings
        self.refused: list[str] = []

    def _delivered(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            self.refused.append(str(error))

    def write(self, result: dict[str, Any], value: bytes | None, key: bytes | None, headers: Any) -> None:
        """One result of ``score_batches`` with its input's value, key and headers."""
        source = result["source"]
        if "error" in result:
            failure = Failure(result["error"]["class"], result["error"]["message"])
            dead_headers = dead_letter_headers(
                headers,
                topic=source["topic"],
                partition=source["partition"],
                offset=source["offset"],
                timestamp_ms=source.get("timestamp_ms"),
                failure=failure,
                pipeline=self.pipeline,
                model_version=None,
            )
            self._produce(self.dead_letter_topic, value, key, dead_headers)
            return
        version = int(result["model"]["version"])
        context = BatchContext(
            self.pipeline,
            self.model_name,
            version,
            source["topic"],
            round(self.timings.preprocess_ms, 3),
            round(self.timings.predict_ms, 3),
        )
        now_ms = int(time.time() * 1000)
        out = output_value(
            result["prediction"], context, source["partition"], source["offset"], source.get("timestamp_ms"), now_ms
        )
        out_headers = output_headers(context.shared_headers(), headers, source["partition"], source["offset"])
        self._produce(self.output_topic, out, key, out_headers)

    def _produce(self, topic: str, value: bytes | None, key: bytes | None, headers: Any) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=self._delivered)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.1)

    def flush(self, timeout_s: float = 120.0) -> None:
        left = self.producer.flush(timeout_s)
        if left:
            raise DeliveryRefused(f"{left} records still undelivered after {timeout_s:.0f} s")
        if self.refused:
            raise DeliveryRefused(f"Kafka refused {len(self.refused)} records: {self.refused[0]}")
