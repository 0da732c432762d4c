"""The series of a rollout (``spec.model.rollout``), in the runtime's registry: what is being tried, and how the
candidate's predictions compare with the live version's (docs/models.md, "Trying a new version").

Per-version prediction counts and score histograms are the runtime's own ``kinfer_predictions_total`` and
``kinfer_prediction_score`` (a canary's and a shadow's candidate predictions are counted there too, under the
candidate's ``model_version``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from kinfer_runtime.observability.metrics import BulkHistogram
from kinfer_runtime.quality.rollout import DIFFERENCE_BUCKETS, Comparison


class RolloutMetrics:
    def __init__(self, registry: CollectorRegistry, ids: dict[str, str]):
        base = list(ids)
        self.registry = registry
        self._ids = ids
        self._info = Gauge(
            "kinfer_rollout_info",
            "1 while a candidate version is tried beside the live one (0: the candidate could not be used).",
            [*base, "mode", "live_version", "candidate_version", "share"],
            registry=registry,
        )
        self._agreement = Counter(
            "kinfer_rollout_label_agreement",
            "Shadow: records both versions scored, by whether their predicted labels agree.",
            [*base, "live_version", "candidate_version", "agreement"],
            registry=registry,
        )
        self._failures = Counter(
            "kinfer_rollout_candidate_failures",
            "Shadow: records the candidate could not score (its own preprocessing or prediction failed).",
            [*base, "candidate_version", "reason"],
            registry=registry,
        )
        self._differences: dict[tuple[str, int, int], BulkHistogram] = {}

    def set_rollout(self, mode: str, live: int, candidate: int, share: float, active: bool) -> None:
        labels = {"mode": mode, "live_version": str(live), "candidate_version": str(candidate), "share": str(share)}
        self._info.labels(**labels, **self._ids).set(1 if active else 0)
        if active:  # the series exists from the start, so that its rate is 0 rather than absent
            self._failures.labels(candidate_version=str(candidate), reason="Preprocessing", **self._ids)

    def candidate_failed(self, candidate: int, reason: str, count: int) -> None:
        if count:
            self._failures.labels(candidate_version=str(candidate), reason=reason, **self._ids).inc(count)

    def observe(self, live: int, candidate: int, comparison: Comparison) -> None:
        versions = {"live_version": str(live), "candidate_version": str(candidate)}
        if comparison.agreeing:
            self._agreement.labels(agreement="agree", **versions, **self._ids).inc(comparison.agreeing)
        if comparison.disagreeing:
            self._agreement.labels(agreement="disagree", **versions, **self._ids).inc(comparison.disagreeing)
        for output, differences in comparison.differences.items():
            histogram = self._differences.get((output, live, candidate))
            if histogram is None:
                labels = {**self._ids, "output": output, **versions}
                histogram = BulkHistogram(
                    "kinfer_rollout_score_difference",
                    "Shadow: candidate score minus live score, per numeric output, for the records both scored.",
                    labels,
                    DIFFERENCE_BUCKETS,
                )
                self.registry.register(histogram)
                self._differences[(output, live, candidate)] = histogram
            histogram.observe_many(differences)
