"""Contender (c): a Quix Streams application doing kinfer's preprocessing and calling the model's signature
once per record. Runs inside ``.bench/quix-venv`` (quixstreams pins an older confluent-kafka than kinfer), started
by :mod:`tests.bench.quix_case`; stops on SIGTERM like any Quix application.

    .bench/quix-venv/bin/python tests/bench/quix_app.py BOOTSTRAP INPUT OUTPUT GROUP MODEL_VERSION_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    bootstrap, source, target, group, version_dir = argv
    import tensorflow as tf
    from quixstreams import Application

    from kinfer_runtime.predictors.base import Prediction
    from kinfer_runtime.preprocess.preprocessor import Preprocessor
    from kinfer_runtime.records.predictions import format_outputs
    from kinfer_runtime.spec.model_metadata import load_model_metadata

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    metadata = load_model_metadata(Path(version_dir))
    signature = tf.saved_model.load(version_dir).signatures[metadata.signature]
    preprocessor = Preprocessor(metadata.features, metadata.inputs, metadata.feature_inputs)

    def score(value: bytes) -> dict[str, Any] | None:
        batch = preprocessor.encode([value])
        if batch.failures:
            return None
        outputs = signature(**{name: tf.constant(array) for name, array in batch.inputs.items()})
        prediction = Prediction({name: tensor.numpy() for name, tensor in outputs.items()}, metadata.version)
        return {"prediction": format_outputs(prediction, metadata)[0],
                "model": {"name": metadata.name, "version": metadata.version}}  # fmt: skip

    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      loglevel="WARNING", auto_create_topics=False)  # fmt: skip
    frame = app.dataframe(app.topic(source, value_deserializer="bytes"))
    frame = frame.apply(score).filter(lambda row: row is not None)
    frame.to_topic(app.topic(target, value_serializer="json"))
    print("quix app running", flush=True)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
