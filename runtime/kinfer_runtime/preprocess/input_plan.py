"""The compiled plan of a model version's preprocessing: for each model input, which record fields fill which
columns, with which encoder (:mod:`kinfer_runtime.preprocess.columns`). Checked once, before any record: a feature
spec that cannot fill the inputs raises :class:`PreprocessorError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kinfer_runtime.preprocess.columns import ColumnEncoder, build_column_encoder
from kinfer_runtime.spec import FeatureSpec
from kinfer_runtime.spec.model_metadata import TensorInfo, columns_of


class PreprocessorError(ValueError):
    """A feature spec that cannot fill the model's inputs (found when compiling, before any record)."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str  # record field
    start: int
    stop: int
    encode: ColumnEncoder


@dataclass(frozen=True, slots=True)
class InputPlan:
    name: str
    dtype: np.dtype[Any]
    row_shape: tuple[int, ...]
    width: int
    columns: tuple[Column, ...]


def plan_inputs(
    features: list[FeatureSpec], inputs: dict[str, TensorInfo], mapping: dict[str, list[str]]
) -> tuple[InputPlan, ...]:
    """Which features fill which columns of which model input; ``mapping``: input → its features in column order
    (features it does not name go to the only input, if there is one)."""
    by_name = {feature.name: feature for feature in features}
    mapped = {name for names in mapping.values() for name in names}
    unmapped = [feature.name for feature in features if feature.name not in mapped]
    if unmapped:
        if len(inputs) != 1:
            raise PreprocessorError(f"features {unmapped} are not mapped to any of the inputs {sorted(inputs)}")
        only = next(iter(inputs))
        mapping[only] = [*mapping.get(only, []), *unmapped]
    plans = []
    for input_name, info in inputs.items():
        names = mapping.get(input_name)
        if not names:
            raise PreprocessorError(f"no feature fills model input {input_name!r}")
        missing = [name for name in names if name not in by_name]
        if missing:
            raise PreprocessorError(f"model input {input_name!r} needs features {missing}, which are not defined")
        columns, start = [], 0
        for name in names:
            width = columns_of(by_name[name])
            columns.append(Column(name, start, start + width, build_column_encoder(by_name[name])))
            start += width
        expected = int(np.prod(info.row_shape)) if info.row_shape else 1
        if start != expected:
            raise PreprocessorError(
                f"model input {input_name!r} has {expected} values per row (shape {info.shape}) but its features "
                f"{names} give {start} columns"
            )
        plans.append(InputPlan(input_name, np.dtype(info.dtype), info.row_shape, start, tuple(columns)))
    return tuple(plans)
