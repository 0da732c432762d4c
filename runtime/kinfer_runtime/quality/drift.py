"""Input drift: how far the features of recent records have moved from the ones the model was trained on (pure).

Training writes, per feature, the distribution of its encoded column(s) over the training set into ``kinfer.json``
(``training_statistics``, docs/models.md): for a numeric feature ten buckets between training deciles (their
shares are 10 % each by construction), for a categorical one the share of each vocabulary entry and of unknown
values. The runtime counts the same buckets over the records it scores, in a sliding window, and reports the
Population Stability Index per feature:

    PSI = sum over buckets of (actual share - expected share) * ln(actual share / expected share)

Read it as the industry does: below 0.1 no shift worth a look, 0.1-0.25 a moderate one, above 0.25 a significant
one (the default threshold of the alert KinferInputDrift). Counting works on the preprocessed input tensors of a
slot (about 1,000 records) at a time, every feature of a tensor together (quality/bucket_plan.py): no Python work
per record. Array features (e.g. a sensor window) have no statistics and are not watched.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from kinfer_runtime.quality.bucket_plan import BucketPlan
from kinfer_runtime.spec import FeatureSpec, FeatureType
from kinfer_runtime.spec.model_metadata import FeatureStatistics, ModelMetadata, StatisticsKind

NUMERIC_BUCKETS = 10
EMPTY_SHARE = 1e-4  # a bucket nobody fell into counts as this share: ln(0) has no value, PSI stays finite
WINDOW_RECORDS = 10_000  # the sliding window: the latest 10,000 scored records (up to 1,000 more)...
WINDOW_SLOTS = 10  # ... kept as 10 slots of 1,000 and the slot being filled; the oldest slot is dropped whole
MIN_RECORDS = 1_000  # fewer records than this in the window: no PSI (too noisy to alert on)


@dataclass(frozen=True)
class WatchedFeature:
    """Where one feature's columns sit in the input tensors, and what training saw there."""

    name: str
    input: str
    start: int
    stop: int
    statistics: FeatureStatistics


def watched_features(
    columns: list[tuple[str, str, int, int]], served: list[FeatureSpec], metadata: ModelMetadata
) -> list[WatchedFeature]:
    """The features to watch: ``columns`` as ``Preprocessor.feature_columns`` gives them, ``served`` the feature
    specs the pipeline preprocesses with. A feature is watched when training recorded its statistics and the
    pipeline serves it as it was trained (one that overrides its scaling or vocabulary fills other values)."""
    trained = {feature.name: feature for feature in metadata.features}
    serving = {feature.name: feature for feature in served}
    return [WatchedFeature(name, model_input, start, stop, metadata.training_statistics[name])
            for name, model_input, start, stop in columns
            if name in metadata.training_statistics and serving.get(name) == trained.get(name)]  # fmt: skip


def bucket_counts(columns: np.ndarray, statistics: FeatureStatistics) -> np.ndarray:
    """Counts per bucket of a batch: ``columns`` is the feature's (rows, width) slice of an input tensor."""
    buckets = len(statistics.shares)
    if statistics.kind is StatisticsKind.NUMERIC:
        index = np.searchsorted(np.asarray(statistics.edges), columns[:, 0], side="right")
        return np.bincount(index, minlength=buckets)[:buckets]
    if columns.shape[1] > 1:  # one-hot: each row has a 1 in exactly one column
        return np.rint(columns.sum(axis=0)).astype(np.int64)[:buckets]
    return np.bincount(np.clip(columns[:, 0].astype(np.int64), 0, buckets - 1), minlength=buckets)[:buckets]


def training_statistics(columns: np.ndarray, feature: FeatureSpec) -> FeatureStatistics | None:
    """What training writes for one feature (``columns`` as in :func:`bucket_counts`, over the whole training
    set); None for an array feature, which is not watched."""
    if feature.type is FeatureType.ARRAY:
        return None
    if feature.type is FeatureType.NUMERIC:
        quantiles = np.quantile(columns[:, 0], np.linspace(0, 1, NUMERIC_BUCKETS + 1)[1:-1])
        edges = [round(float(edge), 6) for edge in np.unique(quantiles)]  # a constant stretch merges buckets
        even = [1 / (len(edges) + 1)] * (len(edges) + 1)
        buckets = FeatureStatistics(kind=StatisticsKind.NUMERIC, edges=edges, shares=even)
    else:  # the vocabulary, then unknown values (the last one-hot column, or index len(vocabulary))
        width = len(feature.vocabulary or []) + 1
        buckets = FeatureStatistics(kind=StatisticsKind.CATEGORICAL, shares=[1 / width] * width)
    counts = bucket_counts(columns, buckets)
    shares = [round(float(share), 6) for share in counts / max(int(counts.sum()), 1)]
    shares[-1] = max(0.0, round(1 - sum(shares[:-1]), 6))  # rounding must not break the sum (nor go below 0)
    return FeatureStatistics(kind=buckets.kind, edges=buckets.edges, shares=shares)


