"""Contender (d): kinfer's real runtime, ``kinfer run PIPELINE.yaml`` as a subprocess (what a pod runs).

Throughput runs start the process on a pre-filled input topic, so the same run also gives the cold start (process
start to the first output record's timestamp) and the peak RSS (``VmHWM``). The latency run starts it on empty
topics, waits for ``/readyz``, then offers records at fixed rates with an open-loop producer while a reader thread
notes when each output arrives; end-to-end latency = arrival - the input record's timestamp (carried in the
output's ``source.timestamp_ms``), so it includes the output's broker round trip and the reader's fetch.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from tests.bench.kafka_io import LiveReader, produce_paced, read_outputs, wait_for_size
from tests.testbed import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Topics:
    input: str
    output: str
    dead_letter: str
    partitions: int


def manifest(name: str, bootstrap: str, topics: Topics, *, delivery: str, max_batch_size: int,
             max_batch_wait_ms: int) -> dict[str, Any]:  # fmt: skip
    return {
        "apiVersion": "kinfer.io/v1alpha1",
        "kind": "InferencePipeline",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "kafka": {"bootstrapServers": bootstrap},
            "topics": {
                "input": {"name": topics.input, "partitions": topics.partitions},
                "output": {"name": topics.output, "partitions": topics.partitions},
                "deadLetter": {"name": topics.dead_letter, "partitions": 1},
            },
            "model": {"name": "fraud", "uri": "pvc://models/fraud", "versionPolicy": "Pinned", "version": 1},
            "consumer": {
                "maxBatchSize": max_batch_size,
                "maxBatchWaitMs": max_batch_wait_ms,
                "delivery": delivery,
                "group": f"{name}-group",
            },
            "monitoring": {"logLevel": "INFO"},
        },
    }


class KinferProcess:
    def __init__(self, pipeline: dict[str, Any], work_dir: Path, model_dir: Path) -> None:
        name = pipeline["metadata"]["name"]
        self.path = work_dir / f"{name}.yaml"
        self.path.write_text(yaml.safe_dump(pipeline))
        self.log_path = work_dir / f"{name}.log"
        self.metrics_port = free_port()
        self.command = [sys.executable, "-m", "kinfer_runtime.cli", "run", str(self.path), "--model-path",
                        str(model_dir), "--metrics-port", str(self.metrics_port)]  # fmt: skip
        self.started_ms = 0.0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> KinferProcess:
        self.started_ms = time.time() * 1000
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        return peak_rss_mb(self.process.pid)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"kinfer run exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"kinfer run not ready after {timeout}s; see {self.log_path}")

    def stage_seconds(self) -> dict[str, float]:
        """Seconds spent per loop stage so far, from the runtime's own ``kinfer_stage_seconds`` histogram."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                text = reply.read().decode()
        except OSError:
            return {}
        stages: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("kinfer_stage_seconds_sum{"):
                labels, value = line[len("kinfer_stage_seconds_sum{") :].rsplit("} ", 1)
                stage = next(
                    (part.split("=", 1)[1].strip('"') for part in labels.split(",") if part.startswith("stage=")), "?"
                )
                stages[stage] = stages.get(stage, 0.0) + float(value)
        return stages

    def histogram(self, name: str) -> list[tuple[float, float]]:
        """Cumulative ``(upper bound, count)`` buckets of one of the runtime's histograms (summed over labels)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
        except OSError:
            return []
        buckets: dict[float, float] = {}
        for line in text.splitlines():
            if line.startswith(f"{name}_bucket{{"):
                labels, value = line[len(name) + 8 :].rsplit("} ", 1)
                bound = next(part.split("=", 1)[1].strip('"') for part in labels.split(",") if part.startswith("le="))
                key = float("inf") if bound == "+Inf" else float(bound)
                buckets[key] = buckets.get(key, 0.0) + float(value)
        return sorted(buckets.items())

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_throughput(bootstrap: str, topics: Topics, count: int, pipeline: dict[str, Any], work_dir: Path,
                   model_dir: Path) -> dict[str, float]:  # fmt: skip
    exactly_once = pipeline["spec"]["consumer"]["delivery"] == "exactlyOnce"
    process = KinferProcess(pipeline, work_dir, model_dir).start()
    try:
        finished = wait_for_size(bootstrap, topics.output, topics.partitions, count, timeout=300, alive=process.alive)
        rss = process.peak_rss_mb() if process.alive() else 0.0
        stages = process.stage_seconds() if process.alive() else {}
    finally:
        status = process.stop()
    outputs = read_outputs(bootstrap, topics.output, topics.partitions, count, timeout=60, read_committed=exactly_once)
    if not finished or len(outputs.timestamps_ms) < count:
        print(f"  warning: {len(outputs.timestamps_ms)} of {count} outputs (exit {status}); see {process.log_path}")
    first = min(outputs.timestamps_ms) if outputs.timestamps_ms else process.started_ms
    figures = {"rps": outputs.rate(), "cold_start_s": (first - process.started_ms) / 1000, "rss_mb": rss,
               "outputs": float(len(outputs.timestamps_ms))}  # fmt: skip
    if stages:
        total = sum(stages.values())
        print("  loop time per stage: " + ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(stages.items())))
        figures.update({f"stage_{k}_us_per_record": v / count * 1e6 for k, v in stages.items()})
    return figures


def run_latency(bootstrap: str, topics: Topics, pipeline: dict[str, Any], work_dir: Path, model_dir: Path,
                phases: list[tuple[str, float, float]], values: list[bytes],
                ) -> tuple[dict[str, list[float]], dict[str, list[tuple[float, float]]]]:  # fmt: skip
    """``phases`` = [(label, records/s, seconds)]; returns the end-to-end latencies (ms) of each phase as seen by
    the bench's reader, and the runtime's own ``kinfer_end_to_end_seconds`` buckets for the phase (record
    timestamp to output acknowledged: without the reader's fetch)."""
    process = KinferProcess(pipeline, work_dir, model_dir).start()
    reader = LiveReader(bootstrap, topics.output, topics.partitions)
    latencies: dict[str, list[float]] = {}
    own: dict[str, list[tuple[float, float]]] = {}
    try:
        process.wait_ready()
        time.sleep(1.0)  # let the group settle after the first assignment
        expected = 0
        windows = []
        for label, rate, seconds in phases:
            started_ms = time.time() * 1000
            before = process.histogram(E2E_HISTOGRAM)
            expected += produce_paced(bootstrap, topics.input, values, rate, seconds)
            windows.append((label, started_ms, time.time() * 1000))
            deadline = time.monotonic() + 60
            while len(reader.arrivals) < expected and time.monotonic() < deadline:
                time.sleep(0.05)
            own[label] = bucket_delta(before, process.histogram(E2E_HISTOGRAM))
        # Each output belongs to the phase during which its input was produced (robust to stragglers).
        stamped = [(at, orjson.loads(value)["source"]["timestamp_ms"]) for at, value in reader.arrivals]
        for label, start_ms, end_ms in windows:
            latencies[label] = [at - ts for at, ts in stamped if start_ms - 1 <= ts <= end_ms + 1]
    finally:
        reader.stop()
        process.stop()
    return latencies, own


E2E_HISTOGRAM = "kinfer_end_to_end_seconds"


def bucket_delta(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> list[tuple[float, float]]:
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]


def bucket_quantile_ms(buckets: list[tuple[float, float]], q: float) -> float:
    """A quantile from cumulative buckets, interpolated linearly inside its bucket (as Prometheus does)."""
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank, lower, below = q / 100 * buckets[-1][1], 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower * 1000
            share = (rank - below) / (count - below) if count > below else 1.0
            return (lower + (bound - lower) * share) * 1000
        lower, below = bound, count
    return lower * 1000


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")
