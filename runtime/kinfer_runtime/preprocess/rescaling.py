"""A candidate model version's inputs made from the live version's, when the two preprocess alike but for the
scaling of numeric features: what a version retrained on newer data usually is (same fields, vocabularies and
inputs; new means and spreads).

Each scaled column is then an affine map of the live one: with ``v = (x - o) / k`` for both versions (``o, k``:
preprocess/columns.py offset_and_unit), ``v_candidate = v_live * k_live / k_candidate + (o_live -
o_candidate) / k_candidate``. Two numpy operations per input replace a second pass over the decoded records
(pipeline/scoring.py); any other difference (a field, a vocabulary, a default, an input's layout) means no
rescaling, and the candidate encodes the records itself. Computed in float64 from the live float32 values: the
result matches the candidate's own encoding to float32 rounding (tests/runtime/test_rescaling.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kinfer_runtime.preprocess.columns import FailureReason, offset_and_unit
from kinfer_runtime.preprocess.record_reading import RecordFailure
from kinfer_runtime.spec import FeatureType

_SCALING_FIELDS = {"scaling", "mean", "std", "min", "max"}


@dataclass(frozen=True)
class Rescaling:
    """Per model input, the (factor, offset) arrays of its row shape ((None, None): the same values)."""

    maps: dict[str, tuple[np.ndarray, np.ndarray] | tuple[None, None]]

    def apply(
        self, inputs: dict[str, np.ndarray], rows: np.ndarray
    ) -> tuple[dict[str, np.ndarray], list[int], list[Any]]:
        """The candidate's inputs for ``rows`` of the live inputs, as ``Preprocessor.encode_documents`` would give
        them for those records: (inputs, positions kept, failures by position). A value the candidate's scaling
        takes out of float32's range fails as NonFinite, as it would there."""
        mapped = {}
        finite = np.ones(len(rows), dtype=bool)
        every_row = len(rows) == len(next(iter(inputs.values()), ())) and bool((rows == np.arange(len(rows))).all())
        for name, values in inputs.items():
            chosen = values if every_row else values[rows]  # a shadow of every record reads the live inputs as they are
            factor, offset = self.maps[name]
            if factor is None:  # nothing of this input scales differently (categorical codes, unchanged features)
                mapped[name] = chosen
                continue
            with np.errstate(over="ignore", invalid="ignore"):
                result = (chosen * factor + offset).astype(values.dtype)
            if result.dtype.kind == "f":
                finite &= np.isfinite(result.reshape(len(rows), -1)).all(axis=1)
            mapped[name] = result
        if finite.all():
            return mapped, list(range(len(rows))), []
        kept = np.flatnonzero(finite)
        failures = [
            RecordFailure(
                int(p), FailureReason.NON_FINITE, "a value is not a finite float32 after the candidate's scaling"
            )
            for p in np.flatnonzero(~finite)
        ]
        return {name: values[kept] for name, values in mapped.items()}, kept.tolist(), failures


def rescaling(live: Any, candidate: Any) -> Rescaling | None:
    """The rescaling from ``live``'s inputs to ``candidate``'s (two JSON-record ``Preprocessor``), or None when they
    differ in more than numeric scaling."""
    if type(live) is not type(candidate) or not hasattr(live, "plans") or not hasattr(live, "features"):
        return None
    live_features = {feature.name: feature for feature in live.features}
    candidate_features = {feature.name: feature for feature in candidate.features}
    if live_features.keys() != candidate_features.keys():
        return None
    for name, feature in live_features.items():
        other = candidate_features[name]
        if feature.model_dump(exclude=_SCALING_FIELDS) != other.model_dump(exclude=_SCALING_FIELDS):
            return None
    live_plans = {plan.name: plan for plan in live.plans}
    candidate_plans = {plan.name: plan for plan in candidate.plans}
    if live_plans.keys() != candidate_plans.keys():
        return None
    maps = {}
    for name, plan in live_plans.items():
        other = candidate_plans[name]
        layout = [(column.name, column.start, column.stop) for column in plan.columns]
        if (plan.dtype, plan.row_shape, plan.width) != (other.dtype, other.row_shape, other.width) or layout != [
            (column.name, column.start, column.stop) for column in other.columns
        ]:
            return None
        factor, offset = np.ones(plan.width), np.zeros(plan.width)
        for column in plan.columns:
            if live_features[column.name].type is FeatureType.CATEGORICAL:
                continue
            (o_live, k_live), (o_new, k_new) = (
                offset_and_unit(live_features[column.name]),
                offset_and_unit(candidate_features[column.name]),
            )
            factor[column.start : column.stop] = k_live / k_new
            offset[column.start : column.stop] = (o_live - o_new) / k_new
        identity = bool((factor == 1).all() and (offset == 0).all())
        maps[name] = (None, None) if identity else (factor.reshape(plan.row_shape), offset.reshape(plan.row_shape))
    return Rescaling(maps)
