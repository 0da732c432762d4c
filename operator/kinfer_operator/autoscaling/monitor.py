"""The operator's lag monitor: a thread that polls Kafka every few seconds and keeps each pipeline's decision.

The reconcile registers pipelines (``track``/``forget``) and reads the latest decision for status; the
external metrics API reads it for the HPA. Per poll and pipeline: read offsets (``poller``), read the
consumer (and TF Serving) Deployment, run the pure ``PipelineAutoscaler``, and act only for scale to or from
zero (the one move the HPA can't make). Everything is in memory: after a restart the first polls rebuild it.

A pipeline with a rollout in its spec is polled too when its autoscaling is off: the commits' metadata that the
poll reads carries the records scored per model version, which its status shows during the rollout. Such a
pipeline's decision is never acted on, exported or served to the HPA (:func:`watched`).

The Kafka Secrets a pipeline names are read again every :data:`SECRETS_REFRESH_SECONDS` and after a failed poll,
so that a rotated password reaches the poller without a spec change; a poller whose settings no tracked pipeline
uses any more is closed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kinfer_operator import metrics
from kinfer_operator.autoscaling.engine import Decision, PipelineAutoscaler, read_committed
from kinfer_operator.autoscaling.lag import LagReading
from kinfer_operator.autoscaling.poller import KafkaLagPoller
from kinfer_operator.builders import naming
from kinfer_operator.builders.manifests import content_hash
from kinfer_operator.k8s.client import Kube, kafka_secrets, object_path
from kinfer_operator.kafka.admin import admin_config
from kinfer_runtime.spec import AutoscalingProvider, InferencePipelineSpec

log = logging.getLogger(__name__)
POLL_WORKERS = 8
SECRETS_REFRESH_SECONDS = 30.0


@dataclass
class TrackedPipeline:
    namespace: str
    name: str
    spec: InferencePipelineSpec
    autoscaler: PipelineAutoscaler
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets_read_at: float | None = None  # monotonic; None: read them at the next poll
    poller_key: str | None = None  # which cached poller the last poll used
    decision: Decision | None = None
    reading: LagReading | None = None  # of the last successful poll
    error: str | None = None
    polled_at: float | None = None  # monotonic time of the last successful poll


class LagMonitor:
    """Thread-safe registry of pipelines plus the poll loop (``start``/``stop``, or ``poll_once`` in tests)."""

    def __init__(self, kube: Kube | None, poll_seconds: float = 5.0, active: Callable[[], bool] = lambda: True):
        """``active()``: whether this operator replica is the active one; only that one scales to or from zero
        (every replica polls, so that whichever the external metrics API's Service picks has a fresh value)."""
        self.kube = kube
        self.poll_seconds = poll_seconds
        self.active = active
        self._pipelines: dict[tuple[str, str], TrackedPipeline] = {}
        self._pollers: dict[str, KafkaLagPoller] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers = ThreadPoolExecutor(max_workers=POLL_WORKERS, thread_name_prefix="kinfer-lag-poll")
        self.scale_actions: list[tuple[str, str, int]] = []  # (namespace, pipeline, replicas), for tests and logs

    # --- registry (called by the reconcile) -----------------------------------------------------------------

    def track(
        self, namespace: str, name: str, spec: InferencePipelineSpec, secrets: dict[str, dict[str, str]] | None = None
    ) -> None:
        with self._lock:
            tracked = self._pipelines.get((namespace, name))
            if tracked is None:
                self._pipelines[(namespace, name)] = TrackedPipeline(
                    namespace, name, spec, PipelineAutoscaler.for_spec(spec), dict(secrets or {})
                )
            elif tracked.spec != spec:
                tracked.spec = spec
                tracked.autoscaler.configure(spec)
                tracked.secrets_read_at = None  # re-read: the spec may name other Secrets now
            if tracked is not None and secrets is not None:
                tracked.secrets, tracked.secrets_read_at = dict(secrets), time.monotonic()

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            tracked = self._pipelines.pop((namespace, name), None)
        if tracked is not None and tracked.decision is not None:
            for partition in tracked.decision.lag_by_partition:
                with contextlib.suppress(KeyError):
                    metrics.PIPELINE_PARTITION_LAG.remove(namespace, name, str(partition))

    def observe(self, namespace: str, name: str, spec: InferencePipelineSpec) -> tuple[TrackedPipeline | None, bool]:
        """The reconcile's call: track the pipeline while it is :func:`watched` (forget it otherwise), and return
        its latest state with whether the last successful poll is recent (a failed poll since is a blip)."""
        if not watched(spec):
            self.forget(namespace, name)
            return None, False
        self.track(namespace, name, spec)
        tracked = self.latest(namespace, name)
        return tracked, tracked is not None and self.is_fresh(tracked)

    def latest(self, namespace: str, name: str) -> TrackedPipeline | None:
        with self._lock:
            return self._pipelines.get((namespace, name))

    def is_fresh(self, tracked: TrackedPipeline) -> bool:
        """Polled successfully within three periods (+10 s): older decisions are neither served nor trusted."""
        horizon = time.monotonic() - 3 * self.poll_seconds - 10
        return tracked.decision is not None and (tracked.polled_at or 0) >= horizon

    def fresh_decisions(self, namespace: str) -> list[tuple[str, Decision]]:
        """The namespace's pipelines with a fresh decision (what the external metrics API may serve)."""
        with self._lock:
            pipelines = [p for p in self._pipelines.values() if p.namespace == namespace]
        return [(p.name, p.decision) for p in pipelines
                if p.spec.autoscaling.enabled and p.decision is not None and self.is_fresh(p)]  # fmt: skip

    # --- the loop -------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kinfer-lag-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)  # a poll is a few requests of at most 10 s each
            if self._thread.is_alive():  # closing clients a poll still uses could crash the process: leave them
                log.warning("lag monitor still polling after 60 s; its Kafka clients are left open")
                return
        self._workers.shutdown(wait=True)
        with self._lock:
            pollers, self._pollers = list(self._pollers.values()), {}
        for poller in pollers:
            poller.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.poll_once()
            self._stop.wait(max(0.0, self.poll_seconds - (time.monotonic() - started)))

    def poll_once(self) -> None:
        with self._lock:
            pipelines = list(self._pipelines.values())
        # a few pipelines at a time: each poll is ~6 round trips to Kafka, mostly waiting
        list(self._workers.map(self._poll_safely, pipelines))
        self._close_unused_pollers()

    def _poll_safely(self, tracked: TrackedPipeline) -> None:
        try:
            self._poll(tracked)
        except Exception as error:  # one broken pipeline (or cluster) must not stop the others
            tracked.error = f"{type(error).__name__}: {error}"
            log.warning("lag poll of %s/%s failed: %s", tracked.namespace, tracked.name, tracked.error)

    def _poll(self, tracked: TrackedPipeline) -> None:
        spec = tracked.spec
        now = time.monotonic()
        stale = tracked.secrets_read_at is None or now - tracked.secrets_read_at >= SECRETS_REFRESH_SECONDS
        if self.kube is not None and (stale or tracked.error is not None):
            tracked.secrets, tracked.secrets_read_at = kafka_secrets(self.kube, tracked.namespace, spec.kafka), now
        tracked.poller_key, poller = self._poller(admin_config(spec.kafka, tracked.secrets))
        group = spec.consumer_group(tracked.name)
        reading = poller.read(spec.topics.input.name, group, read_committed(spec))
        current, serving_ready = self._workload(tracked)
        decision = tracked.autoscaler.step(reading, current, serving_ready)
        keda = spec.autoscaling.provider is AutoscalingProvider.KEDA  # KEDA does 0 <-> 1 itself
        acting = self.kube is not None and not keda and spec.autoscaling.enabled and self.active()
        if decision.scale_to is not None and decision.scale_to != current and acting:
            self._scale(tracked, decision.scale_to)
        tracked.decision, tracked.reading, tracked.error, tracked.polled_at = decision, reading, None, time.monotonic()
        if spec.autoscaling.enabled:
            export_gauges(tracked.namespace, tracked.name, decision)

    def _poller(self, config: dict[str, Any]) -> tuple[str, KafkaLagPoller]:
        key = content_hash(config)
        with self._lock:
            if key not in self._pollers:
                self._pollers[key] = KafkaLagPoller(config)
            return key, self._pollers[key]

    def _close_unused_pollers(self) -> None:
        """Close the pollers of settings no pipeline uses any more (a rotated password, a forgotten pipeline), so
        that neither connections with old credentials nor their threads pile up. Called between polls."""
        with self._lock:
            used = {p.poller_key for p in self._pipelines.values()}
            unused = [key for key in self._pollers if key not in used]
            closing = [self._pollers.pop(key) for key in unused]
        for poller in closing:
            poller.close()

    def _workload(self, tracked: TrackedPipeline) -> tuple[int, bool]:
        """The consumer Deployment's replicas and whether the model server is Ready (True in embedded mode)."""
        if self.kube is None:
            return 0, True
        path = object_path("apps/v1", "Deployment", tracked.namespace, naming.consumer_name(tracked.name))
        live = self.kube.request("GET", path) or {}
        replicas = int((live.get("spec") or {}).get("replicas") or 0)
        serving = tracked.spec.serving
        if not serving.deploys_tfserving:
            return replicas, True
        path = object_path("apps/v1", "Deployment", tracked.namespace, naming.tfserving_name(tracked.name))
        server = self.kube.request("GET", path) or {}
        wanted = int((server.get("spec") or {}).get("replicas") or 0)
        available = int((server.get("status") or {}).get("availableReplicas") or 0)
        return replicas, available >= max(1, wanted)

    def _scale(self, tracked: TrackedPipeline, replicas: int) -> None:
        assert self.kube is not None
        # the Deployment itself (not /scale): the operator's RBAC already allows patching Deployments
        path = object_path("apps/v1", "Deployment", tracked.namespace, naming.consumer_name(tracked.name))
        self.kube.request(
            "PATCH", path, body={"spec": {"replicas": replicas}}, content_type="application/merge-patch+json"
        )
        self.scale_actions.append((tracked.namespace, tracked.name, replicas))
        log.info("scaled %s/%s consumers to %d (scale to/from zero)", tracked.namespace, tracked.name, replicas)


def watched(spec: InferencePipelineSpec) -> bool:
    """Polled: autoscaling on (the decision scales), or a rollout in the spec (its per-version counts)."""
    return spec.autoscaling.enabled or spec.model.rollout is not None


def export_gauges(namespace: str, name: str, decision: Decision) -> None:
    """The autoscaler's series of the operator's /metrics (gauges defined in ``kinfer_operator.metrics``)."""
    metrics.PIPELINE_LAG.labels(namespace, name).set(decision.total_lag)
    for partition, lag in decision.lag_by_partition.items():
        metrics.PIPELINE_PARTITION_LAG.labels(namespace, name, str(partition)).set(lag)
    metrics.PIPELINE_DESIRED_REPLICAS.labels(namespace, name).set(decision.desired_replicas)
    metrics.PIPELINE_CAPPED.labels(namespace, name).set(1 if decision.capped_by_partitions else 0)
    drain = decision.drain_seconds
    metrics.PIPELINE_DRAIN_SECONDS.labels(namespace, name).set(float("nan") if drain is None else drain)
