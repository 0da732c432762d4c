"""The runtime's Prometheus metrics (listed in docs/runtime.md), in a registry of their own.

Every series carries ``namespace`` and ``pipeline``. Per-batch observations use prometheus-client directly; the
end-to-end latency is observed for every record, so it goes through :class:`BulkHistogram`, which bins a whole
batch with one ``numpy.searchsorted`` instead of a Python call per record.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

STAGES = ("consume", "preprocess", "predict", "produce", "commit")
# Model scores: fine steps where probabilities and small error scores live, then decades for unbounded scores.
SCORE_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, *(round(0.05 * i, 2) for i in range(1, 21)), 2.5, 5.0, 10.0, 100.0, 1000.0,
)  # fmt: skip
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


class BulkHistogram(Collector):
    """A histogram that observes many values at once (cumulative buckets, sum and count, like prometheus')."""

    def __init__(self, name: str, documentation: str, labels: dict[str, str], buckets: Iterable[float]):
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.bounds = np.array(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # last slot: above the largest bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        # side="left": a value equal to a bound belongs to that bucket (le = less or equal).
        slots = np.searchsorted(self.bounds, values, side="left")
        binned = np.bincount(slots, minlength=len(self._counts))
        with self._lock:
            self._counts += binned
            self._sum += float(values.sum())

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        buckets = [(repr(float(b)), float(c)) for b, c in zip(self.bounds, cumulative[:-1], strict=True)]
        buckets.append(("+Inf", float(cumulative[-1])))
        return buckets, total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        buckets, total = self.snapshot()
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labels))
        family.add_metric(list(self.labels.values()), buckets, total)
        yield family


