"""What a reconcile pass reads about the pipeline's batch runs: each Job, its pods and its progress commits.

The reading only; the status entries are computed by status/batch_runs.py. A finished run's progress is read until
the status holds its last commit, then no more: an idle pipeline with finished runs costs Kafka nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from kinfer_operator.builders import naming
from kinfer_operator.builders.manifests import spec_hash_of
from kinfer_operator.k8s.children import BATCH_RUNS
from kinfer_operator.k8s.client import Kube, KubeError, object_path
from kinfer_operator.kafka import admin as kafka_admin
from kinfer_operator.kafka.topic_sync import TopicAdmin
from kinfer_operator.status.batch_runs import RunObserved, run_status
from kinfer_runtime.spec import InferencePipeline

logger = logging.getLogger(__name__)


def _finished(job: dict[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)


def batch_status(
    kube: Kube,
    topics: TopicAdmin | None,
    pipeline: InferencePipeline,
    children: list[dict[str, Any]],
    failed: dict[str, str],
    previous: list[dict[str, Any]] | None,
) -> list[dict[str, Any]] | None:
    """``status.batch`` (None when the spec has no runs). ``failed``: the apply's failures, whose batch entries
    are taken out here (a Job that cannot be created is its run's concern, not the consumers')."""
    name, namespace = pipeline.metadata.name, pipeline.metadata.namespace
    jobs = {c["metadata"]["name"]: c for c in children if c["kind"] == "Job"}
    before = {entry.get("name"): entry for entry in previous or []}
    entries = []
    for run in pipeline.spec.batch:
        job_name = naming.batch_job_name(name, run.name)
        apply_error = failed.pop(f"{BATCH_RUNS}/{job_name}", None)
        job = kube.request("GET", object_path("batch/v1", "Job", namespace, job_name)) if not apply_error else None
        pods: list[dict[str, Any]] = []
        progress = None
        if job is not None:
            selector = f"{naming.LABEL_PIPELINE}={name},{naming.LABEL_BATCH_RUN}={run.name}"
            try:
                listed = kube.request("GET", object_path("v1", "Pod", namespace), query=[("labelSelector", selector)])
                pods = list((listed or {}).get("items") or [])
            except KubeError as error:
                logger.warning("cannot list the pods of batch run %s of %s/%s: %s", run.name, namespace, name, error)
            last = before.get(run.name) or {}
            behind = last.get("total") is None or last.get("done") != last.get("total")
            if topics is not None and run.source.topic_range is not None and (not _finished(job) or behind):
                group = naming.batch_progress_group(namespace, name, run.name)
                try:
                    progress = topics.run_progress(group)
                except kafka_admin.KafkaUnavailable as error:
                    logger.info("progress of batch run %s of %s/%s not read: %s", run.name, namespace, name, error)
        observed = RunObserved(
            run.name, job_name, spec_hash_of(jobs[job_name]), job, pods, progress, apply_error=apply_error
        )
        entries.append(run_status(observed, before.get(run.name)))
    return entries or None
