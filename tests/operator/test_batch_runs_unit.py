"""Batch runs without a cluster: the Job a run becomes (builders/batch_jobs.py) and the status entry a pass computes
from what it read (status/batch_runs.py)."""

from __future__ import annotations

import json
from typing import Any

from kinfer_operator.builders import naming
from kinfer_operator.builders.batch_jobs import build_batch_job
from kinfer_operator.builders.consumer import build_runtime_configmap, rollout_hash
from kinfer_operator.builders.desired import desired_children
from kinfer_operator.builders.manifests import spec_hash_of
from kinfer_operator.status.batch_runs import RunObserved, run_status
from kinfer_operator.status.preflight import static_problems
from tests.operator.pipelines import FRAUD, owner, pipeline

TOPIC_RUN = {
    "name": "december",
    "source": {"topicRange": {"partitions": [0, 2], "fromOffset": 10, "since": "2026-12-01T00:00:00Z"}},
    "output": {"topic": "fraud-backfill"},
}
FILE_RUN = {
    "name": "audit",
    "source": {"file": {"claimName": "data", "path": "in/transactions.parquet"}},
    "output": {"file": {"claimName": "data", "path": "out/scores.parquet"}},
    "batchSize": 512,
}


def job_for(run: dict[str, Any], **spec: Any) -> dict[str, Any]:
    p = pipeline(FRAUD, batch=[run], **spec)
    return build_batch_job(p, owner(p), p.spec.batch[0], "registry.local/kinfer/runtime:test")


