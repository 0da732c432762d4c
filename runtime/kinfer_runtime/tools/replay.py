"""``kinfer replay PIPELINE.yaml``: re-inject dead-lettered records into the pipeline's input topic.

Reads a range of the dead-letter topic (offsets, times, partitions, error classes), shows what would be replayed
(``--dry-run``: counts by error class and a sample), and otherwise produces each selected record's original key,
value and headers to the input topic with ``kinfer.attempt`` and ``kinfer.replayed-from`` (docs/ingestion.md).
A record at ``spec.consumer.maxAttempts`` is not replayed; the range's end is fixed before reading, so a record
that fails again during the replay is never read back in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

from kinfer_runtime.kafka.topic_range import RangeBounds, plan_ranges, range_consumer, read_ranges
from kinfer_runtime.tools.produce import send_records
from kinfer_runtime.tools.progress import ProgressBar
from kinfer_runtime.tools.replay_plan import (
    DeadLetter,
    ReplayReport,
    Selection,
    parse_time_ms,
    replay_headers,
    skip_reason,
)
from kinfer_runtime.tools.sources import OutgoingRecord
from kinfer_runtime.tools.targets import add_kafka_arguments, bootstrap_servers, client_config, load_pipeline_file
from kinfer_runtime.tools.targets import pipeline_client_config as pipeline_settings


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kinfer replay", description=__doc__.splitlines()[0].replace("``", ""))
    add_kafka_arguments(parser, pipeline_positional=True)
    select = parser.add_argument_group("what to replay (all given conditions must hold)")
    select.add_argument("--partition", type=int, action="append", default=[], help="dead-letter partition (repeat)")
    select.add_argument("--from-offset", type=int, help="first dead-letter offset (inclusive, every partition)")
    select.add_argument("--to-offset", type=int, help="last dead-letter offset (inclusive, every partition)")
    select.add_argument("--since", help="records dead-lettered at or after: epoch ms, ISO 8601, or e.g. 2h (ago)")
    select.add_argument("--until", help="records dead-lettered before: epoch ms, ISO 8601, or e.g. 10m (ago)")
    select.add_argument("--error-class", action="append", default=[], help="only this kinfer.error.class (repeat)")
    select.add_argument("--limit", type=int, help="replay at most this many records")
    parser.add_argument("--dry-run", action="store_true", help="show what would be replayed; send nothing")
    parser.add_argument("--max-attempts", type=int, help="override spec.consumer.maxAttempts")
    parser.add_argument("--to-topic", help="replay into this topic instead of the pipeline's input topic")
    parser.add_argument("--rate", type=float, help="records per second to re-inject (default: unlimited)")
    parser.add_argument("--sample", type=int, default=5, help="how many records to show (default 5)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def selected_records(
    messages: Iterator[object], selection: Selection, report: ReplayReport, limit: int | None = None
) -> Iterator[OutgoingRecord]:
    """The records to re-inject, in dead-letter order; every record read is counted in ``report``.

    Reading stops at the ``limit``-th replayed record, so the report's next offsets are where to resume.
    """
    replayed = 0
    for message in messages:
        if limit is not None and replayed >= limit:
            return
        dead_letter = DeadLetter.from_message(message)
        reason = skip_reason(dead_letter, selection)
        report.add(dead_letter, reason)
        if reason is None:
            replayed += 1
            yield OutgoingRecord(value=dead_letter.value, key=dead_letter.key, headers=replay_headers(dead_letter))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        pipeline = load_pipeline_file(args.pipeline)
        bootstrap = bootstrap_servers(args.bootstrap_servers, pipeline)
        now_ms = int(time.time() * 1000)
        bounds = RangeBounds(
            partitions=frozenset(args.partition),
            from_offset=args.from_offset,
            to_offset=args.to_offset,
            since_ms=parse_time_ms(args.since, now_ms) if args.since else None,
            until_ms=parse_time_ms(args.until, now_ms) if args.until else None,
        )
        config = client_config(bootstrap, pipeline_settings(pipeline), args.config)
    except (OSError, ValueError) as error:
        print(f"kinfer replay: {error}", file=sys.stderr)
        return 2
    spec = pipeline.spec
    dlq_topic, target = spec.topics.dead_letter.name, args.to_topic or spec.topics.input.name
    selection = Selection(
        pipeline=pipeline.metadata.name,
        max_attempts=args.max_attempts or spec.consumer.max_attempts,
        error_classes=frozenset(args.error_class),
    )
    report = ReplayReport(sample_size=args.sample)
    consumer = range_consumer(config, "replay")
    try:
        ranges = plan_ranges(consumer, dlq_topic, bounds)
        total = sum(end - start for start, end in ranges.values())
        print(
            f"reading {total:,} dead-letter records from {dlq_topic} "
            f"({', '.join(f'p{p}:{s}-{e - 1}' for p, (s, e) in ranges.items()) or 'nothing in range'})",
            file=sys.stderr,
        )

        def stopped_early(positions: dict[int, int]) -> None:
            print(f"kinfer replay: no progress for a while, stopped at offsets {positions}", file=sys.stderr)

        messages = read_ranges(consumer, dlq_topic, ranges, on_idle=stopped_early)
        records = selected_records(messages, selection, report, args.limit)
        progress = ProgressBar(f"replay → {target}", total=total, enabled=not args.no_progress)
        if args.dry_run:
            for _ in records:
                progress.update(report.read)
            progress.finish()
            ok = True
        else:
            from confluent_kafka import Producer

            from kinfer_runtime.kafka.settings import RELIABLE_PRODUCER_SETTINGS

            producer = Producer(
                client_config(
                    bootstrap,
                    pipeline_settings(pipeline),
                    args.config,
                    {key: str(value).lower() for key, value in RELIABLE_PRODUCER_SETTINGS.items()},
                )
            )
            summary = send_records(producer, target, records, rate=args.rate, progress=progress)
            ok = summary.ok
    except (OSError, ValueError) as error:
        print(f"kinfer replay: {error}", file=sys.stderr)
        return 2
    finally:
        consumer.close()
    verb = "would replay" if args.dry_run else "replayed"
    print(report.table())
    if report.samples:
        print(f"\nsample of records {verb}:")
        print("\n".join("  " + line for line in report.sample_lines()))
    print(
        f"\n{verb} {report.total_replayable:,} of {report.read:,} dead-letter records into {target}"
        f" (max attempts {selection.max_attempts})"
    )
    if not args.dry_run:
        print(summary.describe())
    if report.next_offsets:
        resume = ", ".join(f"p{p}:{o}" for p, o in sorted(report.next_offsets.items()))
        print(f"next unread dead-letter offsets: {resume}")
    return 0 if ok else 1
