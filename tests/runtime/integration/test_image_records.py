"""Image records through ``kinfer produce FOLDER``, ``kinfer run`` and a real broker: the shapes model labels PNG
and JPEG images drawn apart from its training set (its accuracy is printed, and must be far above the 0.25 of
chance); corrupt, truncated and empty images are dead-lettered with their original bytes and ``ImageDecodeError``
or ``EmptyValue``; nothing is lost."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import orjson
from PIL import Image

from kinfer_runtime.tools import produce as produce_tool
from kinfer_runtime.tools.synthetic import SHAPES, shape_images
from tests.runtime.integration.format_runs import dead_letter_reasons, score_once
from tests.runtime.integration.harness import create_topics, manifest, produce
from tests.testbed import REPO_ROOT

MODEL = REPO_ROOT / "models" / "shapes"
COUNT = 400


def encoded(pixels: np.ndarray, kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=kind, **({"quality": 90} if kind == "JPEG" else {}))
    return buffer.getvalue()


def test_images_in_labels_out_and_corrupt_images_dead_lettered_unchanged(kafka_bootstrap: str, tmp_path: Path) -> None:
    images, labels = shape_images(COUNT, seed=777)  # the model was trained on seed 5's images
    folder = tmp_path / "images"
    folder.mkdir()
    names = [f"img-{n:04d}.{'jpg' if n % 2 else 'png'}" for n in range(COUNT)]
    for name, image in zip(names, images, strict=True):
        (folder / name).write_bytes(encoded(image, "JPEG" if name.endswith("jpg") else "PNG"))
    png = encoded(images[0], "PNG")
    bad = {
        b"bad-ImageDecodeError-truncated": png[: len(png) // 3],
        b"bad-ImageDecodeError-text": b"this is not an image",
        b"bad-EmptyValue": b"",
    }
    topics = create_topics(kafka_bootstrap, partitions=2, prefix="image")
    produce(kafka_bootstrap, topics.input, list(bad.items()))
    sent = ["--topic", topics.input, "--bootstrap-servers", kafka_bootstrap, "--no-progress"]
    assert produce_tool.main([str(folder), *sent]) == 0  # kinfer produce FOLDER: one record per image file
    pipeline = manifest("images", kafka_bootstrap, topics, model="shapes", preprocessing={"format": "image"})
    reader = score_once(pipeline, tmp_path, kafka_bootstrap, MODEL, topics, outputs=COUNT, dead_letters=len(bad))
    for key, reason in dead_letter_reasons(reader, topics.dead_letter, bad).items():
        assert key.decode().startswith(f"bad-{reason}"), (key, reason)
    predicted = {m.key(): orjson.loads(m.value())["prediction"]["label"] for m in reader.seen[topics.output].messages}
    assert set(predicted) == {name.encode() for name in names}
    right = sum(predicted[name.encode()] == SHAPES[label] for name, label in zip(names, labels, strict=True))
    print(f"shapes model on {COUNT} images it was not trained on (half JPEG): accuracy {right / COUNT:.3f}")
    assert right / COUNT > 0.9, f"accuracy {right / COUNT:.3f}"


def test_images_as_base64_in_a_json_field_sent_by_kinfer_produce_with_the_pipeline(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``image.field``: ``kinfer produce FOLDER --pipeline`` sends each image as base64 in that field of a JSON
    object; the pipeline labels them as it labels the bytes, and dead-letters what is not such a record."""
    import yaml

    count = 120
    images, labels = shape_images(count, seed=778)
    folder = tmp_path / "images"
    folder.mkdir()
    names = [f"img-{n:04d}.png" for n in range(count)]
    for name, image in zip(names, images, strict=True):
        (folder / name).write_bytes(encoded(image, "PNG"))
    bad = {
        b"bad-MalformedJson": encoded(images[0], "PNG"),  # the bytes alone, not the JSON the pipeline reads
        b"bad-MissingField": orjson.dumps({"camera": 3}),
        b"bad-ImageDecodeError": orjson.dumps({"image": "bm90IGFuIGltYWdl"}),  # base64 of "not an image"
    }
    topics = create_topics(kafka_bootstrap, partitions=2, prefix="image64")
    produce(kafka_bootstrap, topics.input, list(bad.items()))
    preprocessing = {"format": "image", "image": {"field": "image"}}
    pipeline = manifest("images64", kafka_bootstrap, topics, model="shapes", preprocessing=preprocessing)
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    sent = ["--pipeline", str(tmp_path / "pipeline.yaml"), "--bootstrap-servers", kafka_bootstrap, "--no-progress"]
    assert produce_tool.main([str(folder), *sent]) == 0
    reader = score_once(pipeline, tmp_path, kafka_bootstrap, MODEL, topics, outputs=count, dead_letters=len(bad))
    for key, reason in dead_letter_reasons(reader, topics.dead_letter, bad).items():
        assert key.decode() == f"bad-{reason}"
    predicted = {m.key(): orjson.loads(m.value())["prediction"]["label"] for m in reader.seen[topics.output].messages}
    right = sum(predicted[name.encode()] == SHAPES[label] for name, label in zip(names, labels, strict=True))
    print(f"shapes model on {count} base64 images in a JSON field: accuracy {right / count:.3f}")
    assert right / count > 0.9, f"accuracy {right / count:.3f}"
