"""Score one batch: the live model version, and a candidate version where ``spec.model.rollout`` says so.

The loop hands over the batch's messages and what the live version's preprocessor made of them; back come the
outputs per version (the live version's first) and the records that failed. A canary's records (a share of
keys) are preprocessed again with the candidate's own kinfer.json (a retrained version may scale its inputs
differently; when scaling is the only difference, the live inputs are rescaled instead: preprocess/rescaling.py)
and scored by it alone; a refusal by the candidate dead-letters only its records. A shadow's candidate scores a
sample of the records after the live version; its predictions are compared and counted (and, with
``topics.shadow``, come back flagged ``shadow`` to be produced there), and nothing that happens to it reaches the
published path. ``PredictorUnavailable`` from a version whose predictions are published holds the batch, as
without a rollout.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from kinfer_runtime.observability.logs import fields
from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.observability.rollout_metrics import RolloutMetrics
from kinfer_runtime.pipeline.parts import PredictorLike, PreprocessorLike
from kinfer_runtime.predictors import PredictionFailed
from kinfer_runtime.preprocess.preprocessor import EncodedBatch
from kinfer_runtime.preprocess.rescaling import Rescaling
from kinfer_runtime.quality.rollout import candidate_mask, compare
from kinfer_runtime.records.dead_letter import PREDICTION_FAILED, Failure
from kinfer_runtime.records.predictions import score_columns
from kinfer_runtime.spec import RolloutMode, RolloutSpec

log = logging.getLogger("kinfer.scoring")


def failures_of(encoded_failures: list[Any], indices: list[int] | None = None) -> list[tuple[int, Failure]]:
    """A preprocessor's failures as (message index, Failure); ``indices[i]``: the message index of the i-th value
    encoded (None: the values were the whole batch). str(getattr(...)): reasons may be a str-valued Enum, whose
    str() is "Class.MEMBER" on Python 3.11."""
    return [
        (
            f.index if indices is None else indices[f.index],
            Failure(str(getattr(f.reason, "value", f.reason)), f.message),
        )
        for f in encoded_failures
    ]


@dataclass(frozen=True)
class Candidate:
    """A loaded candidate version and its preprocessor (built from its own kinfer.json); ``rescale``: its inputs
    from the live version's, when the two differ only in numeric scaling (preprocess/rescaling.py)."""

    predictor: PredictorLike
    preprocessor: PreprocessorLike
    rescale: Rescaling | None = None


@dataclass
class VersionRows:
    """``rows[i]`` (the JSON of a prediction object) is what ``version`` predicted for ``messages[predicted[i]]``."""

    version: int
    predicted: list[int]
    rows: list[bytes]
    predict_s: float = 0.0
    shadow: bool = False  # a shadow candidate's: for topics.shadow, not the output topic