class RuntimeMetrics:
    """All runtime series for one pipeline; label values are bound once here."""

    def __init__(self, namespace: str, pipeline: str, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        base = ["namespace", "pipeline"]
        ids = {"namespace": namespace, "pipeline": pipeline}
        r = self.registry
        self.records_in = Counter("kinfer_records_in", "Records consumed.", base, registry=r).labels(**ids)
        self.records_out = Counter("kinfer_records_out", "Output records acknowledged.", base, registry=r).labels(**ids)
        self._dead_lettered = Counter(
            "kinfer_records_dead_lettered", "Records written to the dead-letter topic.", [*base, "reason"], registry=r
        )
        self.batch_size = Histogram(
            "kinfer_batch_size", "Records per batch.", base, buckets=BATCH_BUCKETS, registry=r
        ).labels(**ids)
        self._stage = Histogram(
            "kinfer_stage_seconds",
            "Time per batch in each stage.",
            [*base, "stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = {name: self._stage.labels(stage=name, **ids) for name in STAGES}
        self.end_to_end = BulkHistogram(
            "kinfer_end_to_end_seconds",
            "From the record's timestamp to its output's acknowledgement.",
            ids,
            LATENCY_BUCKETS,
        )
        r.register(self.end_to_end)
        self._lag = Gauge(
            "kinfer_partition_lag", "High watermark minus position.", [*base, "topic", "partition"], registry=r
        )
        self._model_version = Gauge("kinfer_model_version", "Model version loaded.", [*base, "model"], registry=r)
        self.rebalances = Counter("kinfer_rebalances", "Partition assignment changes.", base, registry=r).labels(**ids)
        self.ready = Gauge(
            "kinfer_ready", "1 when the model is loaded and partitions are assigned.", base, registry=r
        ).labels(**ids)
        self.loop_iterations = Counter(
            "kinfer_loop_iterations",
            "Passes of the runtime loop (each waits at most maxBatchWaitMs).",
            base,
            registry=r,
        ).labels(**ids)
        self.assigned_partitions = Gauge(
            "kinfer_assigned_partitions", "Input partitions assigned to this member.", base, registry=r
        ).labels(**ids)
        self.predictor_unavailable = Counter(
            "kinfer_predictor_unavailable",
            "Batches held back because the predictor was unavailable.",
            base,
            registry=r,
        ).labels(**ids)
        self._delivery_failures = Counter(
            "kinfer_delivery_failures",
            "Records Kafka did not take (a delivery report's error or a refusal by produce()), by topic and error.",
            [*base, "topic", "error"],
            registry=r,
        )
        self.dead_letters_truncated = Counter(
            "kinfer_dead_letters_truncated",
            "Dead letters produced in a smaller form, kinfer.truncated set (too large for the producer or topic).",
            base,
            registry=r,
        ).labels(**ids)
        self._delivery_held = Gauge(
            "kinfer_delivery_held",
            "1 while records for the topic are held (it refuses them all) and the input is paused.",
            [*base, "topic"],
            registry=r,
        )
        self._brokers_up = Gauge(
            "kinfer_kafka_brokers_up",
            "Kafka brokers the client (consumer, producer) is connected to, from its statistics every second.",
            [*base, "client"],
            registry=r,
        )
        self._drift = Gauge(
            "kinfer_feature_drift_psi",
            "Population Stability Index of a feature over the latest scored records against the training data.",
            [*base, "feature"],
            registry=r,
        )
        self.drift_window_records = Gauge(
            "kinfer_drift_window_records", "Scored records in the drift window.", base, registry=r
        ).labels(**ids)
        self._drift_features: set[str] = set()
        self._scores: dict[tuple[str, int], BulkHistogram] = {}  # (output, model version) -> its histogram
        self._label_counts: dict[tuple[str, int], Callable[..., None]] = {}  # (label, model version) -> its inc
        self._predictions = Counter(
            "kinfer_predictions", "Output records by predicted label and model version.",
            [*base, "label", "model_version"], registry=r,
        )  # fmt: skip
        self._ids = ids
        self._lag_partitions: set[tuple[str, str]] = set()

    @property
    def ids(self) -> dict[str, str]:
        """The labels every series of this pipeline carries (namespace, pipeline)."""
        return dict(self._ids)

    def delivery_failed(self, topic: str, error: str, count: int = 1) -> None:
        self._delivery_failures.labels(topic=topic, error=error, **self._ids).inc(count)

    def brokers_up(self, client: str) -> Callable[[int], None]:
        """The setter of one client's ``kinfer_kafka_brokers_up``."""
        return self._brokers_up.labels(client=client, **self._ids).set

    def observe_predictions(self, model_version: int, scores: dict[str, np.ndarray], labels: list[str]) -> None:
        """One batch's numeric outputs (one value per row) and predicted labels, for the model's owners."""
        for output, values in scores.items():
            histogram = self._scores.get((output, model_version))
            if histogram is None:
                labels_of = {**self._ids, "output": output, "model_version": str(model_version)}
                histogram = BulkHistogram("kinfer_prediction_score", "Scores of one model output, per model version.",
                                          labels_of, SCORE_BUCKETS)  # fmt: skip
                self.registry.register(histogram)
                self._scores[(output, model_version)] = histogram
            histogram.observe_many(values[np.isfinite(values)])  # a NaN would make the sum NaN for good
        for label, count in collections.Counter(labels).items():
            inc = self._label_counts.get((label, model_version))
            if inc is None:  # labels() with keywords costs microseconds: once per label and version, not per batch
                inc = self._predictions.labels(label=label, model_version=str(model_version), **self._ids).inc
                self._label_counts[(label, model_version)] = inc
            inc(count)

    def set_drift(self, psi: dict[str, float], records: int) -> None:
        """PSI per watched feature; the series of features not in ``psi`` (a window still filling, a model
        version that watches others) are removed, so that no stale value can keep an alert firing."""
        for feature in self._drift_features - psi.keys():
            self._drift.remove(self._ids["namespace"], self._ids["pipeline"], feature)
        for feature, value in psi.items():
            self._drift.labels(feature=feature, **self._ids).set(value)
        self._drift_features = set(psi)
        self.drift_window_records.set(records)

    def delivery_held(self, topic: str, held: bool) -> None:
        self._delivery_held.labels(topic=topic, **self._ids).set(1 if held else 0)

    def dead_lettered(self, reason: str, count: int = 1) -> None:
        self._dead_lettered.labels(reason=reason, **self._ids).inc(count)

    def set_model_version(self, model: str, version: int) -> None:
        self._model_version.labels(model=model, **self._ids).set(version)

    def total_lag(self) -> int:
        return int(sum(sample.value for family in self._lag.collect() for sample in family.samples))

    def set_lag(self, lag: dict[tuple[str, int], int]) -> None:
        """Replace the lag series: partitions no longer assigned disappear instead of reporting stale lag."""
        current = {(topic, str(partition)) for topic, partition in lag}
        for topic, stale in self._lag_partitions - current:
            self._lag.remove(self._ids["namespace"], self._ids["pipeline"], topic, stale)
        for (topic, number), value in lag.items():
            self._lag.labels(topic=topic, partition=str(number), **self._ids).set(value)
        self._lag_partitions = current
