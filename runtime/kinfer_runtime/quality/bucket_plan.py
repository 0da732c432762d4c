"""The drift window's bucket counts of a batch of rows, for every watched feature at once (pure).

Counting feature by feature (quality/drift.py ``bucket_counts``) takes a few array operations per feature, and at
a batch of 256 records each operation costs more in call overhead than in work (about 75 µs a batch for the fraud
model's seven features). Here the numeric columns of a tensor are copied out once, contiguous and in the edges'
dtype, for one ``searchsorted`` each; the categorical index columns of a tensor are bounded together (ufuncs:
``np.clip``'s wrapper costs more than the work); all of them are counted with one ``bincount`` into a flat array
of every feature's buckets; and the one-hot columns of a tensor are summed at once. That saves about a fifth
(three paired timings: 82 to 61, 76 to 62, 76 to 62 µs a batch). The counts equal ``bucket_counts``' feature by
feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kinfer_runtime.spec.model_metadata import StatisticsKind


@dataclass(frozen=True)
class InputPlan:
    """The watched columns of one input tensor and where their buckets sit in the flat counts."""

    input: str
    numeric_columns: np.ndarray  # one column per numeric feature
    numeric: list[tuple[np.ndarray, int]]  # per numeric feature: its edges, its first bucket
    index_columns: np.ndarray  # one column per categorical feature encoded as an index
    index_last: np.ndarray  # their last bucket (unknown values and out-of-range codes count there)
    index_starts: np.ndarray
    one_hot_columns: np.ndarray  # every one-hot column of a watched feature that has a bucket
    one_hot_targets: np.ndarray  # the bucket each of those columns counts into


class BucketPlan:
    """Where each watched feature's buckets sit in one flat array of counts, and how a batch fills them."""

    def __init__(self, features: list[Any]) -> None:
        """``features``: quality/drift.py ``WatchedFeature``s."""
        self.starts: list[int] = []
        self.size = 0
        grouped: dict[str, dict[str, list[Any]]] = {}
        for feature in features:
            buckets = len(feature.statistics.shares)
            self.starts.append(self.size)
            plan = grouped.setdefault(feature.input, {"numeric": [], "index": [], "one_hot": []})
            if feature.statistics.kind is StatisticsKind.NUMERIC:
                plan["numeric"].append((feature.start, feature.statistics.edges, self.size))
            elif feature.stop - feature.start == 1:
                plan["index"].append((feature.start, buckets - 1, self.size))
            else:
                width = min(feature.stop - feature.start, buckets)
                plan["one_hot"] += [(feature.start + j, self.size + j) for j in range(width)]
            self.size += buckets
        self.plans = [_input_plan(name, kinds) for name, kinds in grouped.items()]

    def count(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, int]:
        """The flat bucket counts of one batch of preprocessed inputs, and its number of rows."""
        counts = np.zeros(self.size, dtype=np.int64)
        rows = 0
        for plan in self.plans:
            tensor = inputs[plan.input]
            rows = len(tensor)
            table = tensor.reshape(rows, -1)
            indices = []
            if plan.numeric:
                # one contiguous row per feature, in the edges' dtype
                columns = table[:, plan.numeric_columns].T.astype(np.float64, order="C")
                indices = [edges.searchsorted(values, side="right") + start
                           for (edges, start), values in zip(plan.numeric, columns, strict=True)]  # fmt: skip
            if plan.index_columns.size:
                # ufuncs, not np.clip: its Python wrapper costs more than the work at this size
                codes = np.minimum(np.maximum(table[:, plan.index_columns].astype(np.int64), 0), plan.index_last)
                indices.append((codes + plan.index_starts).ravel())
            if indices:
                counts += np.bincount(np.concatenate(indices), minlength=self.size)
            if plan.one_hot_columns.size:
                counts[plan.one_hot_targets] += np.rint(table[:, plan.one_hot_columns].sum(axis=0)).astype(np.int64)
        return counts, rows

    def split(self, counts: np.ndarray) -> list[np.ndarray]:
        """Each feature's buckets of flat ``counts``, in the order of the features."""
        return np.split(counts, self.starts[1:]) if self.starts else []


def _input_plan(name: str, kinds: dict[str, list[Any]]) -> InputPlan:
    numeric, index, one_hot = kinds["numeric"], kinds["index"], kinds["one_hot"]
    return InputPlan(
        input=name,
        numeric_columns=np.array([column for column, _, _ in numeric], dtype=np.intp),
        numeric=[(np.asarray(edges, dtype=np.float64), start) for _, edges, start in numeric],
        index_columns=np.array([column for column, _, _ in index], dtype=np.intp),
        index_last=np.array([last for _, last, _ in index], dtype=np.int64),
        index_starts=np.array([start for _, _, start in index], dtype=np.int64),
        one_hot_columns=np.array([column for column, _ in one_hot], dtype=np.intp),
        one_hot_targets=np.array([target for _, target in one_hot], dtype=np.intp),
    )
