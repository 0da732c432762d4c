"""InferencePipelines over the example models (``models/``) for unit tests: one place for the boilerplate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kinfer_runtime.preprocess.formats import build_preprocessor
from kinfer_runtime.spec import InferencePipeline, parse_pipeline
from kinfer_runtime.spec.model_metadata import load_model_metadata

MODELS = Path(__file__).resolve().parents[2] / "models"


def example_pipeline(model: str, preprocessing: dict[str, Any] | None = None) -> InferencePipeline:
    """A pipeline named after ``model`` (a directory of ``models/``), with this ``spec.preprocessing``."""
    return parse_pipeline({
        "apiVersion": "kinfer.io/v1alpha1",
        "kind": "InferencePipeline",
        "metadata": {"name": model, "namespace": "examples"},
        "spec": {
            "kafka": {"bootstrapServers": "localhost:9092"},
            "topics": {"input": {"name": "in"}, "output": {"name": "out"}, "deadLetter": {"name": "dlq"}},
            "model": {"name": model, "uri": f"pvc://models/{model}"},
            "preprocessing": preprocessing or {},
        },
    })  # fmt: skip


def example_preprocessor(model: str, version: int, preprocessing: dict[str, Any] | None = None) -> Any:
    """The preprocessor ``build_preprocessor`` gives for that model version and preprocessing."""
    pipeline = example_pipeline(model, preprocessing)
    return build_preprocessor(pipeline.spec, load_model_metadata(MODELS / model / str(version)))
