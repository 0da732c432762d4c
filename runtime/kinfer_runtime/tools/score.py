"""``kinfer score PIPELINE.yaml``: run a file or a topic range through the pipeline's preprocessing and model.

The same code as the live pipeline does the work (``build_preprocessor``, ``build_predictor``,
``format_outputs``), so a record scores exactly as it would live. A topic range is read by a consumer with
manually assigned partitions and a throwaway group that never commits: the live consumer group is not touched.
Each input gives one output line, in input order: ``{"prediction", "model", "source"}`` for a scored record, or
``{"error": {"class", "message"}, "source"}`` for one the live pipeline would dead-letter.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinfer_runtime.kafka.topic_range import RangeBounds, plan_ranges, range_consumer, read_ranges
from kinfer_runtime.spec import AvroFraming, InferencePipeline
from kinfer_runtime.tools.progress import ProgressBar
from kinfer_runtime.tools.replay_plan import parse_time_ms
from kinfer_runtime.tools.score_sinks import ScoreWriter
from kinfer_runtime.tools.sources import FORMATS, check_readable, count_lines, detect_format, read_records
from kinfer_runtime.tools.targets import add_kafka_arguments, bootstrap_servers, client_config, load_pipeline_file
from kinfer_runtime.tools.targets import pipeline_client_config as pipeline_settings


@dataclass(frozen=True)
class ScoreInput:
    """One record to score: its value bytes, exactly as the live pipeline would consume them, and its origin."""

    value: bytes | None
    source: dict[str, Any]
    key: bytes | None = None


def file_inputs(path: str, fmt: str, pipeline: InferencePipeline | None = None) -> Iterator[ScoreInput]:
    """Records of a file as ``kinfer produce`` would send them: JSONL lines verbatim, CSV and Parquet rows as
    JSON, Avro records framed as the pipeline reads them."""
    avro = pipeline.spec.preprocessing.avro if pipeline is not None else None
    framed = avro is not None and avro.framing is AvroFraming.CONFLUENT
    schema_id = (avro.schema_id or 0) if avro is not None and framed else None
    for number, record in enumerate(read_records(path, fmt, schema_id=schema_id), start=1):
        yield ScoreInput(record.value, {"file": path, "record": number})


def topic_inputs(messages: Iterable[Any]) -> Iterator[ScoreInput]:
    for message in messages:
        timestamp_type, timestamp_ms = message.timestamp()
        source = {
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "timestamp_ms": timestamp_ms if timestamp_type and timestamp_ms > 0 else None,
        }
        yield ScoreInput(message.value(), source, message.key())


def score_batches(
    pipeline: InferencePipeline,
    inputs: Iterable[ScoreInput],
    predictor: Any,
    batch_size: int,
) -> Iterator[dict[str, Any]]:
    """One result dict per input, in order; the preprocessor follows the model version actually loaded."""
    from kinfer_runtime.preprocess.formats import build_preprocessor
    from kinfer_runtime.records.predictions import format_outputs

    metadata = predictor.metadata
    preprocessor = build_preprocessor(pipeline.spec, metadata)
    model = {"name": pipeline.spec.model.name, "version": predictor.model_version}
    iterator = iter(inputs)
    while batch := list(itertools.islice(iterator, batch_size)):
        encoded = preprocessor.encode([item.value for item in batch])
        results: list[dict[str, Any] | None] = [None] * len(batch)
        for failure in encoded.failures:
            results[failure.index] = {"error": {"class": str(failure.reason), "message": failure.message}}
        if encoded.ok:
            try:
                prediction = predictor.predict(encoded.inputs)
            except Exception as error:  # the live loop dead-letters the batch as PredictionFailed
                for index in encoded.ok:
                    results[index] = {"error": {"class": "PredictionFailed", "message": str(error)[:1000]}}
            else:
                version_model = {**model, "version": prediction.model_version}
                for index, row in zip(encoded.ok, format_outputs(prediction, metadata), strict=True):
                    results[index] = {"prediction": row, "model": version_model}
        for item, result in zip(batch, results, strict=True):
            assert result is not None  # every input is either ok or a failure
            if item.key is not None:
                result["key"] = item.key.decode("utf-8", "replace")
            result["source"] = item.source
            yield result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kinfer score", description=__doc__.splitlines()[0].replace("``", ""))
    add_kafka_arguments(parser, pipeline_positional=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input", help="JSONL, CSV, Parquet, .npy or Avro file, or a folder of images (- for JSONL on stdin)"
    )
    source.add_argument("--topic-range", action="store_true", help="score a range of a topic (default: the input)")
    parser.add_argument("--format", choices=FORMATS, help="input file format (default: from the extension)")
    topic = parser.add_argument_group("topic range (with --topic-range)")
    topic.add_argument("--topic", help="topic to read (default: the pipeline's input topic)")
    topic.add_argument("--partition", type=int, action="append", default=[], help="partition (repeat)")
    topic.add_argument("--from-offset", type=int, help="first offset (inclusive)")
    topic.add_argument("--to-offset", type=int, help="last offset (inclusive)")
    topic.add_argument("--since", help="records at or after: epoch ms, ISO 8601, or e.g. 2h (ago)")
    topic.add_argument("--until", help="records before: epoch ms, ISO 8601, or e.g. 10m (ago)")
    parser.add_argument("--output", required=True, help="predictions file: .jsonl (or -), or .parquet")
    parser.add_argument("--model-path", type=Path, help="local model directory (<dir>/<version>/saved_model.pb)")
    parser.add_argument("--tfserving-endpoint", help="host:port of TF Serving (tfserving mode)")
    parser.add_argument("--batch-size", type=int, help="records per model call (default: spec maxBatchSize)")
    parser.add_argument("--limit", type=int, help="score at most this many records")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    consumer = None
    try:
        pipeline = load_pipeline_file(args.pipeline)
        writer = ScoreWriter.open(args.output)
        if args.input:
            fmt = detect_format(args.input, args.format)
            check_readable(args.input)
            inputs: Iterable[ScoreInput] = file_inputs(args.input, fmt, pipeline)
            total = None if args.no_progress else count_lines(args.input, fmt)
        else:
            config = client_config(
                bootstrap_servers(args.bootstrap_servers, pipeline), pipeline_settings(pipeline), args.config
            )
            topic = args.topic or pipeline.spec.topics.input.name
            now_ms = int(time.time() * 1000)
            bounds = RangeBounds(
                frozenset(args.partition),
                args.from_offset,
                args.to_offset,
                parse_time_ms(args.since, now_ms) if args.since else None,
                parse_time_ms(args.until, now_ms) if args.until else None,
            )
            consumer = range_consumer(config, "score")
            ranges = plan_ranges(consumer, topic, bounds)
            total = sum(end - start for start, end in ranges.values())
            inputs = topic_inputs(read_ranges(consumer, topic, ranges))
    except (OSError, ValueError) as error:
        print(f"kinfer score: {error}", file=sys.stderr)
        return 2
    if args.limit is not None:
        total = min(total, args.limit) if total is not None else None
        inputs = itertools.islice(inputs, args.limit)
    from kinfer_runtime.predictors import build_predictor

    predictor = build_predictor(pipeline, model_path=args.model_path, tfserving_endpoint=args.tfserving_endpoint)
    predictor.load()
    progress = ProgressBar("score", total=total, enabled=not args.no_progress)
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    try:
        batch_size = args.batch_size or pipeline.spec.consumer.max_batch_size
        for result in score_batches(pipeline, inputs, predictor, batch_size):
            writer.write(result)
            outcomes[result["error"]["class"] if "error" in result else "scored"] += 1
            progress.update(sum(outcomes.values()))
    finally:
        writer.close()
        predictor.close()
        if consumer is not None:
            consumer.close()
    progress.finish()
    print(describe_outcomes(outcomes, time.monotonic() - started, args.output), file=sys.stderr)
    return 0


def describe_outcomes(outcomes: Counter[str], elapsed_s: float, output: str) -> str:
    """``scored 98 of 100 records in 1.20 s → out.jsonl; not scorable: MalformedJson 2``."""
    scored = outcomes.get("scored", 0)
    failed = ", ".join(f"{name} {count:,}" for name, count in outcomes.most_common() if name != "scored")
    line = f"scored {scored:,} of {sum(outcomes.values()):,} records in {elapsed_s:.2f} s → {output}"
    return line + (f"; not scorable: {failed}" if failed else "")
