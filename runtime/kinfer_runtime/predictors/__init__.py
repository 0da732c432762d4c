"""Predictors: how a batch of input tensors becomes outputs, in-process (``embedded``) or via TF Serving.

``build_predictor`` picks the implementation from ``spec.serving.mode``; the loop then calls ``load()`` once,
``predict()`` per batch and ``maybe_reload()`` between batches (see :mod:`kinfer_runtime.predictors.base`).
"""

from __future__ import annotations

import os
from pathlib import Path

from kinfer_runtime.predictors.base import (
    Prediction,
    PredictionFailed,
    Predictor,
    PredictorUnavailable,
    bucket_sizes,
)
from kinfer_runtime.spec import InferencePipeline, ServingMode, VersionPolicy
from kinfer_runtime.spec.model_metadata import resolve_model_dir

__all__ = [
    "Prediction",
    "PredictionFailed",
    "Predictor",
    "PredictorUnavailable",
    "bucket_sizes",
    "build_predictor",
    "default_tfserving_endpoint",
]


def default_tfserving_endpoint(pipeline: InferencePipeline) -> str:
    """``KINFER_TFSERVING_ENDPOINT``, else spec.serving.tfserving.endpoint, else the operator's Service."""
    return os.environ.get("KINFER_TFSERVING_ENDPOINT") or pipeline.tfserving_address


def build_predictor(
    pipeline: InferencePipeline,
    *,
    model_path: Path | None = None,
    tfserving_endpoint: str | None = None,
    version: int | None = None,
) -> Predictor:
    """The predictor the spec asks for. ``model_path`` replaces the model URI with a local directory; ``version``
    pins another version than the spec's (a rollout's candidate)."""
    spec = pipeline.spec
    model_dir = Path(model_path) if model_path is not None else resolve_model_dir(spec.model.uri)
    pinned = spec.model.version if spec.model.version_policy is VersionPolicy.PINNED else None
    pinned = version if version is not None else pinned
    if spec.serving.mode is ServingMode.TFSERVING:
        from kinfer_runtime.predictors.tfserving import TfServingPredictor

        return TfServingPredictor(
            spec.model.name,
            tfserving_endpoint or default_tfserving_endpoint(pipeline),
            spec.serving.tfserving,
            model_dir=model_dir,
            pinned_version=pinned,
        )
    from kinfer_runtime.predictors.embedded import EmbeddedPredictor

    embedded = spec.serving.embedded
    return EmbeddedPredictor(
        spec.model.name,
        model_dir,
        pinned_version=pinned,
        max_batch_size=spec.consumer.max_batch_size,
        intra_op_threads=embedded.intra_op_threads,
        inter_op_threads=embedded.inter_op_threads,
        reload_check_seconds=embedded.reload_check_seconds,
    )
