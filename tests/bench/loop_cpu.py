"""The loop's own CPU per record and its garbage collections, timed in one process: ``python -m tests.bench.loop_cpu``.

``make bench`` compares whole runs, and on this shared machine two runs of one code differ by more than most
changes to the hot path buy. This times the part of the loop a change usually touches, with far less noise: the
thread CPU of ``PipelineLoop._process`` (preprocess, drift, predict, assemble, produce) on 256-record batches of
real ``confluent_kafka.Message`` objects, the fraud model and a real producer. The producer's broker does not exist:
its queue is purged after every batch, outside the timing, so no delivery report or Kafka round trip is counted
(the loop's ``serve`` and consuming are not in the figure). The loop is started as ``kinfer run`` starts it
(``settle_garbage_collector``), and ``gc.callbacks`` counts the collections that happen during the timed batches.

Compare two trees by running it from each (``PYTHONPATH=<tree>/runtime``), alternating, several times: the
minimum and the median per run are what to compare. ``--young-threshold 700`` runs the current tree with Python's
own threshold for the youngest generation instead of the runtime's (runtime/kinfer_runtime/pipeline/garbage.py).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import confluent_kafka

from tests.bench.kinfer_case import Topics, manifest
from tests.runtime.integration.harness import FRAUD_MODEL, transactions

BATCH = 256
UNREACHABLE = "127.0.0.1:1"


class NoConsumer:
    """``_process`` never consumes; the loop's constructor only wires the consumer's callbacks."""

    def __getattr__(self, _name: str) -> Any:
        return lambda *_args, **_kwargs: None


class Collections:
    """Garbage collections and the time they took, per generation, while ``counting``."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = 0.0
        self.counting = False
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.counting:
            self.seconds += time.perf_counter() - self._started
            self.counts[info["generation"]] += 1


def batches(count: int) -> list[list[confluent_kafka.Message]]:
    now_ms = int(time.time() * 1000)
    records = transactions(count * BATCH)
    stamp = (confluent_kafka.TIMESTAMP_CREATE_TIME, now_ms)
    messages = [
        confluent_kafka.Message(topic="in", partition=i % 2, offset=1000 + i, key=key, value=value, timestamp=stamp)
        for i, (key, value) in enumerate(records)
    ]
    return [messages[start : start + BATCH] for start in range(0, len(messages), BATCH)]


def measure(rounds: int, young_threshold: int | None = None) -> dict[str, Any]:
    from kinfer_runtime.pipeline.at_least_once import AtLeastOnce
    from kinfer_runtime.pipeline.garbage import settle_garbage_collector
    from kinfer_runtime.pipeline.loop import PipelineLoop
    from kinfer_runtime.pipeline.runner import RunOptions, build_loop_parts
    from kinfer_runtime.spec import parse_pipeline

    pipeline = parse_pipeline(manifest("loop-cpu", UNREACHABLE, Topics("in", "out", "dlq", 2),
                                       delivery="atLeastOnce", max_batch_size=BATCH, max_batch_wait_ms=20))  # fmt: skip
    parts = build_loop_parts(pipeline, RunOptions(model_path=FRAUD_MODEL))
    producer = confluent_kafka.Producer({"bootstrap.servers": UNREACHABLE, "log_level": 0})
    loop = PipelineLoop(parts, threading.Event(), consumer=NoConsumer(), producer=producer)
    assert isinstance(loop.delivery, AtLeastOnce)
    tracker = loop.delivery.tracker
    inputs = batches(8)
    settle_garbage_collector()
    if young_threshold is not None:  # e.g. Python's default, 700, to see what the runtime's setting saves
        gc.set_threshold(young_threshold, *gc.get_threshold()[1:])
    collections = Collections()
    gc.callbacks.append(collections)
    samples = []
    try:
        for round_ in range(rounds):
            collections.counting = round_ >= rounds // 10  # the first tenth warms up
            started = time.thread_time_ns()
            loop._process(inputs[round_ % len(inputs)])  # the stages alone: no consume, no delivery reports
            if collections.counting:
                samples.append((time.thread_time_ns() - started) / BATCH / 1000)
            tracker.batches.clear()  # nothing will be acknowledged: the loop must not wait for it
            producer.purge()
            producer.poll(0)
    finally:
        gc.callbacks.remove(collections)
    records = len(samples) * BATCH
    return {
        "us_per_record_min": round(min(samples), 3),
        "us_per_record_median": round(statistics.median(samples), 3),
        "gc_collections_per_1000_records": [round(count * 1000 / records, 3) for count in collections.counts],
        "gc_us_per_record": round(collections.seconds / records * 1e6, 3),
        "batches": len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=1500, help="batches of 256 records (default 1500)")
    parser.add_argument("--young-threshold", type=int, help="the collector's young generation threshold instead of "
                        "the runtime's (pipeline/garbage.py)")  # fmt: skip
    arguments = parser.parse_args()
    result = measure(arguments.rounds, arguments.young_threshold)
    import kinfer_runtime

    print(Path(kinfer_runtime.__file__).parent, result)


if __name__ == "__main__":
    main()
