"""What the runtime loop is built from: the model-side interfaces it calls (structurally typed, so tests and
benchmarks can pass their own), the assembled parts, and the running counters it exposes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from kinfer_runtime.observability.health import LoopState
from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.spec import InferencePipeline


class Encoded(Protocol):
    inputs: dict[str, np.ndarray]
    ok: list[int]
    failures: Sequence[Any]  # RecordFailure: index, reason, message


class PreprocessorLike(Protocol):
    def encode(self, values: Sequence[bytes | None]) -> Any: ...


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


@dataclass
class LoopCounters:
    """Running totals, readable from another thread (benchmarks, the demo)."""

    records_in: int = 0
    records_out: int = 0
    dead_lettered: int = 0
    batches: int = 0
    committed_batches: int = 0
    redelivered: int = 0
    transactions_aborted: int = 0
    latencies_s: list[float] = field(default_factory=list)  # end-to-end samples of recent batches (bounded)


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
    encode_predictions: Callable[[Any, Any], list[bytes]]
    metrics: RuntimeMetrics
    state: LoopState = field(default_factory=LoopState)