def container(job: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return result


def test_a_topic_range_run_scores_the_range_with_progress_commits_and_publishes_like_live() -> None:
    job = job_for(TOPIC_RUN)
    p = pipeline(FRAUD)
    command = container(job)["command"]
    assert command[:3] == ["kinfer", "score", "/etc/kinfer/pipeline.yaml"]
    flags = " ".join(command[3:])
    assert f"--topic-range --topic {p.spec.topics.input.name} --partition 0 --partition 2" in flags
    assert "--from-offset 10 --since 2026-12-01T00:00:00Z" in flags
    assert f"--progress-group kinfer-batch-ns1-{p.metadata.name}-december" in flags
    assert "--output-topic fraud-backfill" in flags
    assert "--summary-file /dev/termination-log" in flags
    assert job["metadata"]["name"] == f"{p.metadata.name}-batch-december"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 3
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container(job)["securityContext"]["readOnlyRootFilesystem"] is True
    assert container(job)["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {"name": "runtime-config", "mountPath": "/etc/kinfer", "readOnly": True} in container(job)["volumeMounts"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels[naming.LABEL_BATCH_RUN] == "december" and labels[naming.LABEL_COMPONENT] == "batch"


def test_a_file_run_mounts_its_claim_once_writable_and_reads_and_writes_inside_it() -> None:
    job = job_for(FILE_RUN)
    flags = " ".join(container(job)["command"])
    assert "--input /data/data/in/transactions.parquet" in flags
    assert "--output /data/data/out/scores.parquet" in flags
    assert "--batch-size 512" in flags and "--progress-group" not in flags
    claims = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"].startswith("data-")]
    assert claims == [{"name": "data-0", "persistentVolumeClaim": {"claimName": "data", "readOnly": False}}]
    read_only = {**FILE_RUN, "output": {"file": {"claimName": "results", "path": "scores.jsonl"}}}
    claims = [v for v in job_for(read_only)["spec"]["template"]["spec"]["volumes"] if v["name"].startswith("data-")]
    assert {v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"] for v in claims} == {
        "data": True,
        "results": False,
    }


def test_the_job_hash_follows_the_entry_not_the_rest_of_the_pipeline() -> None:
    base = spec_hash_of(job_for(TOPIC_RUN))
    assert spec_hash_of(job_for(TOPIC_RUN, consumer={"maxBatchSize": 64})) == base  # a finished run stays finished
    assert spec_hash_of(job_for({**TOPIC_RUN, "retries": 5})) != base  # a changed entry runs again


def test_batch_runs_neither_roll_the_consumers_nor_enter_their_config() -> None:
    plain, with_runs = pipeline(FRAUD), pipeline(FRAUD, batch=[TOPIC_RUN, FILE_RUN])
    assert rollout_hash(with_runs) == rollout_hash(plain)
    assert build_runtime_configmap(with_runs, owner(with_runs)) == build_runtime_configmap(plain, owner(plain))
    kinds = [(c["kind"], c["metadata"]["name"]) for c in desired_children(with_runs, owner(with_runs), 1, None)]
    name = with_runs.metadata.name
    assert kinds[-2:] == [("Job", f"{name}-batch-december"), ("Job", f"{name}-batch-audit")]


def test_a_run_whose_job_name_is_too_long_is_refused_with_what_to_do() -> None:
    p = pipeline(FRAUD, batch=[{**TOPIC_RUN, "name": "x" * 40}])
    assert static_problems(p) == []
    p.metadata.name = "p" * 20  # 20 + len("-batch-") + 40 > 63
    problems = static_problems(p)
    assert any("give the run a shorter name" in problem for problem in problems), problems


# --- status -----------------------------------------------------------------------------------------------------

HASH = "h1"


def job(status: dict[str, Any], spec_hash: str = HASH) -> dict[str, Any]:
    return {
        "metadata": {"name": "fraud-batch-december", "annotations": {naming.ANNOTATION_SPEC_HASH: spec_hash}},
        "status": status,
    }


def pod(created: str, **state: Any) -> dict[str, Any]:
    return {"metadata": {"creationTimestamp": created}, "status": {"containerStatuses": [{"state": state}]}}


def observed(job_object: dict[str, Any] | None, pods: list[dict[str, Any]] = (), **kw: Any) -> RunObserved:  # type: ignore[assignment]
    return RunObserved("december", "fraud-batch-december", HASH, job_object, list(pods), **kw)


def test_a_run_is_pending_until_its_job_runs_and_says_why() -> None:
    assert run_status(observed(None), None)["phase"] == "Pending"
    assert "old version" in run_status(observed(job({}, spec_hash="h0")), None)["message"]
    refused = run_status(observed(None, apply_error="Job fraud-batch-december: forbidden"), None)
    assert refused["phase"] == "Pending" and "forbidden" in refused["message"]
    pulling = pod("2026-12-05T10:00:00Z", waiting={"reason": "ErrImageNeverPull", "message": "image not present"})
    entry = run_status(observed(job({"active": 1}), [pulling]), None)
    assert entry["phase"] == "Pending" and entry["message"].startswith("ErrImageNeverPull")


def test_a_running_run_shows_its_progress_and_keeps_it_while_kafka_is_unreadable() -> None:
    running = job({"active": 1, "startTime": "2026-12-05T10:00:00Z"})
    entry = run_status(observed(running, [pod("t", running={})], progress=(120, 503)), None)
    assert entry == {
        "name": "december",
        "job": "fraud-batch-december",
        "phase": "Running",
        "startTime": "2026-12-05T10:00:00Z",
        "done": 120,
        "total": 503,
    }
    assert run_status(observed(running, [pod("t", running={})]), entry)["done"] == 120


def test_a_succeeded_run_reports_the_counts_of_its_pod_and_a_failed_one_why() -> None:
    summary = {"records": 503, "scored": 500, "failed": {"MalformedJson": 3}, "modelVersions": {"2": 500}}
    done = pod("t2", terminated={"exitCode": 0, "message": json.dumps({**summary, "seconds": 1.5})})
    crashed = pod("t1", terminated={"exitCode": 1, "message": "Traceback ...\nKafkaException: broker down"})
    complete = job({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}], "completionTime": "c"})
    entry = run_status(observed(complete, [crashed, done], progress=(503, 503)), None)
    assert entry["phase"] == "Succeeded" and entry["completionTime"] == "c"
    assert {key: entry[key] for key in summary} == summary
    gave_up = {"reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}
    failed = job({"failed": 4, "conditions": [{"type": "Failed", "status": "True", **gave_up}]})
    entry = run_status(observed(failed, [crashed]), None)
    assert entry["phase"] == "Failed"
    assert entry["message"].startswith("BackoffLimitExceeded") and "broker down" in entry["message"]
    retrying = run_status(observed(job({"active": 1, "failed": 1}), [crashed, pod("t3", running={})]), None)
    assert retrying["phase"] == "Running" and "broker down" in retrying["message"]
