"""Batch runs (``spec.batch``) against the real API server and its Job controller: the operator creates each run's
Job, shows it in ``status.batch``, replaces it when the entry changes, deletes it when the entry goes, and never
touches a Job of the same name it does not own.

The bed's node is kwok's, so the Job's pod never runs a container here: the run itself, from the image to the
counts in the status, is tests/cluster/test_batch.py on the real node.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.operator.bed import Bed
from tests.operator.conftest import OperatorProcess
from tests.polling import wait_until

pytestmark = pytest.mark.testbed

RUN = {"name": "backfill", "source": {"topicRange": {"fromOffset": 0}}, "output": {"topic": "scores-backfill"}}


def jobs(bed: Bed) -> dict[str, Any]:
    listed = client.BatchV1Api(bed.api).list_namespaced_job(bed.namespace)
    return {job.metadata.name: job for job in listed.items}


def batch_status(bed: Bed, name: str) -> list[dict[str, Any]] | None:
    status = (bed.get(name) or {}).get("status") or {}
    return status.get("batch")


def first_entry(bed: Bed, name: str) -> dict[str, Any]:
    """The first run's status entry, {} while there is none."""
    return (batch_status(bed, name) or [{}])[0]


def test_a_batch_run_becomes_an_owned_job_replaced_on_change_and_deleted_with_its_entry(
    bed: Bed, operator: OperatorProcess
) -> None:
    manifest = bed.manifest("batched", batch=[RUN])
    bed.apply(manifest)
    job_name = "batched-batch-backfill"
    wait_until(lambda: job_name in jobs(bed), 60, "the run's Job")
    job = jobs(bed)[job_name]
    uid = bed.get("batched")["metadata"]["uid"]  # type: ignore[index]
    assert [(ref.uid, ref.controller) for ref in job.metadata.owner_references] == [(uid, True)]
    command = job.spec.template.spec.containers[0].command
    assert command[:2] == ["kinfer", "score"] and "--output-topic" in command
    entry = wait_until(lambda: first_entry(bed, "batched"), 60, "status.batch")
    assert entry["name"] == "backfill" and entry["job"] == job_name
    assert entry["phase"] in ("Pending", "Running")

    first_uid = job.metadata.uid
    bed.patch_spec("batched", {"batch": [{**RUN, "retries": 1}]})
    wait_until(
        lambda: job_name in jobs(bed) and jobs(bed)[job_name].metadata.uid != first_uid,
        90,
        "the Job created again for the changed entry",
    )
    assert jobs(bed)[job_name].spec.backoff_limit == 1
    assert "Replaced" in bed.event_reasons("batched")

    bed.patch_spec("batched", {"batch": []})
    wait_until(lambda: job_name not in jobs(bed), 60, "the Job of the removed entry deleted")
    wait_until(lambda: batch_status(bed, "batched") is None, 60, "status.batch removed")


def test_a_job_of_the_same_name_the_pipeline_does_not_own_is_left_alone(bed: Bed, operator: OperatorProcess) -> None:
    foreign = {
        "metadata": {"name": "other-batch-backfill", "labels": {"team": "someone-else"}},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "work", "image": "busybox", "command": ["true"]}],
                }
            }
        },
    }
    client.BatchV1Api(bed.api).create_namespaced_job(bed.namespace, foreign)
    before = jobs(bed)["other-batch-backfill"]
    bed.apply(bed.manifest("other", batch=[RUN]))

    def refused() -> dict[str, Any]:
        entry = first_entry(bed, "other")
        return entry if "not this pipeline's" in (entry.get("message") or "") else {}

    entry = wait_until(refused, 60, "the run's status saying the Job is not the pipeline's")
    assert entry["phase"] == "Pending"
    after = jobs(bed)["other-batch-backfill"]
    assert after.metadata.uid == before.metadata.uid and not after.metadata.owner_references
    assert after.metadata.labels["team"] == "someone-else"
    assert "kinfer.io/pipeline" not in after.metadata.labels
    assert after.spec.template.spec.containers[0].image == "busybox"  # never patched
    assert "kinfer.io/spec-hash" not in (after.metadata.annotations or {})
    assert bed.wait_ready("other")["status"]["conditions"]  # the consumers are not held up by the run