class Scorer:
    def __init__(
        self,
        live: PredictorLike,
        encode_predictions: Any,
        metrics: RuntimeMetrics,
        rollout: RolloutSpec | None,
        candidate: Candidate | None,
        quality: bool = True,
        shadow_topic: bool = False,
    ):
        self.live = live
        self.shadow_topic = shadow_topic  # topics.shadow is set: keep the shadow candidate's predictions
        self.quality = quality  # score histograms and label counts (spec.monitoring.qualityMetrics)
        self.encode_predictions = encode_predictions
        self.metrics = metrics
        self.rollout = rollout
        self.candidate = candidate if rollout is not None else None
        self.rollout_metrics = RolloutMetrics(metrics.registry, metrics.ids) if rollout is not None else None
        if rollout is not None:
            # 0 when the candidate could not be loaded or used (the runtime logged why): the live version serves
            assert self.rollout_metrics is not None
            self.rollout_metrics.set_rollout(
                rollout.mode.value, live.model_version, rollout.candidate_version, rollout.share, candidate is not None
            )

    def score(
        self,
        messages: list[Any],
        predicted: list[int],
        inputs: dict[str, np.ndarray],
        metadata: Any,
        decoded: Any = None,
    ) -> tuple[list[VersionRows], list[tuple[int, Failure]]]:
        """Outputs per version (the live version's first, possibly empty) and the failed records. ``decoded``:
        the live preprocessor's EncodedBatch of ``messages``, whose decoded records a candidate reuses (None: the
        candidate decodes the values itself)."""
        candidate, rollout = self.candidate, self.rollout
        if candidate is None or rollout is None or not predicted:
            live, failures, _ = self._predict(self.live, predicted, inputs, metadata)
            return [live], failures
        records = [messages[i] for i in predicted]

        def places() -> list[tuple[int, int]]:
            return [(m.partition() or 0, m.offset() or 0) for m in records]

        chosen = candidate_mask([m.key() for m in records], places, rollout.share)
        if rollout.mode is RolloutMode.SHADOW:
            live, failures, scored = self._predict(self.live, predicted, inputs, metadata)
            if scored is not None and chosen.any():
                sampled = np.flatnonzero(chosen)
                indices = predicted if len(sampled) == len(predicted) else [predicted[p] for p in sampled]
                encoded = self._candidate_encode(messages, indices, decoded, inputs, sampled)
                shadow = self._shadow(predicted, sampled, encoded, live.version, scored)
                if shadow is not None:
                    return [live, shadow], failures
            return [live], failures
        staying = np.flatnonzero(~chosen)
        live, failures, _ = self._predict(
            self.live, [predicted[p] for p in staying], {k: v[staying] for k, v in inputs.items()}, metadata
        )
        rows = np.flatnonzero(chosen)
        moving = [predicted[p] for p in rows]
        encoded = self._candidate_encode(messages, moving, decoded, inputs, rows)
        failures += failures_of(encoded.failures, moving)
        tried, more, _ = self._predict(
            candidate.predictor, [moving[j] for j in encoded.ok], encoded.inputs, candidate.predictor.metadata
        )
        return [live, tried], failures + more

    def _predict(
        self, predictor: PredictorLike, predicted: list[int], inputs: dict[str, np.ndarray], metadata: Any
    ) -> tuple[VersionRows, list[tuple[int, Failure]], tuple[dict[str, np.ndarray], list[str]] | None]:
        """One version's outputs for ``predicted`` (or their failures), and its score columns."""
        if not predicted:
            return VersionRows(predictor.model_version, [], []), [], None
        started = time.perf_counter()
        try:
            prediction = predictor.predict(inputs)
        except PredictionFailed as error:
            return (
                VersionRows(predictor.model_version, [], []),
                [(i, Failure(PREDICTION_FAILED, str(error))) for i in predicted],
                None,
            )
        rows = self.encode_predictions(prediction, metadata)
        scores = None
        if self.quality or self.rollout is not None:  # a shadow compares the live version's scores
            scores = score_columns(prediction, metadata)
            if self.quality:
                self.metrics.observe_predictions(prediction.model_version, *scores)
        return VersionRows(prediction.model_version, predicted, rows, time.perf_counter() - started), [], scores

    def _candidate_encode(
        self, messages: list[Any], indices: list[int], decoded: Any, inputs: dict[str, np.ndarray], rows: np.ndarray
    ) -> Any:
        """The candidate's inputs for these messages, with its own kinfer.json; positions in ``indices``.
        ``rows``: the same records' rows of the live ``inputs``, which a candidate that only scales differently
        maps to its own."""
        assert self.candidate is not None
        if self.candidate.rescale is not None:
            mapped, ok, failures = self.candidate.rescale.apply(inputs, rows)
            return EncodedBatch(mapped, ok, failures)
        if decoded is not None:
            return self.candidate.preprocessor.encode_documents(decoded.decoded(indices))
        return self.candidate.preprocessor.encode([messages[i].value() for i in indices])

    def _shadow(
        self, predicted: list[int], sampled: np.ndarray, encoded: Any, live_version: int, live: Any
    ) -> VersionRows | None:
        """The candidate scores the sampled records (``encoded``: its inputs for them); compared with the live
        scores, never published. Its rows when they go to topics.shadow."""
        assert self.candidate is not None and self.rollout_metrics is not None
        predictor, version = self.candidate.predictor, self.candidate.predictor.model_version
        self.rollout_metrics.candidate_failed(version, "Preprocessing", len(encoded.failures))
        if not encoded.ok:
            return None
        try:
            prediction = predictor.predict(encoded.inputs)
        except Exception as error:  # the candidate must never stop or slow down what is published
            self.rollout_metrics.candidate_failed(version, type(error).__name__, len(encoded.ok))
            log.warning("shadow candidate failed", extra=fields(error=error, candidate_version=version))
            return None
        scores, labels = score_columns(prediction, predictor.metadata)
        if self.quality:
            self.metrics.observe_predictions(prediction.model_version, scores, labels)
        live_scores, live_labels = live
        scored = sampled[encoded.ok]
        comparison = compare(live_scores, live_labels, scores, labels, scored)
        self.rollout_metrics.observe(live_version, prediction.model_version, comparison)
        if not self.shadow_topic:
            return None
        rows = self.encode_predictions(prediction, predictor.metadata)
        return VersionRows(prediction.model_version, [predicted[p] for p in scored], rows, shadow=True)
