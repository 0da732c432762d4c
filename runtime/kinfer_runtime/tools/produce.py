"""``kinfer produce``: send JSONL, CSV or Parquet records from a file or stdin to a topic, at a target rate.

``send_records`` is the reusable part (the demo's traffic generator calls it too): it paces records with a token
bucket, serves delivery reports while it sends, and counts a record as delivered only when the broker acked it.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kinfer_runtime.spec import AvroFraming
from kinfer_runtime.tools.progress import ProgressBar
from kinfer_runtime.tools.sources import (
    FORMATS,
    OutgoingRecord,
    check_readable,
    count_lines,
    detect_format,
    read_records,
)
from kinfer_runtime.tools.targets import add_kafka_arguments, client_config, load_pipeline_file, resolve_target

POLL_EVERY = 64  # serve delivery reports every N produce calls: often enough to keep the queue short


class TokenBucket:
    """Paces a sender to ``rate`` records/s with bursts up to ``burst`` records; ``take`` says how long to wait."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        # 50 ms of traffic by default: smooth enough for a latency benchmark, coarse enough to sleep rarely.
        self.burst = burst if burst is not None else max(1.0, rate / 20)
        self.clock = clock
        self.tokens = self.burst
        self.updated = clock()

    def take(self, n: int = 1) -> float:
        """Takes n tokens (possibly into debt) and returns the seconds to wait before sending them."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass
class ProduceSummary:
    """What happened: ``delivered`` and ``failed`` come only from delivery reports; the rest never got one."""

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def unacknowledged(self) -> int:
        return self.sent - self.delivered - self.failed

    @property
    def rate(self) -> float:
        """Delivered records per second."""
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.unacknowledged == 0 and not self.interrupted

    def describe(self) -> str:
        line = (
            f"sent {self.sent:,}, delivered {self.delivered:,}, failed {self.failed:,}"
            f"{f', unacknowledged {self.unacknowledged:,}' if self.unacknowledged else ''}"
            f" in {self.elapsed_s:.2f} s ({self.rate:,.0f} records/s)"
        )
        if self.interrupted:
            line += " (interrupted)"
        for error, count in self.errors.most_common(3):
            line += f"\n  {count:,} x {error}"
        return line


def send_records(
    producer: Any,
    topic: str,
    records: Iterable[OutgoingRecord],
    *,
    rate: float | None = None,
    progress: ProgressBar | None = None,
    flush_timeout_s: float = 60.0,
    should_stop: Callable[[], bool] | None = None,
) -> ProduceSummary:
    """Produces every record to ``topic`` (paced to ``rate`` records/s if given), then flushes and summarises.

    Ctrl-C stops sending new records; those already sent are still flushed and counted.
    """
    summary = ProduceSummary()

    def on_delivery(error: Any, _message: Any) -> None:
        if error is None:
            summary.delivered += 1
        else:
            summary.failed += 1
            summary.errors[str(error)] += 1

    bucket = TokenBucket(rate) if rate else None
    started = time.monotonic()
    try:
        for record in records:
            if should_stop is not None and should_stop():
                summary.interrupted = True
                break
            if bucket is not None:
                _serve_reports_for(producer, bucket.take())
            _produce_one(producer, topic, record, on_delivery)
            summary.sent += 1
            if summary.sent % POLL_EVERY == 0:
                producer.poll(0)
                if progress is not None:
                    progress.update(summary.sent, f"acked {summary.delivered:,} failed {summary.failed:,}")
    except KeyboardInterrupt:
        summary.interrupted = True
    producer.flush(flush_timeout_s)
    summary.elapsed_s = time.monotonic() - started
    if progress is not None:
        progress.update(summary.sent, f"acked {summary.delivered:,} failed {summary.failed:,}")
        progress.finish()
    return summary


def _serve_reports_for(producer: Any, wait_s: float) -> None:
    """Waits ``wait_s`` seconds while serving delivery reports (poll returns early when one arrives)."""
    deadline = time.monotonic() + wait_s
    while (remaining := deadline - time.monotonic()) > 0:
        producer.poll(remaining)


def _produce_one(producer: Any, topic: str, record: OutgoingRecord, on_delivery: Callable[[Any, Any], None]) -> None:
    while True:
        try:
            producer.produce(
                topic, value=record.value, key=record.key, headers=record.headers or None, on_delivery=on_delivery
            )
            return
        except BufferError:
            # The local queue is full: wait for acks to drain it rather than dropping the record.
            producer.poll(0.1)


def schema_id(args: argparse.Namespace) -> int | None:
    """The Confluent schema id to frame Avro records with: ``--schema-id``, else the pipeline's, else none."""
    if args.schema_id is not None or not args.pipeline:
        return int(args.schema_id) if args.schema_id is not None else None
    avro = load_pipeline_file(args.pipeline).spec.preprocessing.avro
    return avro.schema_id or 0 if avro is not None and avro.framing is AvroFraming.CONFLUENT else None


def image_field(args: argparse.Namespace) -> str | None:
    """The pipeline's ``image.field``: images are then sent as base64 in that field of a JSON object."""
    if not args.pipeline:
        return None
    image = load_pipeline_file(args.pipeline).spec.preprocessing.image
    return image.field if image is not None else None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kinfer produce", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument(
        "file",
        nargs="?",
        default="-",
        help="JSONL, CSV, Parquet, .npy or Avro file, or a folder of images; - (default) for JSONL on stdin",
    )
    add_kafka_arguments(parser)
    parser.add_argument("--topic", help="target topic (default: the pipeline's input topic)")
    parser.add_argument(
        "--format", choices=FORMATS, help="input format (default: from the file extension; stdin: jsonl)"
    )
    parser.add_argument("--key-field", help="use this field of each record as the record key")
    parser.add_argument(
        "--schema-id",
        type=int,
        help="Avro files: frame each record as Confluent's serializers do, with this schema id (default: the "
        "pipeline's preprocessing.avro.schemaId with framing confluent, else the bare Avro body)",
    )
    parser.add_argument("--rate", type=float, help="target records per second (default: as fast as possible)")
    parser.add_argument("--limit", type=int, help="send at most this many records")
    parser.add_argument("--header", action="append", default=[], metavar="NAME=VALUE", help="add a header to all")
    parser.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        topic, bootstrap, pipeline_config = resolve_target(args, topic_role="input")
        fmt = detect_format(args.file, args.format)
        check_readable(args.file)
    except (OSError, ValueError) as error:
        print(f"kinfer produce: {error}", file=sys.stderr)
        return 2
    from confluent_kafka import Producer

    headers = [(name, value.encode()) for name, _, value in (h.partition("=") for h in args.header)]
    records: Iterable[OutgoingRecord] = read_records(args.file, fmt, args.key_field, schema_id(args), image_field(args))
    if headers:
        records = (OutgoingRecord(r.value, r.key, r.headers + headers) for r in records)
    if args.limit is not None:
        records = itertools.islice(records, args.limit)
    total = None if args.no_progress else count_lines(args.file, fmt)
    if total is not None and args.limit is not None:
        total = min(total, args.limit)
    producer = Producer(client_config(bootstrap, pipeline_config, args.config, {"linger.ms": "5", "acks": "all"}))
    progress = ProgressBar(f"produce → {topic}", total=total, enabled=not args.no_progress)
    summary = send_records(producer, topic, records, rate=args.rate, progress=progress)
    print(summary.describe(), file=sys.stderr)
    return 0 if summary.ok else 1
