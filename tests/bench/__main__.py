"""``python -m tests.bench``: run all contenders on one broker with the same records and model, print a table with
ratios, and write ``.bench/results.json`` (flat keys, so that runs can be compared).

The broker: ``--bootstrap-servers``, else ``$KAFKA_BOOTSTRAP_SERVERS``, else a running ``make testbed-up`` bed,
else a Kafka-only test bed of its own (started from ``tests/testbed``, stopped at the end).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from tests.bench import baselines, kafka_io, quix_case
from tests.bench.format_cases import avro_case, image_case
from tests.bench.kinfer_case import Topics, bucket_quantile_ms, manifest, percentile, run_latency, run_throughput
from tests.bench.quality_cost import quality_cost
from tests.bench.report import print_table, results
from tests.bench.tfserving_case import ModelServer, tfserving_manifest

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "fraud"


def broker(args: argparse.Namespace, stack: ExitStack) -> str:
    if args.bootstrap_servers:
        return str(args.bootstrap_servers)
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    from tests.testbed.bed import DEFAULT_ROOT, TestBed

    running = TestBed.attach(DEFAULT_ROOT)
    if running is not None:
        return running.bootstrap_servers
    print("starting a Kafka broker for the benchmark (tests/testbed)", flush=True)
    bed = TestBed(ROOT / ".bench" / "testbed", kubernetes=False).start()
    stack.callback(bed.stop)
    return bed.bootstrap_servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--bootstrap-servers")
    parser.add_argument("--records", type=int, default=200_000, help="records for the throughput runs")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=256)
    parser.add_argument("--max-batch-wait-ms", type=int, default=20)
    parser.add_argument("--slow-seconds", type=float, default=10, help="how long (b) and (c) run")
    parser.add_argument(
        "--cases",
        default="a,a+,d,q0,qcost,shadow,avro,image,d1024,eos,latency,tfs,b,c",
        help="subset to run, e.g. a,d (default: all)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "results.json")
    args = parser.parse_args(argv)
    work = ROOT / ".bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]
    with ExitStack() as stack:
        bootstrap = broker(args, stack)
        figures = run_all(args, bootstrap, work)
    figures["bench_seconds"] = round(time.monotonic() - started, 1)
    figures["load_average_at_start"] = load_at_start  # the machine is shared: read the figures with this in mind
    report = results(figures, args)
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    print_table(report)
    print(f"\nwritten to {args.out}")
    return 0


def run_all(args: argparse.Namespace, bootstrap: str, work: Path) -> dict[str, float]:
    from kinfer_runtime.tools.synthetic import fraud_transactions

    run = f"bench-{int(time.time())}"
    records, _ = fraud_transactions(20_000, seed=42)
    values = [orjson.dumps(r) for r in records]
    keys = [r["transaction_id"].encode() for r in records]
    n, parts, cases = args.records, args.partitions, set(args.cases.split(","))
    topic_roles = ("in", "a", "floor", "b", "c", "d", "d-dlq", "q", "q-dlq", "q1", "q1-dlq", "s", "s-dlq", "f",
                   "f-dlq", "e", "e-dlq", "l-in", "l", "l-dlq", "t", "t-dlq", "tl", "tl-dlq", "v-in", "v",
                   "v-dlq", "i-in", "i", "i-dlq", "il-in", "il", "il-dlq", "w", "w-dlq", "floor2")  # fmt: skip
    names = {c: f"{run}-{c}" for c in topic_roles}
    inputs = [names["in"], names["l-in"], names["v-in"], names["i-in"], names["il-in"]]
    kafka_io.create_topics(bootstrap, inputs, parts)
    outputs = [name for name in names.values() if name not in inputs]
    kafka_io.create_topics(bootstrap, outputs, parts, {"message.timestamp.type": "LogAppendTime"})
    figures: dict[str, float] = {
        "records": n,
        "partitions": parts,
        "max_batch_size": args.max_batch_size,
        "max_batch_wait_ms": args.max_batch_wait_ms,
    }
    batching = {"max_batch_size": args.max_batch_size, "max_batch_wait_ms": args.max_batch_wait_ms}

    def kinfer_pipeline(label: str, topics: Topics, delivery: str) -> dict[str, Any]:
        return manifest(f"{run}-{label}", bootstrap, topics, delivery=delivery, **batching)

    try:
        step(f"filling {names['in']} with {n} fraud transactions ({sum(map(len, values)) // len(values)} B each)")
        figures["fill_rps"] = kafka_io.fill_topic(bootstrap, names["in"], values, keys, n)
        if "a" in cases:
            step("(a) raw passthrough: consume + produce, same client")
            baselines.passthrough(bootstrap, names["in"], names["a"], n, f"{run}-a")
            figures["passthrough_rps"] = kafka_io.read_outputs(bootstrap, names["a"], parts, n, 120).rate()
        if "a+" in cases:
            step("(a+) contract floor: passthrough + JSON decode, six kinfer.* headers, a delivery report per record")
            baselines.contract_floor(bootstrap, names["in"], names["floor"], n, f"{run}-a+")
            figures["contract_floor_rps"] = kafka_io.read_outputs(bootstrap, names["floor"], parts, n, 120).rate()
        if "d" in cases:
            # The first kinfer run of a bench was the slowest of its kind in most runs (2026-12-05: 77,851 rec/s
            # against 99,900 and 99,999 for the two after it, quality metrics off and on), so the figures compared
            # below come from runs after a first one, like the baselines', which follow the fill and (a).
            step("(d-warm) kinfer run, at-least-once: the first run, reported but not compared")
            topics = Topics(names["in"], names["w"], names["w-dlq"], parts)
            warm = run_throughput(bootstrap, topics, n, kinfer_pipeline("warm", topics, "atLeastOnce"), work, MODEL_DIR)
            figures["kinfer_first_run_rps"] = warm["rps"]
            step("(d) kinfer run, at-least-once (also cold start and RSS)")
            topics = Topics(names["in"], names["d"], names["d-dlq"], parts)
            alo = run_throughput(bootstrap, topics, n, kinfer_pipeline("alo", topics, "atLeastOnce"), work, MODEL_DIR)
            figures.update(kinfer_rps=alo["rps"], cold_start_s=alo["cold_start_s"], kinfer_rss_mb=alo["rss_mb"])
            figures.update({f"kinfer_{k}": v for k, v in alo.items() if k.startswith("stage_")})
        if "q0" in cases:
            step("(d-q0) kinfer run, at-least-once, quality metrics off (no score histograms, label counts, drift)")
            topics = Topics(names["in"], names["q"], names["q-dlq"], parts)
            bare = kinfer_pipeline("q0", topics, "atLeastOnce")
            bare["spec"]["monitoring"]["qualityMetrics"] = False
            off = run_throughput(bootstrap, topics, n, bare, work, MODEL_DIR)
            figures["kinfer_quality_off_rps"] = off["rps"]
            figures.update({f"kinfer_quality_off_{k}": v for k, v in off.items() if k.startswith("stage_")})
            # On, off, on again (ABA): the off run is compared with the mean of the on runs around it, so that a
            # drift of the machine during the three runs does not pass for the metrics' cost.
            step("(d-q1) kinfer run, at-least-once, quality metrics on again")
            topics = Topics(names["in"], names["q1"], names["q1-dlq"], parts)
            again = run_throughput(bootstrap, topics, n, kinfer_pipeline("q1", topics, "atLeastOnce"), work, MODEL_DIR)
            figures["kinfer_quality_on_again_rps"] = again["rps"]
        if "a+" in cases and "d" in cases:
            # The floor again, after kinfer's runs: kinfer's two at-least-once runs (d, d-q1) are compared with the
            # two floor runs around them, so that a drift of the shared machine (single pairs gave 0.69-0.83 for
            # one commit) weighs on both sides alike.
            step("(a+ again) contract floor, after the kinfer runs")
            baselines.contract_floor(bootstrap, names["in"], names["floor2"], n, f"{run}-a2")
            again_floor = kafka_io.read_outputs(bootstrap, names["floor2"], parts, n, 120)
            figures["contract_floor_again_rps"] = again_floor.rate()
        if "qcost" in cases:
            step("quality metrics' own work per record, timed in this process on 256-record batches")
            figures.update(quality_cost(MODEL_DIR))
        if "shadow" in cases:
            step("(d-shadow) kinfer run, at-least-once, version 2 shadowing version 1 on every record")
            topics = Topics(names["in"], names["s"], names["s-dlq"], parts)
            shadowed = kinfer_pipeline("shadow", topics, "atLeastOnce")
            shadowed["spec"]["model"]["rollout"] = {"candidateVersion": 2, "mode": "Shadow", "share": 1.0}
            shadow = run_throughput(bootstrap, topics, n, shadowed, work, MODEL_DIR)
            figures.update(kinfer_shadow_rps=shadow["rps"], kinfer_shadow_rss_mb=shadow["rss_mb"])
            figures.update({f"kinfer_shadow_{k}": v for k, v in shadow.items() if k.startswith("stage_")})
        if "avro" in cases:
            figures.update(avro_case(bootstrap, names, parts, n, records, keys, work, kinfer_pipeline))
            figures["record_bytes_json"] = sum(map(len, values)) / len(values)
        if "image" in cases:
            figures.update(image_case(bootstrap, names, parts, work, kinfer_pipeline))
        if "d1024" in cases:
            step("(d) kinfer run, at-least-once, maxBatchSize 1024 (a tuning knob, for comparison)")
            topics = Topics(names["in"], names["f"], names["f-dlq"], parts)
            big = manifest(f"{run}-big", bootstrap, topics, delivery="atLeastOnce", max_batch_size=1024,
                           max_batch_wait_ms=args.max_batch_wait_ms)  # fmt: skip
            figures["kinfer_rps_max_batch_1024"] = run_throughput(bootstrap, topics, n, big, work, MODEL_DIR)["rps"]
        if "eos" in cases:
            step("(d) kinfer run, exactly-once")
            topics = Topics(names["in"], names["e"], names["e-dlq"], parts)
            eos = run_throughput(bootstrap, topics, n, kinfer_pipeline("eos", topics, "exactlyOnce"), work, MODEL_DIR)
            figures.update(kinfer_eos_rps=eos["rps"], kinfer_eos_cold_start_s=eos["cold_start_s"])
        if "latency" in cases:
            step("kinfer end-to-end latency at 5,000 and 10 records/s offered")
            topics = Topics(names["l-in"], names["l"], names["l-dlq"], parts)
            phases = [("warm-up", 5000.0, 2.0), ("5000", 5000.0, 10.0), ("10", 10.0, 20.0)]
            pipeline = kinfer_pipeline("lat", topics, "atLeastOnce")
            latency, own = run_latency(bootstrap, topics, pipeline, work, MODEL_DIR, phases, values)
            for label in ("5000", "10"):
                for q in (50, 99):
                    figures[f"kinfer_p{q}_ms_at_{label}"] = percentile(latency[label], q)
                    figures[f"kinfer_own_p{q}_ms_at_{label}"] = bucket_quantile_ms(own.get(label, []), q)
                figures[f"kinfer_latency_samples_at_{label}"] = len(latency[label])
        if "tfs" in cases:
            step("(d-tfs) kinfer run, tfserving mode: gRPC to the TF Serving stand-in (not the real server)")
            topics = Topics(names["in"], names["t"], names["t-dlq"], parts)
            embedded = kinfer_pipeline("tfs", topics, "atLeastOnce")
            with ModelServer(embedded, MODEL_DIR, work) as server:
                served = tfserving_manifest(embedded, server.grpc_port, server.rest_port)
                tfs = run_throughput(bootstrap, topics, n, served, work, MODEL_DIR)
                figures.update(kinfer_tfserving_rps=tfs["rps"], kinfer_tfserving_rss_mb=tfs["rss_mb"])
                step("(d-tfs) end-to-end latency at 5,000 records/s offered")
                topics = Topics(names["l-in"], names["tl"], names["tl-dlq"], parts)
                served = tfserving_manifest(kinfer_pipeline("tfs-lat", topics, "atLeastOnce"), server.grpc_port,
                                            server.rest_port)  # fmt: skip
                latency, _ = run_latency(bootstrap, topics, served, work, MODEL_DIR,
                                         [("warm-up", 5000.0, 2.0), ("5000", 5000.0, 10.0)], values)  # fmt: skip
                figures["tfserving_standin_rss_mb"] = server.peak_rss_mb()
            for q in (50, 99):
                figures[f"kinfer_tfserving_p{q}_ms_at_5000"] = percentile(latency["5000"], q)
        if "b" in cases:
            step(f"(b) tutorial loop: poll 1, model.predict, produce, commit ({args.slow_seconds:.0f} s)")
            baselines.tutorial(bootstrap, names["in"], names["b"], MODEL_DIR / "1", f"{run}-b", args.slow_seconds)
            figures["tutorial_rps"] = kafka_io.read_outputs(bootstrap, names["b"], parts, n, 10).rate()
        if "c" in cases:
            step(f"(c) quixstreams {quix_case.QUIXSTREAMS}: same preprocessing, signature per record")
            python = quix_case.ensure_quix_venv(ROOT / ".bench" / "quix-venv")
            quix_case.run_quix(
                python, bootstrap, names["in"], names["c"], parts, f"{run}-c", MODEL_DIR / "1",
                args.slow_seconds, work / "quix.log",
            )  # fmt: skip
            figures["quixstreams_rps"] = kafka_io.read_outputs(bootstrap, names["c"], parts, n, 20).rate()
    finally:
        kafka_io.delete_topics(bootstrap, list(names.values()))
        print("  " + ", ".join(f"{k}={v:.4g}" for k, v in figures.items()), flush=True)
    return figures


def step(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
