"""The image example model, ``models/shapes/1``: a small CNN that tells which shape (circle, square, triangle,
cross) a 32x32 RGB image shows, trained on images drawn by ``kinfer_runtime.tools.synthetic.shape_images``
(seeded, so ``make models`` gives the same model). Called by ``models/train.py``.

Its input ``image`` is float32 [None, 32, 32, 3] in [0, 1]: what ``spec.preprocessing.format: image`` makes of a
PNG or JPEG record (decode, resize, scale by 1/255), and what an ``array`` feature of shape [32, 32, 3] makes of
a JSON record of the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kinfer_runtime.spec import FeatureSpec
from kinfer_runtime.spec.model_metadata import LabelsSpec, ModelMetadata, TensorInfo
from kinfer_runtime.tools.synthetic import IMAGE_SIZE, SHAPES, shape_images

TRAIN, HELD_OUT, EPOCHS = 6_000, 1_000, 6


def train_shapes(version: int, seed: int, out: Path, export: Any) -> float:
    """Train, export to ``out`` with ``export`` (train.py's), and return the accuracy on held-out images."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    images, labels = shape_images(TRAIN, seed)
    held_out, held_out_labels = shape_images(HELD_OUT, seed + 1000)
    image_in = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    hidden = image_in
    for filters in (12, 24):
        hidden = keras.layers.Conv2D(filters, 3, activation="relu", padding="same")(hidden)
        hidden = keras.layers.MaxPooling2D()(hidden)
    hidden = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(hidden)
    hidden = keras.layers.GlobalMaxPooling2D()(hidden)
    probabilities = keras.layers.Dense(len(SHAPES), activation="softmax")(hidden)
    model = keras.Model(image_in, probabilities)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(images / 255.0, labels, epochs=EPOCHS, batch_size=64, verbose=0)
    predicted = np.argmax(model.predict(held_out / 255.0, verbose=0), axis=1)
    accuracy = float(np.mean(predicted == held_out_labels))
    print(f"shapes v{version}: seed {seed}, held-out accuracy {accuracy:.3f} ({HELD_OUT} images, chance 0.25)")

    shape = [IMAGE_SIZE, IMAGE_SIZE, 3]
    metadata = ModelMetadata(
        name="shapes",
        version=version,
        inputs={"image": TensorInfo(shape=[None, *shape], description="RGB image, 32x32, values in [0, 1]")},
        features=[FeatureSpec(name="image", type="array", required=True, shape=shape)],
        feature_inputs={"image": ["image"]},
        outputs={"probabilities": TensorInfo(shape=[None, len(SHAPES)], description="one per shape, summing to 1")},
        output_schema={
            "type": "object",
            "properties": {
                "probabilities": {"type": "array", "items": {"type": "number"}},
                "label": {"type": "string", "enum": SHAPES},
            },
            "required": ["probabilities", "label"],
        },
        labels=LabelsSpec(output="probabilities", names=SHAPES),
        description="Which shape a 32x32 RGB image shows: circle, square, triangle or cross (synthetic images).",
        training={"seed": seed, "images": TRAIN, "epochs": EPOCHS, "held_out_accuracy": round(accuracy, 4)},
    )
    signature = [tf.TensorSpec([None, *shape], tf.float32, name="image")]
    export(lambda image: {"probabilities": model(image)}, model, signature, metadata, out)
    return accuracy
