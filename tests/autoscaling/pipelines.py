"""Pipeline specs and decisions for the autoscaling tests."""

from __future__ import annotations

from typing import Any

from kinfer_operator.autoscaling.engine import Decision, PipelineAutoscaler
from kinfer_operator.autoscaling.lag import LagReading, PartitionOffsets
from kinfer_runtime.spec import InferencePipeline, InferencePipelineSpec


def spec_dict(
    bootstrap: str = "127.0.0.1:9092", topic: str = "in", partitions: int = 3, **autoscaling: Any
) -> dict[str, Any]:
    return {
        "kafka": {"bootstrapServers": bootstrap},
        "topics": {
            "input": {"name": topic, "partitions": partitions},
            "output": {"name": f"{topic}-out"},
            "deadLetter": {"name": f"{topic}-dlq", "partitions": 1},
        },
        "model": {"name": "fraud", "uri": "/models/fraud"},
        "autoscaling": {"enabled": True, **autoscaling},
    }


def make_spec(**kwargs: Any) -> InferencePipelineSpec:
    return InferencePipelineSpec.model_validate(spec_dict(**kwargs))


def make_pipeline(name: str = "p", namespace: str = "ns", spec: dict[str, Any] | None = None) -> InferencePipeline:
    body = {"metadata": {"name": name, "namespace": namespace}, "spec": spec or spec_dict()}
    return InferencePipeline.model_validate(body)


def decision_for(
    spec: InferencePipelineSpec, lags: list[int], current: int = 1, serving_ready: bool = True
) -> Decision:
    reading = LagReading("in", tuple(PartitionOffsets(p, 0, n, n, 0) for p, n in enumerate(lags)), time=1.0)
    return PipelineAutoscaler.for_spec(spec).step(reading, current, serving_ready)
