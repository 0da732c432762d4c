"""Contenders (a) and (b), run in the benchmark's own process.

(a) Raw passthrough: the same confluent-kafka client and producer settings kinfer uses, batch consume, produce
    each value unchanged, commit asynchronously per batch; no decoding, no model. The ceiling for any consumer.
(a+) The contract floor: passthrough plus the least that kinfer's output contract asks of any runtime built on this
    client: decode each value (to find bad records), attach the six ``kinfer.*`` headers, and take a delivery
    report per record (an input is committed only after its output is acked). No features, no model. kinfer can't
    be faster than this; the gap between it and (a) is the contract's own cost.
(b) The tutorial loop (what most Kafka + TensorFlow tutorials and Kafka-ML do): ``poll`` one record, decode and
    preprocess it, ``model.predict`` on it, produce the result, commit synchronously.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer

from kinfer_runtime.kafka.settings import RELIABLE_PRODUCER_SETTINGS as PRODUCER_SETTINGS


def relay_clients(bootstrap: str, group: str) -> tuple[Consumer, Producer]:
    """(a) and (a+) consume and produce with kinfer's client settings. Their loops stay inline, each its own: a
    per-record function call would cost the ceiling a few percent."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "partition.assignment.strategy": "cooperative-sticky",
    })  # fmt: skip
    return consumer, Producer({"bootstrap.servers": bootstrap, **PRODUCER_SETTINGS})


def passthrough(bootstrap: str, source: str, target: str, count: int, group: str, timeout: float = 300) -> int:
    consumer, producer = relay_clients(bootstrap, group)
    consumer.subscribe([source])
    done, deadline = 0, time.monotonic() + timeout
    try:
        while done < count and time.monotonic() < deadline:
            messages = consumer.consume(500, 0.05)
            for message in messages:
                if message.error():
                    continue
                while True:
                    try:
                        producer.produce(target, message.value(), message.key())
                        break
                    except BufferError:
                        producer.poll(0.01)
                done += 1
            producer.poll(0)
            if messages:
                consumer.commit(asynchronous=True)
        producer.flush(60)
    finally:
        consumer.close()
    return done


def contract_floor(bootstrap: str, source: str, target: str, count: int, group: str, timeout: float = 300) -> int:
    import orjson

    from kinfer_runtime.records import output

    consumer, producer = relay_clients(bootstrap, group)
    shared = [(output.MODEL_NAME, b"fraud"), (output.MODEL_VERSION, b"1"), (output.SOURCE_TOPIC, source.encode()),
              (output.PIPELINE, b"floor")]  # fmt: skip
    acked = [0]

    def on_delivery(error: Any, _message: Any) -> None:
        if error is None:
            acked[0] += 1

    consumer.subscribe([source])
    done, deadline = 0, time.monotonic() + timeout
    try:
        while done < count and time.monotonic() < deadline:
            messages = consumer.consume(500, 0.05)
            for message in messages:
                if message.error():
                    continue
                value = message.value() or b"{}"
                orjson.loads(value)
                headers: list[tuple[str, str | bytes | None]] = [
                    *shared,
                    (output.SOURCE_PARTITION, b"%d" % (message.partition() or 0)),
                    (output.SOURCE_OFFSET, b"%d" % (message.offset() or 0)),
                ]
                while True:
                    try:
                        producer.produce(target, value, message.key(), headers=headers, on_delivery=on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.01)
                done += 1
            producer.poll(0)
            if messages:
                consumer.commit(asynchronous=True)
        producer.flush(60)
    finally:
        consumer.close()
    return acked[0]


def tutorial_model(version_dir: Path) -> Any:
    """A Keras model around the SavedModel's signature, so the loop can call ``model.predict`` as tutorials do."""
    import keras
    import tensorflow as tf

    from kinfer_runtime.spec.model_metadata import load_model_metadata

    metadata = load_model_metadata(version_dir)
    loaded = tf.saved_model.load(str(version_dir))
    signature = loaded.signatures[metadata.signature]
    output_name = next(iter(metadata.outputs))

    class SignatureLayer(keras.layers.Layer):
        def call(self, inputs: dict[str, Any]) -> Any:
            assert loaded is not None  # holds the SavedModel's variables alive as long as the layer
            return signature(**inputs)[output_name]

        def compute_output_shape(self, input_shape: Any) -> tuple[None]:
            return (None,)

    inputs = {name: keras.Input(info.row_shape or (1,), dtype=info.dtype, name=name)
              for name, info in metadata.inputs.items()}  # fmt: skip
    return keras.Model(inputs, SignatureLayer()(inputs)), metadata


def tutorial(bootstrap: str, source: str, target: str, version_dir: Path, group: str, seconds: float) -> int:
    from kinfer_runtime.preprocess.preprocessor import Preprocessor

    model, metadata = tutorial_model(version_dir)
    preprocessor = Preprocessor(metadata.features, metadata.inputs, metadata.feature_inputs)
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })  # fmt: skip
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_SETTINGS})
    consumer.subscribe([source])
    done, started = 0, None
    try:
        while started is None or time.monotonic() - started < seconds:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            record = json.loads(message.value() or b"null")
            batch = preprocessor.encode([json.dumps(record).encode()])
            score = model.predict(batch.inputs, verbose=0)
            output = {
                "prediction": {"score": float(np.asarray(score).reshape(-1)[0])},
                "id": record.get("transaction_id"),
            }
            producer.produce(target, json.dumps(output).encode(), message.key())
            producer.poll(0)
            consumer.commit(message=message, asynchronous=False)
            done += 1
            started = started or time.monotonic()
        producer.flush(30)
    finally:
        consumer.close()
    return done
