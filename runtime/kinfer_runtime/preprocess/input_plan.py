"""The compiled plan of a model version's preprocessing: for each model input, which record fields fill which
columns, with which encoder (:mod:`kinfer_runtime.preprocess.columns`). Checked once, before any record: a feature
spec that cannot fill the inputs raises :class:`PreprocessorError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kinfer_runtime.preprocess.columns import ColumnEncoder, build_column_encoder, offset_and_unit
from kinfer_runtime.spec import FeatureSpec, FeatureType
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
class NumericBlock:
    """The one-column numeric features of an input, encoded together when their values allow
    (columns.py ``encode_numeric_block``): their columns, positions, and scalings."""

    columns: tuple[Column, ...]
    positions: np.ndarray
    offsets: np.ndarray
    units: np.ndarray


@dataclass(frozen=True, slots=True)
class InputPlan:
    name: str
    dtype: np.dtype[Any]
    row_shape: tuple[int, ...]
    width: int
    columns: tuple[Column, ...]
    block: NumericBlock | None = None  # when the input has several numeric features
    others: tuple[Column, ...] = ()  # the columns outside the block


def numeric_block(columns: list[Column], features: dict[str, FeatureSpec]) -> NumericBlock | None:
    numeric = [c for c in columns if features[c.name].type is FeatureType.NUMERIC and c.stop - c.start == 1]
    if len(numeric) < 2:
        return None
    scalings = [offset_and_unit(features[c.name]) for c in numeric]
    return NumericBlock(
        tuple(numeric),
        np.array([c.start for c in numeric], dtype=np.intp),
        np.array([offset for offset, _ in scalings], dtype=np.float64),
        np.array([unit for _, unit in scalings], dtype=np.float64),
    )


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
        block = numeric_block(columns, by_name)
        others = tuple(c for c in columns if block is None or c not in block.columns)
        plans.append(InputPlan(input_name, np.dtype(info.dtype), info.row_shape, start, tuple(columns), block, others))
    return tuple(plans)
