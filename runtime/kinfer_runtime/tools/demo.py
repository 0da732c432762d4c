"""``make demo`` / ``kinfer demo``: the fraud pipeline on a local broker, with live progress, in about a minute.

Uses ``--bootstrap-servers`` (or ``$KAFKA_BOOTSTRAP_SERVERS``, which ``.testbed/env.sh`` sets), else starts a
local broker of its own (:mod:`kinfer_runtime.tools.local_kafka`, built from Maven Central on first use); creates
the topics, runs the pipeline of ``runtime/pipelines/fraud-local.yaml`` with the embedded model from
``models/fraud`` in this process, and sends synthetic card transactions (0.5 % of them broken on purpose) in three
phases: steady, burst, quiet (``--seconds`` scales them; ``DEMO_SECONDS`` in the environment does the same). Every
second it prints the output rate, end-to-end p50/p99, lag and dead-letter count; at the end a summary and the
riskiest transactions it scored. The traffic goes through ``kinfer produce``'s sending code. Exit status 0 only
when records were scored and every record sent is accounted for (scored or dead-lettered).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[3]
PIPELINE_FILE = REPO / "runtime" / "pipelines" / "fraud-local.yaml"
MODEL_DIR = REPO / "models" / "fraud"
PHASES = [("steady", 2_000, 20.0), ("burst", 5_000, 10.0), ("quiet", 300, 8.0)]  # (name, records/s, seconds)
BAD_EVERY = 200  # 0.5 % of the traffic is broken on purpose
BAD_VALUES = [
    b'{"amount": 12.5, "hour": ',
    b"",
    b"\xff\xfe",
    b"[1, 2]",
    b'{"hour": 3}',
    b'{"amount": "ten", "hour": 1}',
]


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds (0 when there are no samples)."""
    if not samples:
        return 0.0, 0.0
    p50, p99 = np.percentile(np.asarray(samples), [50, 99])
    return float(p50) * 1000, float(p99) * 1000


def status_line(elapsed: float, phase: str, sent: int, out: int, rate: float, p50: float, p99: float, lag: int,
                dead: int) -> str:  # fmt: skip
    return (f"{elapsed:5.1f}s {phase:<7} sent {sent:>7,}  scored {out:>7,}  {rate:>6,.0f}/s  "
            f"p50 {p50:5.1f} ms  p99 {p99:6.1f} ms  lag {lag:>6,}  dead-lettered {dead:>4,}")  # fmt: skip


@contextlib.contextmanager
def kafka_broker(explicit: str | None) -> Iterator[str]:
    """An explicit broker, else a local one started for the demo (and stopped after it)."""
    if explicit:
        yield explicit
        return
    from kinfer_runtime.tools.local_kafka import running_broker

    print("starting a local Kafka broker ...", flush=True)
    with running_broker() as broker:
        yield broker.bootstrap_servers


def scaled_phases(seconds: float | None) -> list[tuple[str, int, float]]:
    """The three traffic phases, their durations scaled so that they add up to ``seconds`` (None: as planned)."""
    if seconds is None:
        return PHASES
    total = sum(duration for _, _, duration in PHASES)
    return [(name, rate, duration * seconds / total) for name, rate, duration in PHASES]


