"""Assemble and run a pipeline in this process: the one place that wires spec, Kafka settings, model and loop.

``kinfer run`` (``app.py``) calls :func:`run_pipeline` on the main thread; benchmarks and the demo use
:class:`PipelineThread`, which runs the same code on a thread with a stop event and live counters::

    with PipelineThread(pipeline, bootstrap_servers="127.0.0.1:9092") as run:
        ...                      # run.counters.records_out grows; run.loop.metrics has the Prometheus series
    print(run.counters)          # stopped, drained and committed on leaving the block
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinfer_runtime.kafka import settings as kafka_config
from kinfer_runtime.observability.health import LoopState
from kinfer_runtime.observability.logs import fields
from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.pipeline.loop import PipelineLoop
from kinfer_runtime.pipeline.parts import LoopParts
from kinfer_runtime.pipeline.tally import LoopCounters
from kinfer_runtime.spec import Delivery, InferencePipeline

log = logging.getLogger("kinfer.runner")


@dataclass
class RunOptions:
    """The env/CLI overrides of ``kinfer run`` (docs/runtime.md)."""

    bootstrap_servers: str | None = None
    pod_name: str | None = None
    model_path: Path | None = None
    tfserving_endpoint: str | None = None


def build_loop_parts(
    pipeline: InferencePipeline,
    options: RunOptions,
    metrics: RuntimeMetrics | None = None,
    state: LoopState | None = None,
    env: dict[str, str] | None = None,
) -> LoopParts:
    """Everything the loop needs, with the model loaded and warmed up (this is most of the cold start)."""
    from kinfer_runtime.predictors import build_predictor
    from kinfer_runtime.preprocess.formats import build_preprocessor
    from kinfer_runtime.records.predictions import encode_predictions

    spec = pipeline.spec
    bootstrap = options.bootstrap_servers or spec.kafka.bootstrap_servers
    credentials = kafka_config.read_credentials(pipeline, env)
    consumer = kafka_config.consumer_config(pipeline, bootstrap, credentials, options.pod_name)
    if spec.consumer.delivery is Delivery.EXACTLY_ONCE:
        producer = kafka_config.transactional_producer_config(pipeline, bootstrap, credentials, options.pod_name)
    else:
        producer = kafka_config.producer_config(pipeline, bootstrap, credentials)
    log.info(
        "kafka settings",
        extra=fields(consumer=kafka_config.redacted(consumer), producer=kafka_config.redacted(producer)),
    )
    started = time.monotonic()
    predictor = build_predictor(pipeline, model_path=options.model_path, tfserving_endpoint=options.tfserving_endpoint)
    predictor.load()
    log.info(
        "model ready",
        extra=fields(
            model=predictor.model_name,
            model_version=predictor.model_version,
            seconds=round(time.monotonic() - started, 3),
        ),
    )
    state = state or LoopState()
    state.model_loaded = True
    return LoopParts(
        candidate=load_candidate(pipeline, options, predictor),
        pipeline=pipeline,
        consumer_config=consumer,
        producer_config=producer,
        predictor=predictor,
        make_preprocessor=lambda metadata: build_preprocessor(spec, metadata),
        encode_predictions=encode_predictions,
        metrics=metrics or RuntimeMetrics(pipeline.metadata.namespace, pipeline.metadata.name),
        state=state,
    )


def load_candidate(pipeline: InferencePipeline, options: RunOptions, live: Any) -> Any:
    """The rollout's candidate version, loaded beside the live one, or None (no rollout, or a candidate that
    cannot be used: logged, and kinfer_rollout_info says 0; the live version serves all records)."""
    from kinfer_runtime.pipeline.scoring import Candidate
    from kinfer_runtime.predictors import build_predictor
    from kinfer_runtime.preprocess.formats import build_preprocessor
    from kinfer_runtime.preprocess.rescaling import rescaling
    from kinfer_runtime.quality.rollout import incompatibility

    rollout = pipeline.spec.model.rollout
    if rollout is None:
        return None
    version = rollout.candidate_version
    predictor = build_predictor(
        pipeline, model_path=options.model_path, tfserving_endpoint=options.tfserving_endpoint, version=version
    )
    try:
        predictor.load()
        problem = incompatibility(live.metadata, predictor.metadata)
        if problem is not None:
            raise ValueError(problem)
        preprocessor = build_preprocessor(pipeline.spec, predictor.metadata)
        rescale = rescaling(build_preprocessor(pipeline.spec, live.metadata), preprocessor)
        candidate = Candidate(predictor, preprocessor, rescale)
    except Exception as error:  # the live version keeps serving: a rollout must never take the pipeline down
        log.error(
            "rollout candidate not used; the live version serves every record",
            extra=fields(candidate_version=version, model_version=live.model_version, error=error),
        )
        predictor.close()
        return None
    log.info(
        "rollout candidate ready",
        extra=fields(
            mode=rollout.mode.value,
            share=rollout.share,
            candidate_version=version,
            candidate_inputs="rescaled from the live inputs" if rescale is not None else "encoded again",
        ),
    )
    return candidate


def close_predictors(parts: LoopParts) -> None:
    parts.predictor.close()
    if parts.candidate is not None:
        parts.candidate.predictor.close()


def run_pipeline(parts: LoopParts, stop: threading.Event) -> LoopCounters:
    """Run the loop on this thread until ``stop`` is set; drains, commits and closes before returning."""
    loop = PipelineLoop(parts, stop)
    try:
        return loop.run()
    finally:
        close_predictors(parts)


class PipelineThread:
    """A pipeline running on a background thread (benchmarks, the demo, in-process tests)."""

    def __init__(self, pipeline: InferencePipeline, options: RunOptions | None = None, **overrides: Any):
        self.options = options or RunOptions(**overrides)
        self.stop_event = threading.Event()
        self.parts = build_loop_parts(pipeline, self.options)
        self.loop = PipelineLoop(self.parts, self.stop_event)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"kinfer-{pipeline.metadata.name}", daemon=True)

    @property
    def counters(self) -> LoopCounters:
        return self.loop.counters

    def _run(self) -> None:
        try:
            self.loop.run()
        except BaseException as error:  # surfaced by stop()
            self.error = error
            log.exception("pipeline failed")

    def start(self) -> PipelineThread:
        self._thread.start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """True once partitions are assigned (the loop is consuming)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            if self.parts.state.assigned_partitions > 0:
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 60.0) -> LoopCounters:
        self.stop_event.set()
        self._thread.join(timeout)
        if self.error is not None:
            raise RuntimeError("the pipeline thread failed") from self.error
        return self.counters

    def __enter__(self) -> PipelineThread:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        close_predictors(self.parts)
