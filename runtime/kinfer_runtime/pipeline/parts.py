"""What the runtime loop is built from: the model-side interfaces it calls (structurally typed, so tests and
benchmarks can pass their own), the output side it hands batches to, and the assembled parts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from kinfer_runtime.observability.health import LoopState
from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.spec import InferencePipeline


class PreprocessorLike(Protocol):
    features: list[Any]  # the feature specs it encodes with

    def encode(self, values: Sequence[bytes | None]) -> Any: ...
    def encode_documents(self, docs: Sequence[Any]) -> Any: ...
    def feature_columns(self) -> list[tuple[str, str, int, int]]: ...


class PredictorLike(Protocol):
    model_name: str

    @property
    def model_version(self) -> int: ...
    @property
    def metadata(self) -> Any: ...
    def predict(self, inputs: dict[str, np.ndarray]) -> Any: ...
    def ready(self) -> bool: ...
    def maybe_reload(self) -> bool: ...
    def close(self) -> None: ...


class DeliverySide(Protocol):
    """What the loop asks of its output side (:mod:`kinfer_runtime.pipeline.at_least_once` or
    :mod:`kinfer_runtime.pipeline.exactly_once`); the assignment's callbacks reach it through the loop. The loop
    swaps in a new ``consumer`` or ``producer`` when one is stranded (see kinfer_runtime.kafka.client_events)."""

    consumer: Any
    producer: Any

    def start(self) -> None: ...
    def submit(self, messages: list[Any], assembled: Any) -> None: ...
    def records_in_flight(self) -> int: ...
    def held(self) -> bool: ...
    def serve(self, timeout: float = 0.0) -> None: ...
    def input_idle(self) -> None: ...
    def before_hold(self) -> None: ...
    def revoke(self, partitions: set[tuple[str, int]]) -> None: ...
    def lose(self, partitions: set[tuple[str, int]]) -> None: ...
    def close(self, grace_s: float) -> None: ...


@dataclass
class LoopParts:
    """What the loop needs, built by :func:`kinfer_runtime.pipeline.runner.build_loop_parts` (or a test).

    ``make_preprocessor(metadata)`` is called again whenever the predictor swaps in a new model version (its
    feature spec may differ); ``encode_predictions(prediction, metadata)`` gives the JSON of each row's
    ``prediction`` object."""

    pipeline: InferencePipeline
    consumer_config: dict[str, Any]
    producer_config: dict[str, Any]
    predictor: PredictorLike
    make_preprocessor: Callable[[Any], PreprocessorLike]
    encode_predictions: Callable[[Any, Any], Sequence[bytes]]
    metrics: RuntimeMetrics
    state: LoopState = field(default_factory=LoopState)
    candidate: Any = None  # a pipeline.scoring.Candidate while spec.model.rollout tries another version
