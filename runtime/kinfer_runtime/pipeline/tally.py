"""What the loop has done so far: running counters for callers on other threads, and the metrics of completed
batches (records out, dead letters by reason, end-to-end latency)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.pipeline.commits import InFlightBatch

LATENCY_SAMPLES_KEPT = 20000


@dataclass
class LoopCounters:
    """Running totals, readable from another thread (benchmarks, the demo)."""

    records_in: int = 0
    records_out: int = 0
    shadow_out: int = 0  # a shadow candidate's predictions delivered to topics.shadow
    dead_lettered: int = 0
    batches: int = 0
    committed_batches: int = 0
    redelivered: int = 0
    transactions_aborted: int = 0
    latencies_s: list[float] = field(default_factory=list)  # end-to-end samples of recent batches (bounded)


class Tally:
    """Counts batches in (as they are consumed) and out (once acknowledged or committed in a transaction)."""

    def __init__(self, metrics: RuntimeMetrics, counters: LoopCounters | None = None) -> None:
        self.metrics = metrics
        self.counters = counters or LoopCounters()

    def consumed(self, records: int) -> None:
        self.counters.records_in += records
        self.counters.batches += 1
        self.metrics.records_in.inc(records)
        self.metrics.batch_size.observe(records)

    def completed(self, batches: Iterable[InFlightBatch]) -> None:
        now = time.time()
        counters, metrics = self.counters, self.metrics
        for batch in batches:
            counters.records_out += batch.acked_outputs
            metrics.records_out.inc(batch.acked_outputs)
            counters.shadow_out += batch.acked_shadow
            for reason, count in batch.acked_dead_letters.items():
                counters.dead_lettered += count
                metrics.dead_lettered(reason, count)
            if batch.output_timestamps_s.size:
                latencies = now - batch.output_timestamps_s
                metrics.end_to_end.observe_many(latencies)
                self._sample(latencies)
            counters.committed_batches += 1

    def _sample(self, latencies: np.ndarray) -> None:
        samples = self.counters.latencies_s
        samples.extend(latencies[:: max(1, latencies.size // 16)].tolist())
        if len(samples) > LATENCY_SAMPLES_KEPT:
            del samples[: LATENCY_SAMPLES_KEPT // 2]
