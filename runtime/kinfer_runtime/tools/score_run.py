"""One ``kinfer score`` run: what it reads, where its results go, and how far it got (its progress commits).

Kept apart from the scoring (tools/score.py) so that each output (a file: tools/score_sinks.py; a topic:
tools/score_topic.py) and the progress of a batch run (tools/batch_progress.py) meet in one place.
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kinfer_runtime.kafka.topic_range import RangeBounds, plan_ranges, range_consumer, read_ranges
from kinfer_runtime.spec import InferencePipeline
from kinfer_runtime.tools.batch_progress import ProgressCommits, read_committed, recorded_ranges, resume_ranges
from kinfer_runtime.tools.replay_plan import parse_time_ms
from kinfer_runtime.tools.score_inputs import ScoreInput, file_inputs, topic_inputs
from kinfer_runtime.tools.score_sinks import ScoreWriter
from kinfer_runtime.tools.score_topic import BatchTimings, TopicSink
from kinfer_runtime.tools.sources import check_readable, count_lines, detect_format
from kinfer_runtime.tools.targets import bootstrap_servers, client_config, load_pipeline_file
from kinfer_runtime.tools.targets import pipeline_client_config as pipeline_settings


@dataclass
class Run:
    """What one ``kinfer score`` reads and where its results go."""

    pipeline: InferencePipeline
    inputs: Iterable[ScoreInput]
    total: int | None
    writer: ScoreWriter | None = None
    sink: TopicSink | None = None
    commits: ProgressCommits | None = None
    consumer: Any = None


def open_run(args: argparse.Namespace, timings: BatchTimings) -> Run:
    """Plans the run: OSError or ValueError for what the user must fix (a missing file, an unknown topic)."""
    pipeline = load_pipeline_file(args.pipeline)
    if args.input:
        fmt = detect_format(args.input, args.format)
        check_readable(args.input)
        total = None if args.no_progress else count_lines(args.input, fmt)
        return Run(pipeline, file_inputs(args.input, fmt, pipeline), total, ScoreWriter.open(args.output))
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
    consumer = range_consumer(config, "score", group=args.progress_group)
    planned = plan_ranges(consumer, topic, bounds)
    ranges, commits = planned, None
    if args.progress_group:
        partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        committed = read_committed(consumer, topic, partitions)
        recorded = recorded_ranges(planned, committed) if args.output_topic else planned
        ranges = resume_ranges(recorded, committed) if args.output_topic else planned
        commits = ProgressCommits(consumer, topic, recorded, ranges)
        commits.commit()  # the operator shows the run's size (and a resumed run's progress) at once
    run = Run(pipeline, topic_inputs(read_ranges(consumer, topic, ranges)), sum(e - s for s, e in ranges.values()))
    run.consumer, run.commits = consumer, commits
    if args.output_topic:
        from confluent_kafka import Producer

        from kinfer_runtime.kafka.settings import RELIABLE_PRODUCER_SETTINGS

        reliable = {key: str(value).lower() for key, value in RELIABLE_PRODUCER_SETTINGS.items()}
        producer = Producer(
            client_config(config["bootstrap.servers"], pipeline_settings(pipeline), args.config, reliable)
        )
        spec = pipeline.spec
        run.sink = TopicSink(
            producer, pipeline.metadata.name, spec.model.name, args.output_topic, spec.topics.dead_letter.name, timings
        )
    else:
        run.writer = ScoreWriter.open(args.output)
    return run


def with_inputs(
    inputs: Iterable[ScoreInput], score: Callable[[Iterable[ScoreInput]], Iterable[dict[str, Any]]]
) -> Iterator[tuple[ScoreInput, dict[str, Any]]]:
    """Each result of ``score(inputs)`` with the input it is for (the scorer yields one result per input, in
    order, after reading its batch)."""
    read: collections.deque[ScoreInput] = collections.deque()

    def kept() -> Iterator[ScoreInput]:
        for item in inputs:
            read.append(item)
            yield item

    for result in score(kept()):
        yield read.popleft(), result


def write_result(run: Run, item: ScoreInput, result: dict[str, Any]) -> None:
    if run.sink is not None:
        run.sink.write(result, item.value, item.key, item.headers)
    else:
        assert run.writer is not None
        run.writer.write(result)
    if run.commits is not None:
        run.commits.record(result["source"])
        if run.commits.due():
            finish_output(run)


def finish_output(run: Run) -> None:
    """Makes what is written so far durable (every delivery acknowledged), then commits progress past it."""
    if run.sink is not None:
        run.sink.flush()
    if run.commits is not None:
        run.commits.commit()