def traffic(seed: int, count: int, offset: int) -> list[Any]:
    from kinfer_runtime.tools.sources import OutgoingRecord
    from kinfer_runtime.tools.synthetic import fraud_transactions

    transactions, _ = fraud_transactions(count, seed)
    records = []
    for i, tx in enumerate(transactions):
        n = offset + i
        value = BAD_VALUES[n // BAD_EVERY % len(BAD_VALUES)] if n % BAD_EVERY == BAD_EVERY - 1 else orjson.dumps(tx)
        records.append(OutgoingRecord(value, tx["transaction_id"].encode()))
    return records


def send_phases(
    bootstrap: str, topic: str, phases: list[Any], sent: Any, acked: Any, phase: Any, stop: Any, go: Any
) -> None:
    """The traffic generator (run in a child process, so that it does not compete with the pipeline for the
    GIL): all records are made first, then sent phase by phase, paced by ``kinfer produce``'s sender."""
    from confluent_kafka import Producer

    from kinfer_runtime.tools.produce import send_records

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    planned, offset = [], 0
    for seed, (_name, rate, seconds) in enumerate(phases, start=1):
        planned.append(traffic(seed, int(rate * seconds), offset))
        offset += len(planned[-1])

    go.wait(120)  # the records are made while the model loads; sending starts once the pipeline is ready

    def counted(records: list[Any]) -> Iterator[Any]:
        for record in records:
            sent.value += 1
            yield record

    for number, ((_name, rate, _seconds), records) in enumerate(zip(phases, planned, strict=True), start=1):
        phase.value = number
        summary = send_records(producer, topic, counted(records), rate=rate, should_stop=stop.is_set)
        acked.value += summary.delivered
    phase.value = len(phases) + 1


def create_topics(bootstrap: str, pipeline: Any) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    new = [NewTopic(t.name, t.partitions, t.replication_factor) for _, t in pipeline.spec.topics.roles()]
    with AdminClient({"bootstrap.servers": bootstrap}) as admin:
        for future in admin.create_topics(new).values():
            future.result(30)


def riskiest(bootstrap: str, topic: str, count: int = 5) -> list[tuple[float, str, dict[str, Any]]]:
    """The highest fraud probabilities in the output topic, with their source records' keys."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{uuid.uuid4().hex[:6]}"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    best: list[tuple[float, str, dict[str, Any]]] = []
    while messages := consumer.consume(5000, 1.0):
        for message in messages:
            if message.error() is None:
                value = orjson.loads(message.value() or b"{}")
                best.append((value["prediction"].get("fraud_probability", 0.0), (message.key() or b"").decode(), value))
        best = sorted(best, key=lambda item: -item[0])[:count]
    consumer.close()
    return best


def start_traffic(bootstrap: str, topic: str, phases: list[Any]) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    shared: dict[str, Any] = {"sent": spawn.Value("q", 0), "acked": spawn.Value("q", 0), "phase": spawn.Value("i", 0),
              "stop": spawn.Event(), "go": spawn.Event()}  # fmt: skip
    args = (bootstrap, topic, phases, shared["sent"], shared["acked"], shared["phase"], shared["stop"], shared["go"])
    shared["process"] = spawn.Process(target=send_phases, args=args, daemon=True)
    shared["process"].start()
    return shared


def show_progress(run: Any, traffic: dict[str, Any], phases: list[Any]) -> float:
    """Print a status line every second until all traffic is sent and scored; returns the seconds it took."""
    names = ["generating", *(name for name, _, _ in phases), "drain"]
    counters, sender = run.counters, traffic["process"]
    started, last_out, seen = time.monotonic(), 0, 0
    while sender.is_alive() or counters.records_out + counters.dead_lettered < traffic["acked"].value:
        time.sleep(1.0)
        if not sender.is_alive() and time.monotonic() - started > 150:
            break  # something is wrong; the summary will say what is missing
        phase = traffic["phase"].value
        if phase == 0:
            continue  # still generating the records
        samples = counters.latencies_s[seen:] if seen <= len(counters.latencies_s) else []
        seen = len(counters.latencies_s)
        p50, p99 = percentiles(samples)
        print(status_line(time.monotonic() - started, names[phase], traffic["sent"].value, counters.records_out,
                          counters.records_out - last_out, p50, p99, run.loop.metrics.total_lag(),
                          counters.dead_lettered), flush=True)  # fmt: skip
        last_out = counters.records_out
    return time.monotonic() - started


def print_summary(final: Any, sent: int, elapsed: float, bootstrap: str, output_topic: str) -> None:
    p50, p99 = percentiles(final.latencies_s)
    print(f"\nsummary: {sent:,} sent, {final.records_out:,} scored, {final.dead_lettered:,} dead-lettered in "
          f"{elapsed:.1f}s ({final.records_out / elapsed:,.0f} scored/s on average); end-to-end p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms; {final.batches:,} batches (avg {final.records_in / max(1, final.batches):.0f} "
          "records/batch)")  # fmt: skip
    print("riskiest transactions scored:")
    for probability, key, value in riskiest(bootstrap, output_topic):
        print(f"  {key}: fraud_probability {probability:.3f} ({value['prediction'].get('label', '')}), "
              f"partition {value['source']['partition']} offset {value['source']['offset']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kinfer demo", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                        help="use this broker instead of starting one (default: $KAFKA_BOOTSTRAP_SERVERS)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("DEMO_SECONDS") or 0) or None,
                        help="how long the traffic runs (default: about 40 s; env DEMO_SECONDS)")  # fmt: skip
    args = parser.parse_args(argv)
    phases = scaled_phases(args.seconds)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from kinfer_runtime.observability.logs import configure_logging
    from kinfer_runtime.pipeline.entrypoint import load_pipeline
    from kinfer_runtime.pipeline.runner import PipelineThread, RunOptions

    configure_logging("WARNING", component="demo")
    started = time.monotonic()
    with kafka_broker(args.bootstrap_servers) as bootstrap:
        pipeline = load_pipeline(PIPELINE_FILE)
        run_id = uuid.uuid4().hex[:6]  # fresh topics and group, so a reused broker's old data plays no part
        pipeline.metadata.name = f"fraud-demo-{run_id}"
        topics = pipeline.spec.topics
        for _, spec in topics.roles():
            spec.name = f"{spec.name}-{run_id}"
        create_topics(bootstrap, pipeline)
        traffic = start_traffic(bootstrap, topics.input.name, phases)  # generates its records while the model loads
        print(f"broker {bootstrap}; loading model {MODEL_DIR.relative_to(REPO)} ...", flush=True)
        run = PipelineThread(pipeline, RunOptions(bootstrap_servers=bootstrap, model_path=MODEL_DIR)).start()
        run.wait_ready(60)
        print(f"pipeline {pipeline.metadata.name} ready {time.monotonic() - started:.1f}s after start: "
              f"{topics.input.name} -> {topics.output.name}", flush=True)  # fmt: skip
        traffic["go"].set()
        try:
            elapsed = show_progress(run, traffic, phases)
        except KeyboardInterrupt:
            traffic["stop"].set()
            elapsed = time.monotonic() - started
        finally:
            traffic["process"].join(30)
            final = run.stop()
            run.parts.predictor.close()
        print_summary(final, traffic["acked"].value, elapsed, bootstrap, topics.output.name)
    lost = traffic["acked"].value - final.records_out - final.dead_lettered
    print(f"done in {time.monotonic() - started:.0f}s; every record accounted for: {lost == 0}")
    return 0 if lost == 0 and final.records_out > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
