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
from pathlib import Path
from typing import Any

import orjson

from kinfer_runtime.spec import InferencePipeline
from kinfer_runtime.tools.progress import ProgressBar
from kinfer_runtime.tools.score_inputs import ScoreInput
from kinfer_runtime.tools.score_run import finish_output, open_run, with_inputs, write_result
from kinfer_runtime.tools.score_topic import BatchTimings
from kinfer_runtime.tools.sources import FORMATS
from kinfer_runtime.tools.targets import add_kafka_arguments


def score_batches(
    pipeline: InferencePipeline,
    inputs: Iterable[ScoreInput],
    predictor: Any,
    batch_size: int,
    timings: BatchTimings | None = None,
) -> Iterator[dict[str, Any]]:
    """One result dict per input, in order; the preprocessor follows the model version actually loaded.
    ``timings``: set to each batch's stage times before its results are yielded."""
    from kinfer_runtime.preprocess.formats import build_preprocessor
    from kinfer_runtime.records.predictions import format_outputs

    metadata = predictor.metadata
    preprocessor = build_preprocessor(pipeline.spec, metadata)
    model = {"name": pipeline.spec.model.name, "version": predictor.model_version}
    iterator = iter(inputs)
    while batch := list(itertools.islice(iterator, batch_size)):
        started = time.perf_counter()
        encoded = preprocessor.encode([item.value for item in batch])
        encoded_at = time.perf_counter()
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
                if timings is not None:
                    timings.preprocess_ms = (encoded_at - started) * 1000
                    timings.predict_ms = (time.perf_counter() - encoded_at) * 1000
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
    topic.add_argument(
        "--progress-group",
        help="commit progress to this consumer group (never a live one); with --output-topic, a second run with "
        "the same group resumes where the first stopped, over the range the first planned",
    )
    output = parser.add_mutually_exclusive_group(required=True)
    output.add_argument("--output", help="predictions file: .jsonl (or -), or .parquet")
    output.add_argument(
        "--output-topic",
        help="publish as the live pipeline does (with --topic-range): outputs to this topic, records it would "
        "dead-letter to its dead-letter topic",
    )
    parser.add_argument("--model-path", type=Path, help="local model directory (<dir>/<version>/saved_model.pb)")
    parser.add_argument("--tfserving-endpoint", help="host:port of TF Serving (tfserving mode)")
    parser.add_argument("--batch-size", type=int, help="records per model call (default: spec maxBatchSize)")
    parser.add_argument("--limit", type=int, help="score at most this many records")
    parser.add_argument("--summary-file", help="write the counts as one JSON object here at the end")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if (args.output_topic or args.progress_group) and not args.topic_range:
        parser.error("--output-topic and --progress-group need --topic-range")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    timings = BatchTimings()
    try:
        run = open_run(args, timings)
    except (OSError, ValueError) as error:
        print(f"kinfer score: {error}", file=sys.stderr)
        return 2
    inputs, total = run.inputs, run.total
    if args.limit is not None:
        total = min(total, args.limit) if total is not None else None
        inputs = itertools.islice(inputs, args.limit)
    from kinfer_runtime.predictors import build_predictor

    pipeline = run.pipeline
    predictor = build_predictor(pipeline, model_path=args.model_path, tfserving_endpoint=args.tfserving_endpoint)
    predictor.load()
    progress = ProgressBar("score", total=total, enabled=not args.no_progress)
    outcomes: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    started = time.monotonic()
    try:
        batch_size = args.batch_size or pipeline.spec.consumer.max_batch_size
        for item, result in with_inputs(
            inputs, lambda items: score_batches(pipeline, items, predictor, batch_size, timings)
        ):
            write_result(run, item, result)
            outcomes[result["error"]["class"] if "error" in result else "scored"] += 1
            if "model" in result:
                versions[str(result["model"]["version"])] += 1
            progress.update(sum(outcomes.values()))
        finish_output(run)
    finally:
        if run.writer is not None:
            run.writer.close()
        predictor.close()
        if run.consumer is not None:
            run.consumer.close()
    progress.finish()
    elapsed = time.monotonic() - started
    destination = args.output or f"topic {args.output_topic}"
    print(describe_outcomes(outcomes, elapsed, destination), file=sys.stderr)
    if args.summary_file:
        write_summary(args.summary_file, outcomes, versions, elapsed)
    return 0


def write_summary(path: str, outcomes: Counter[str], versions: Counter[str], elapsed_s: float) -> None:
    """The counts as one JSON object: what the operator shows in the pipeline's status (a Job's pod writes it to
    its termination message)."""
    summary = {
        "records": sum(outcomes.values()),
        "scored": outcomes.get("scored", 0),
        "failed": {name: count for name, count in sorted(outcomes.items()) if name != "scored"},
        "modelVersions": dict(sorted(versions.items())),
        "seconds": round(elapsed_s, 3),
    }
    Path(path).write_bytes(orjson.dumps(summary) + b"\n")


def describe_outcomes(outcomes: Counter[str], elapsed_s: float, output: str) -> str:
    """``scored 98 of 100 records in 1.20 s → out.jsonl; not scorable: MalformedJson 2``."""
    scored = outcomes.get("scored", 0)
    failed = ", ".join(f"{name} {count:,}" for name, count in outcomes.most_common() if name != "scored")
    line = f"scored {scored:,} of {sum(outcomes.values()):,} records in {elapsed_s:.2f} s → {output}"
    return line + (f"; not scorable: {failed}" if failed else "")
