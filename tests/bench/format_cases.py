"""The bench's record-format cases: (d-avro), the fraud transactions as Confluent-framed Avro records beside
JSON, and (d-image), the shapes model on PNG images (records/s, input MB/s, end-to-end latency at a fixed rate)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench import kafka_io
from tests.bench.kinfer_case import Topics, percentile, run_latency, run_throughput

ROOT = Path(__file__).resolve().parents[2]
FRAUD_MODEL_DIR, SHAPES_MODEL_DIR = ROOT / "models" / "fraud", ROOT / "models" / "shapes"
IMAGE_RECORDS, IMAGE_RATE = 10_000, 1_000.0  # images are larger and slower than transactions: fewer of them

Pipeline = Callable[[str, Topics, str], dict[str, Any]]


def step(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def avro_case(bootstrap: str, names: dict[str, str], parts: int, count: int, records: list[dict[str, Any]],
              keys: list[bytes], work: Path, kinfer_pipeline: Pipeline) -> dict[str, float]:  # fmt: skip
    from kinfer_runtime.tools.synthetic import FRAUD_TRANSACTION_AVRO_SCHEMA

    step("(d-avro) kinfer run, at-least-once, the same transactions as Avro records (Confluent framing)")
    values = avro_records(records)
    kafka_io.fill_topic(bootstrap, names["v-in"], values, keys, count)
    topics = Topics(names["v-in"], names["v"], names["v-dlq"], parts)
    pipeline = kinfer_pipeline("avro", topics, "atLeastOnce")
    avro = {"writerSchema": json.dumps(FRAUD_TRANSACTION_AVRO_SCHEMA), "schemaId": 1}
    pipeline["spec"]["preprocessing"] = {"format": "avro", "avro": avro}
    run = run_throughput(bootstrap, topics, count, pipeline, work, FRAUD_MODEL_DIR)
    figures = {"kinfer_avro_rps": run["rps"], "record_bytes_avro": sum(map(len, values)) / len(values)}
    figures.update({f"kinfer_avro_{k}": v for k, v in run.items() if k.startswith("stage_")})
    return figures


def avro_records(records: list[dict[str, Any]]) -> list[bytes]:
    """The records as Confluent-framed Avro (schema id 1), as a producer with a registry would write them."""
    from fastavro import parse_schema, schemaless_writer

    from kinfer_runtime.tools.synthetic import FRAUD_TRANSACTION_AVRO_SCHEMA

    schema = parse_schema(FRAUD_TRANSACTION_AVRO_SCHEMA)
    encoded = []
    for record in records:
        buffer = io.BytesIO()
        buffer.write(b"\x00\x00\x00\x00\x01")
        schemaless_writer(buffer, schema, record)
        encoded.append(buffer.getvalue())
    return encoded


def image_case(bootstrap: str, names: dict[str, str], parts: int, work: Path,
               kinfer_pipeline: Pipeline) -> dict[str, float]:  # fmt: skip
    """(d-image): records/s and input MB/s, then the end-to-end latency at IMAGE_RATE images/s offered."""
    from kinfer_runtime.tools.synthetic import shape_images

    step(f"(d-image) kinfer run, at-least-once, the shapes model on {IMAGE_RECORDS:,} PNG images (format image)")
    images, _ = shape_images(2_000, seed=99)
    pngs = [png(image) for image in images]
    kafka_io.fill_topic(bootstrap, names["i-in"], pngs, [f"img-{n}".encode() for n in range(len(pngs))],
                        IMAGE_RECORDS)  # fmt: skip
    topics = Topics(names["i-in"], names["i"], names["i-dlq"], parts)
    run = run_throughput(bootstrap, topics, IMAGE_RECORDS, image_pipeline(kinfer_pipeline("image", topics,
                         "atLeastOnce")), work, SHAPES_MODEL_DIR)  # fmt: skip
    mean_bytes = sum(map(len, pngs)) / len(pngs)
    figures = {
        "kinfer_image_rps": run["rps"],
        "record_bytes_image": mean_bytes,
        "kinfer_image_mb_per_s": run["rps"] * mean_bytes / 1e6,
        "kinfer_image_rss_mb": run["rss_mb"],
    }
    figures.update({f"kinfer_image_{k}": v for k, v in run.items() if k.startswith("stage_")})
    step(f"(d-image) end-to-end latency at {IMAGE_RATE:,.0f} images/s offered")
    topics = Topics(names["il-in"], names["il"], names["il-dlq"], parts)
    pipeline = image_pipeline(kinfer_pipeline("image-lat", topics, "atLeastOnce"))
    phases = [("warm-up", IMAGE_RATE, 2.0), ("rate", IMAGE_RATE, 6.0)]
    latency, _ = run_latency(bootstrap, topics, pipeline, work, SHAPES_MODEL_DIR, phases, pngs)
    for q in (50, 99):
        figures[f"kinfer_image_p{q}_ms_at_{IMAGE_RATE:.0f}"] = percentile(latency["rate"], q)
    return figures


def image_pipeline(pipeline: dict[str, Any]) -> dict[str, Any]:
    model = {"name": "shapes", "uri": "pvc://models/shapes", "versionPolicy": "Pinned", "version": 1}
    pipeline["spec"]["model"] = model
    pipeline["spec"]["preprocessing"] = {"format": "image"}
    return pipeline


def png(pixels: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
