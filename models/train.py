"""Train and export kinfer's example models on synthetic data, with fixed seeds (``make models``).

- ``models/fraud/{1,2}``: a card-transaction fraud classifier. Numeric fields (amount, hour, distance, merchant
  risk; standard or min-max scaled) and categorical ones (country and channel one-hot, merchant category as an
  index into an embedding). Version 2 is the same recipe with another seed (for hot-reload tests and demos).
- ``models/sensor-anomaly/1``: a dense autoencoder over a 32x3 sensor window; the anomaly score is the
  reconstruction error, and the label threshold is the 99th percentile of normal windows' scores.
- ``models/shapes/1``: a small CNN over 32x32 RGB images of drawn shapes (``models/train_shapes.py``).

Training data goes through kinfer's own Preprocessor, compiled from the very feature spec written into
``kinfer.json``, so serving preprocesses exactly as training did; the distribution of each feature's columns over
the training set goes into ``kinfer.json`` too (``training_statistics``, the baseline of the drift metric). Each
version directory is a SavedModel with a ``serving_default`` signature (batch dimension None) plus ``kinfer.json``
(see docs/models.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "runtime"))

from kinfer_runtime.preprocess.preprocessor import Preprocessor  # noqa: E402
from kinfer_runtime.quality.drift import dataset_statistics  # noqa: E402
from kinfer_runtime.spec import FeatureSpec  # noqa: E402
from kinfer_runtime.spec.model_metadata import LabelsSpec, ModelMetadata, TensorInfo  # noqa: E402
from kinfer_runtime.tools.synthetic import (  # noqa: E402
    AXES,
    CHANNELS,
    COUNTRIES,
    MERCHANT_CATEGORIES,
    WINDOW_LENGTH,
    fraud_transactions,
    sensor_windows,
)


def fraud_features(records: list[dict[str, Any]]) -> list[FeatureSpec]:
    amounts = np.array([r["amount"] for r in records])
    distances = np.array([r["distance_km"] for r in records])
    return [
        FeatureSpec(name="amount", required=True, scaling="standard", mean=round(float(amounts.mean()), 4),
                    std=round(float(amounts.std()), 4)),
        FeatureSpec(name="hour", required=True, scaling="minMax", min=0, max=23),
        FeatureSpec(name="distance_km", default=0.0, scaling="standard", mean=round(float(distances.mean()), 4),
                    std=round(float(distances.std()), 4)),
        FeatureSpec(name="merchant_risk", default=0.5, scaling="minMax", min=0, max=1),
        FeatureSpec(name="country", type="categorical", vocabulary=COUNTRIES, encoding="oneHot"),
        FeatureSpec(name="channel", type="categorical", required=True, vocabulary=CHANNELS, encoding="oneHot"),
        FeatureSpec(name="merchant_category", type="categorical", required=True, vocabulary=MERCHANT_CATEGORIES,
                    encoding="index"),
    ]  # fmt: skip


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positives = labels.sum()
    negatives = len(labels) - positives
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The score cut with the best F1 on held-out data (fraud is rare: 0.5 would flag almost nothing)."""
    best = (0.5, 0.0)
    for cut in np.round(np.arange(0.05, 0.95, 0.01), 2):
        flagged = scores >= cut
        true_positives = float((flagged & (labels == 1)).sum())
        if true_positives == 0:
            continue
        precision, recall = true_positives / flagged.sum(), true_positives / (labels == 1).sum()
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best[1]:
            best = (float(cut), float(f1))
    return best


def export(model_fn: Any, trackable: Any, signature: list[Any], metadata: ModelMetadata, out: Path) -> None:
    import keras

    if out.exists():
        shutil.rmtree(out)
    archive = keras.export.ExportArchive()
    archive.track(trackable)
    archive.add_endpoint(name="serving_default", fn=model_fn, input_signature=signature)
    archive.write_out(str(out), verbose=False)
    (out / "kinfer.json").write_bytes(metadata.to_json())


