"""Preprocessing: a batch of raw record values → the model's input tensors, plus a reason for every bad record.

The feature spec (from the model's ``kinfer.json``, with overrides from ``spec.preprocessing.features``) is
compiled once into a plan: for each model input, which features fill which columns and with which encoder
(:mod:`kinfer_runtime.preprocess.input_plan`). ``encode`` then decodes the values (the usual batch straight into
its features' types: :mod:`kinfer_runtime.preprocess.typed_decoding`; any other with orjson, record by record where
needed), optionally runs the custom hook on the decoded batch, and fills preallocated numpy buffers column by
column. A bad record never raises: it is listed in ``failures`` with a stable reason and left out of the tensors.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from typing import Any

import numpy as np
import orjson

from kinfer_runtime.preprocess.columns import FailureReason, encode_numeric_block, short_repr
from kinfer_runtime.preprocess.input_plan import PreprocessorError, plan_inputs
from kinfer_runtime.preprocess.record_reading import RecordFailure, json_failure, unreadable
from kinfer_runtime.preprocess.typed_decoding import TypedDecoder
from kinfer_runtime.spec import FeatureSpec, InferencePipelineSpec
from kinfer_runtime.spec.model_metadata import ModelMetadata, TensorInfo

__all__ = ["EncodedBatch", "FailureReason", "Preprocessor", "PreprocessorError", "RecordFailure", "load_hook"]

Hook = Callable[[list[dict[str, Any]]], "list[dict[str, Any] | BaseException] | None"]


@dataclass(slots=True)
class EncodedBatch:
    inputs: dict[str, np.ndarray]  # one row per ok record, in order
    ok: list[int] = field(default_factory=list)  # indices into the values passed to encode
    failures: list[RecordFailure] = field(default_factory=list)
    # The decoded records (after the hook) and their indices into the values, for another version's preprocessor
    # (encode_documents): a candidate model version reuses the decoding instead of parsing every record again.
    documents: list[Any] = field(default_factory=list)  # JSON objects; one array each for tensor records
    positions: list[int] = field(default_factory=list)
    # The values themselves instead, when they were decoded into typed fields only (typed_decoding.py): every one
    # a JSON object, parsed again if another version asks for them (a canary's records, not every batch's).
    undecoded: Sequence[Any] | None = None

    def decoded(self, indices: Sequence[int]) -> list[Any]:
        """The decoded records of these indices (each must have been decoded)."""
        if self.undecoded is not None:
            return [orjson.loads(self.undecoded[index]) for index in indices]
        by_index = dict(zip(self.positions, self.documents, strict=True))
        return [by_index[index] for index in indices]


def load_hook(path: str) -> Hook:
    """Import ``module:function``."""
    module_name, _, function_name = path.partition(":")
    function = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(function):
        raise PreprocessorError(f"preprocessing hook {path!r}: {module_name} has no function {function_name!r}")
    return function


def merge_features(base: Sequence[FeatureSpec], overrides: Sequence[FeatureSpec]) -> list[FeatureSpec]:
    """``base`` with same-named features replaced by ``overrides``, other overrides appended (in order)."""
    by_name = {feature.name: feature for feature in overrides}
    merged = [by_name.pop(feature.name, feature) for feature in base]
    return merged + [feature for feature in overrides if feature.name in by_name]


class Preprocessor:
    """Compiled preprocessing for one model version; ``encode`` is pure and safe to call from one thread."""

    def __init__(
        self,
        features: Sequence[FeatureSpec],
        inputs: dict[str, TensorInfo],
        feature_inputs: dict[str, list[str]] | None = None,
        *,
        max_record_bytes: int = 1_048_576,
        hook: Hook | None = None,
    ) -> None:
        self.features = list(features)
        self.max_record_bytes = max_record_bytes
        self.hook = hook
        self.plans = plan_inputs(self.features, inputs, dict(feature_inputs or {}))
        # A hook may read any field and change any: it needs every record's whole dict.
        self.typed = TypedDecoder.for_features(self.features, max_record_bytes) if hook is None else None

    @classmethod
    def from_spec(cls, spec: InferencePipelineSpec, metadata: ModelMetadata) -> Preprocessor:
        settings = spec.preprocessing
        base = metadata.features if settings.from_model_metadata else []
        features = merge_features(base, settings.features or [])
        mapping = metadata.feature_inputs if settings.from_model_metadata else {}
        hook = load_hook(settings.hook) if settings.hook else None
        return cls(features, metadata.inputs, mapping, max_record_bytes=settings.max_record_bytes, hook=hook)

    def encode(self, values: Sequence[bytes | str | None]) -> EncodedBatch:
        columns = self.typed.decode(values) if self.typed is not None else None
        if columns is not None:  # the usual batch: every feature there, of the right type
            positions = list(range(len(values)))
            encoded = self._fill(len(values), columns.__getitem__, positions, {}, typed=True)
            encoded.positions, encoded.undecoded = positions, values
            return encoded
        docs, positions, failures = self._decode_batch(values)
        if self.hook is not None and docs:
            docs, positions = self._run_hook(docs, positions, failures)
        encoded = self._fill(len(docs), partial(_field, docs), positions, failures)
        encoded.documents, encoded.positions = docs, positions
        return encoded

    def _decode_batch(
        self, values: Sequence[bytes | str | None]
    ) -> tuple[list[dict[str, Any]], list[int], dict[int, RecordFailure]]:
        """The JSON objects of the values, their indices, and why the others are not objects."""
        try:
            # The usual batch, every value a JSON object within the size limit: decoded by C-level maps, with no
            # Python code per record. Anything else (None has no len, orjson's error is a ValueError, another
            # JSON type) goes record by record below, which says what is wrong with which.
            unchecked: Sequence[Any] = values
            if unchecked and max(map(len, unchecked)) <= self.max_record_bytes:
                documents = list(map(orjson.loads, unchecked))
                if set(map(type, documents)) == {dict}:
                    return documents, list(range(len(documents))), {}
        except (TypeError, ValueError):
            pass
        failures: dict[int, RecordFailure] = {}
        docs: list[dict[str, Any]] = []
        positions: list[int] = []
        loads, limit = orjson.loads, self.max_record_bytes
        for index, value in enumerate(values):
            if value and len(value) <= limit:  # the common case inline: one call per record is a cost here
                try:
                    document = loads(value)
                except orjson.JSONDecodeError:
                    pass
                else:
                    if type(document) is dict:
                        docs.append(document)
                        positions.append(index)
                        continue
            document, failure = self._decode(index, value)
            if failure is not None:
                failures[index] = failure
            else:
                docs.append(document)
                positions.append(index)
        return docs, positions, failures

    def encode_documents(self, docs: Sequence[dict[str, Any]]) -> EncodedBatch:
        """``encode`` for records decoded already (``EncodedBatch.documents`` of another version's preprocessor:
        the hook has run on them); indices are positions in ``docs``."""
        return self._fill(len(docs), partial(_field, docs), list(range(len(docs))), {})

    def _fill(
        self,
        rows: int,
        field_of: Callable[[str], Sequence[Any]],
        positions: list[int],
        failures: dict[int, RecordFailure],
        typed: bool = False,
    ) -> EncodedBatch:
        """Fill the model's inputs from ``rows`` decoded records; ``field_of(name)``: that field of each (None
        where missing); ``positions[row]``: the index of record ``row``. ``typed``: every field holds the type its
        encoder takes (typed_decoding.py), so the numeric block needs no type check."""

        def fail(row: int, reason: FailureReason, message: str) -> None:
            index = positions[row]
            if index not in failures:  # the first problem of a record is the one reported
                failures[index] = RecordFailure(index, reason, message)

        buffers = {}
        for plan in self.plans:
            buffer = np.zeros((rows, plan.width), dtype=plan.dtype)
            columns = plan.columns
            if plan.block is not None:
                block = plan.block
                fields = [field_of(column.name) for column in block.columns]
                scaled = encode_numeric_block(fields, block.offsets, block.units, plan.dtype, checked=typed)
                if scaled is not None:  # else every column below, each finding its own failures
                    buffer[:, block.positions] = scaled
                    columns = plan.others
            for column in columns:
                column.encode(field_of(column.name), buffer[:, column.start : column.stop], fail)
            buffers[plan.name] = buffer
        if not failures:  # the usual batch: every record kept, in order
            inputs = {plan.name: buffers[plan.name].reshape((rows, *plan.row_shape)) for plan in self.plans}
            return EncodedBatch(inputs, list(positions), [])
        keep = [row for row, index in enumerate(positions) if index not in failures]
        all_kept = len(keep) == rows
        inputs = {}
        for plan in self.plans:
            buffer = buffers[plan.name] if all_kept else buffers[plan.name][keep]
            inputs[plan.name] = buffer.reshape((len(keep), *plan.row_shape))
        return EncodedBatch(inputs, [positions[row] for row in keep], sorted(failures.values(), key=_by_index))

    def feature_columns(self) -> list[tuple[str, str, int, int]]:
        """(feature, model input, its first column, the column after its last) for every feature."""
        return [(column.name, plan.name, column.start, column.stop) for plan in self.plans for column in plan.columns]

    def empty_inputs(self, rows: int) -> dict[str, np.ndarray]:
        """Zero-filled inputs of ``rows`` rows (model warm-up, padding)."""
        return {plan.name: np.zeros((rows, *plan.row_shape), dtype=plan.dtype) for plan in self.plans}

    def _decode(self, index: int, value: bytes | str | None) -> tuple[Any, RecordFailure | None]:
        failure = unreadable(index, value, self.max_record_bytes)
        if failure is not None or value is None:
            return None, failure
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError as error:
            document, failure = json_failure(index, value, error)
            if failure is not None:
                return None, failure
        if type(document) is not dict:
            message = f"the record must be a JSON object, got {type(document).__name__}"
            return None, RecordFailure(index, FailureReason.NOT_AN_OBJECT, message)
        return document, None

    def _run_hook(
        self, docs: list[dict[str, Any]], positions: list[int], failures: dict[int, RecordFailure]
    ) -> tuple[list[dict[str, Any]], list[int]]:
        assert self.hook is not None
        try:
            returned = self.hook(docs)
        except Exception as error:  # the hook is user code: any exception fails its whole batch, never the loop
            for index in positions:
                failures[index] = RecordFailure(index, FailureReason.HOOK_ERROR, f"hook raised {error!r}")
            return [], []
        if returned is None:
            return docs, positions
        if len(returned) != len(docs):
            message = f"hook returned {len(returned)} records for {len(docs)}"
            for index in positions:
                failures[index] = RecordFailure(index, FailureReason.HOOK_ERROR, message)
            return [], []
        kept_docs, kept_positions = [], []
        for index, result in zip(positions, returned, strict=True):
            if isinstance(result, dict):
                kept_docs.append(result)
                kept_positions.append(index)
            else:
                message = f"hook rejected the record: {short_repr(result, 200)}"
                failures[index] = RecordFailure(index, FailureReason.HOOK_ERROR, message)
        return kept_docs, kept_positions


def _field(docs: Sequence[dict[str, Any]], name: str) -> list[Any]:
    """Field ``name`` of each decoded record, None where it is missing (a C-level map)."""
    return list(map(dict.get, docs, repeat(name)))


def _by_index(failure: RecordFailure) -> int:
    return failure.index