def psi(expected: np.ndarray, counts: np.ndarray) -> float:
    """Population Stability Index of observed ``counts`` against ``expected`` shares (0 with nothing counted)."""
    total = float(counts.sum())
    if total == 0:
        return 0.0
    actual = np.maximum(counts / total, EMPTY_SHARE)
    expected = np.maximum(expected, EMPTY_SHARE)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


class DriftWindow:
    """Bucket counts of the latest :data:`WINDOW_RECORDS` scored records, per watched feature (kept flat:
    quality/bucket_plan.py says where each feature's buckets are)."""

    def __init__(self, features: list[WatchedFeature], slot_records: int = WINDOW_RECORDS // WINDOW_SLOTS):
        self.features = features
        self.slot_records = slot_records
        self.expected = [np.asarray(f.statistics.shares) for f in features]
        self.plan = BucketPlan(features)
        self.slots: deque[tuple[int, np.ndarray]] = deque(maxlen=WINDOW_SLOTS)
        # The slot being filled is kept as its batches and counted once it is full (or read): counting has a fixed
        # cost per call larger than the per-row cost of a 256-row batch, so one count per slot, not per batch. Only
        # the tensors holding watched features are kept, not copied (the preprocessor makes new ones every batch).
        self._inputs = sorted({plan.input for plan in self.plan.plans})
        self._open: list[dict[str, np.ndarray]] = []
        self._open_records = 0

    def observe(self, inputs: dict[str, np.ndarray]) -> None:
        """Add one batch of preprocessed inputs (the tensors the model is called with) to the slot being filled."""
        rows = len(next(iter(inputs.values()))) if inputs else 0
        if not rows:
            return
        self._open.append({name: inputs[name] for name in self._inputs})
        self._open_records += rows
        if self._open_records >= self.slot_records:
            self.slots.append((self._open_records, self._count_open()))
            self._open, self._open_records = [], 0

    def _count_open(self) -> np.ndarray:
        """The bucket counts of the slot being filled."""
        if not self._open:
            return np.zeros(self.plan.size, dtype=np.int64)
        batches = self._open
        joined = batches[0] if len(batches) == 1 else {name: np.concatenate([b[name] for b in batches])
                                                        for name in batches[0]}  # fmt: skip
        return self.plan.count(joined)[0]

    def records(self) -> int:
        return sum(records for records, _ in self.slots) + self._open_records

    def counts(self) -> list[np.ndarray]:
        """Each watched feature's bucket counts over the window."""
        total = self._count_open()
        for _, slot in self.slots:
            total += slot
        return self.plan.split(total)

    def psi(self) -> dict[str, float]:
        """PSI per feature over the window; empty while it holds fewer than :data:`MIN_RECORDS` records."""
        if self.records() < MIN_RECORDS:
            return {}
        return {f.name: psi(expected, total) for f, expected, total in zip(self.features, self.expected,
                                                                             self.counts(), strict=True)}  # fmt: skip


def dataset_statistics(
    columns: list[tuple[str, str, int, int]], features: list[FeatureSpec], inputs: dict[str, np.ndarray]
) -> dict[str, FeatureStatistics]:
    """``training_statistics`` of a whole training set (``inputs``: its preprocessed tensors; ``columns`` as
    ``Preprocessor.feature_columns`` gives them)."""
    by_name = {feature.name: feature for feature in features}
    result = {}
    for name, model_input, start, stop in columns:
        tensor = inputs[model_input]
        statistics = training_statistics(tensor.reshape(len(tensor), -1)[:, start:stop], by_name[name])
        if statistics is not None:
            result[name] = statistics
    return result