def train_fraud(version: int, seed: int, out: Path) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    records, labels = fraud_transactions(40_000, seed)
    features = fraud_features(records)
    dense_names = ["amount", "hour", "distance_km", "merchant_risk", "country", "channel"]
    dense_width = 4 + len(COUNTRIES) + 1 + len(CHANNELS) + 1
    inputs = {
        "dense": TensorInfo(dtype="float32", shape=[None, dense_width], description="scaled numeric + one-hot"),
        "merchant_category": TensorInfo(dtype="int64", shape=[None, 1], description="vocabulary index"),
    }
    feature_inputs = {"dense": dense_names, "merchant_category": ["merchant_category"]}
    preprocessor = Preprocessor(features, inputs, feature_inputs)
    batch = preprocessor.encode([_dumps(r) for r in records])
    assert not batch.failures, batch.failures[:3]
    dense_in = keras.Input((dense_width,), name="dense")
    category_in = keras.Input((1,), dtype="int64", name="merchant_category")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(len(MERCHANT_CATEGORIES) + 1, 4)(category_in))
    hidden = keras.layers.Concatenate()([dense_in, embedded])
    hidden = keras.layers.Dense(32, activation="relu", name="hidden_1")(hidden)
    hidden = keras.layers.Dense(16, activation="relu", name="hidden_2")(hidden)
    output = keras.layers.Dense(1, activation="sigmoid", name="fraud_score")(hidden)
    model = keras.Model([dense_in, category_in], output)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    split = 32_000
    x = [batch.inputs["dense"], batch.inputs["merchant_category"]]
    model.fit([a[:split] for a in x], labels[:split], epochs=6, batch_size=256, verbose=0, shuffle=True)
    scores = model.predict([a[split:] for a in x], verbose=0)[:, 0]
    auc = roc_auc(labels[split:], scores)
    threshold, f1 = best_f1_threshold(labels[split:], scores)
    print(
        f"fraud v{version}: seed {seed}, fraud rate {labels.mean():.3f}, holdout ROC AUC {auc:.3f}, "
        f"threshold {threshold:.3f} (F1 {f1:.3f})"
    )

    def serve(dense: Any, merchant_category: Any) -> dict[str, Any]:
        return {"fraud_probability": model([dense, merchant_category])[:, 0]}

    metadata = ModelMetadata(
        name="fraud",
        version=version,
        inputs=inputs,
        features=features,
        feature_inputs=feature_inputs,
        outputs={"fraud_probability": TensorInfo(shape=[None], description="P(transaction is fraudulent)")},
        output_schema=_schema(
            {"fraud_probability": {"type": "number", "minimum": 0, "maximum": 1}}, ["legit", "fraud"]
        ),
        labels=LabelsSpec(output="fraud_probability", names=["legit", "fraud"], threshold=threshold),
        description="Card-transaction fraud classifier (synthetic data).",
        training={
            "seed": seed,
            "records": len(records),
            "holdout_roc_auc": round(auc, 4),
            "holdout_f1": round(f1, 4),
            "epochs": 6,
        },
        # What the runtime's drift metric compares live records with: the whole training set's columns.
        training_statistics=dataset_statistics(preprocessor.feature_columns(), features, batch.inputs),
    )
    signature = [
        tf.TensorSpec([None, dense_width], tf.float32, name="dense"),
        tf.TensorSpec([None, 1], tf.int64, name="merchant_category"),
    ]
    export(serve, model, signature, metadata, out)


def train_sensor(version: int, seed: int, out: Path) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    features = [FeatureSpec(name="window", type="array", required=True, shape=[WINDOW_LENGTH, AXES])]
    inputs = {"window": TensorInfo(shape=[None, WINDOW_LENGTH, AXES], description="32 samples x 3 axes")}
    preprocessor = Preprocessor(features, inputs)
    records, _ = sensor_windows(12_000, seed)
    windows = preprocessor.encode([_dumps(r) for r in records]).inputs["window"]
    size = WINDOW_LENGTH * AXES
    window_in = keras.Input((WINDOW_LENGTH, AXES), name="window")
    hidden = keras.layers.Flatten()(window_in)
    for width in (48, 12, 48):
        hidden = keras.layers.Dense(width, activation="tanh")(hidden)
    decoded = keras.layers.Reshape((WINDOW_LENGTH, AXES))(keras.layers.Dense(size)(hidden))
    model = keras.Model(window_in, decoded)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="mse")
    model.fit(windows[:10_000], windows[:10_000], epochs=15, batch_size=128, verbose=0)

    def score(window: Any) -> Any:
        return tf.reduce_mean(tf.square(window - model(window)), axis=[1, 2])

    normal_scores = score(windows[10_000:]).numpy()
    threshold = float(np.percentile(normal_scores, 99))
    test_records, test_labels = sensor_windows(2_000, seed + 100, anomaly_rate=0.1)
    test_scores = score(preprocessor.encode([_dumps(r) for r in test_records]).inputs["window"]).numpy()
    auc = roc_auc(test_labels, test_scores)
    print(f"sensor-anomaly v{version}: seed {seed}, threshold {threshold:.4f}, ROC AUC {auc:.3f}")

    metadata = ModelMetadata(
        name="sensor-anomaly",
        version=version,
        inputs=inputs,
        features=features,
        feature_inputs={"window": ["window"]},
        outputs={"anomaly_score": TensorInfo(shape=[None], description="mean squared reconstruction error")},
        output_schema=_schema({"anomaly_score": {"type": "number", "minimum": 0}}, ["normal", "anomaly"]),
        labels=LabelsSpec(output="anomaly_score", names=["normal", "anomaly"], threshold=round(threshold, 6)),
        description="Autoencoder anomaly score for a 32-sample, 3-axis sensor window (synthetic data).",
        training={"seed": seed, "windows": 10_000, "roc_auc": round(auc, 4), "epochs": 15},
    )
    export(lambda window: {"anomaly_score": score(window)}, model, [tf.TensorSpec(
        [None, WINDOW_LENGTH, AXES], tf.float32, name="window")], metadata, out)  # fmt: skip


def _schema(properties: dict[str, Any], label_names: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**properties, "label": {"type": "string", "enum": label_names}},
        "required": [*properties, "label"],
    }


def _dumps(record: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=HERE, help="models directory (default: this one)")
    args = parser.parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    train_fraud(1, seed=1, out=args.out / "fraud" / "1")
    train_fraud(2, seed=2, out=args.out / "fraud" / "2")
    train_sensor(1, seed=7, out=args.out / "sensor-anomaly" / "1")
    from train_shapes import train_shapes  # beside this file

    train_shapes(1, seed=5, out=args.out / "shapes" / "1", export=export)
    return 0


if __name__ == "__main__":
    sys.exit(main())
