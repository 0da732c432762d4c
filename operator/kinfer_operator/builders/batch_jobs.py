"""Pure builder of a batch run's Job (``spec.batch``): ``kinfer score`` in the runtime image, with the consumers'
config, model, Kafka credentials, resources and hardening, and the claims its source and output name.

A Job's pod template cannot change once created, and a finished run must not start again because something else
in the pipeline changed (a credential rotated, a batch size tuned). So the Job's spec-hash covers only its entry
and the image: the reconcile leaves a Job with that hash alone, and replaces one whose entry changed
(k8s/children.py). The pod writes its counts to its termination message, which the status reads
(status/batch_runs.py); a topicRange run also commits its progress to a group of its own (kafka/run_progress.py).
"""

from __future__ import annotations

import posixpath
from typing import Any

from kinfer_operator.builders import naming
from kinfer_operator.builders.consumer import CONTAINER_SECURITY, POD_SECURITY, runtime_volumes
from kinfer_operator.builders.manifests import Owner, child, content_hash
from kinfer_runtime.spec import BatchRunSpec, InferencePipeline

DATA_ROOT = "/data"  # each claim a run names is mounted at /data/<claim>
TERMINATION_LOG = "/dev/termination-log"


def claim_path(claim: str, path: str) -> str:
    return posixpath.join(DATA_ROOT, claim, path)


def score_arguments(pipeline: InferencePipeline, run: BatchRunSpec) -> list[str]:
    """The ``kinfer score`` command line of a run."""
    config = f"{naming.RUNTIME_CONFIG_DIR}/{naming.RUNTIME_CONFIG_KEY}"
    args = ["kinfer", "score", config, "--no-progress", "--summary-file", TERMINATION_LOG]
    source, output = run.source, run.output
    if source.topic_range is not None:
        bounds = source.topic_range
        args += ["--topic-range", "--topic", bounds.topic or pipeline.spec.topics.input.name]
        for partition in bounds.partitions:
            args += ["--partition", str(partition)]
        for flag, value in (
            ("--from-offset", bounds.from_offset),
            ("--to-offset", bounds.to_offset),
            ("--since", bounds.since),
            ("--until", bounds.until),
        ):
            if value is not None:
                args += [flag, str(value)]
        args += [
            "--progress-group",
            naming.batch_progress_group(pipeline.metadata.namespace, pipeline.metadata.name, run.name),
        ]
    elif source.file is not None:
        args += ["--input", claim_path(source.file.claim_name, source.file.path)]
        if source.format:
            args += ["--format", source.format]
    if output.topic is not None:
        args += ["--output-topic", output.topic]
    elif output.file is not None:
        args += ["--output", claim_path(output.file.claim_name, output.file.path)]
    if run.batch_size is not None:
        args += ["--batch-size", str(run.batch_size)]
    return args


def data_claims(run: BatchRunSpec) -> dict[str, bool]:
    """Claim name → whether the run writes to it."""
    claims: dict[str, bool] = {}
    if run.source.file is not None:
        claims[run.source.file.claim_name] = False
    if run.output.file is not None:
        claims[run.output.file.claim_name] = True
    return claims


def build_batch_job(
    pipeline: InferencePipeline, owner: Owner, run: BatchRunSpec, runtime_image: str = naming.DEFAULT_RUNTIME_IMAGE
) -> dict[str, Any]:
    spec = pipeline.spec
    image = spec.consumer.image or runtime_image
    volumes, env = runtime_volumes(pipeline, owner)
    for index, (claim, writes) in enumerate(sorted(data_claims(run).items())):
        volumes.add(
            {"name": f"data-{index}", "persistentVolumeClaim": {"claimName": claim, "readOnly": not writes}},
            {"mountPath": posixpath.join(DATA_ROOT, claim), "readOnly": not writes},
        )
    container = {
        "name": "score",
        "image": image,
        "command": score_arguments(pipeline, run),
        "env": env,
        "resources": spec.consumer.resources.to_wire(),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": volumes.mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",  # a crash's last log lines say why
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes.volumes,
        "securityContext": POD_SECURITY,
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        **spec.consumer.placement.pod_fields(),
    }
    if volumes.init_containers:
        pod_spec["initContainers"] = volumes.init_containers
    labels = naming.common_labels(owner.name, naming.COMPONENT_BATCH)
    job_spec = {
        "backoffLimit": run.retries,
        "template": {"metadata": {"labels": {**labels, naming.LABEL_BATCH_RUN: run.name}}, "spec": pod_spec},
    }
    job = child(
        "batch/v1",
        "Job",
        naming.batch_job_name(owner.name, run.name),
        owner,
        naming.COMPONENT_BATCH,
        {"spec": job_spec},
    )
    job["metadata"]["labels"][naming.LABEL_BATCH_RUN] = run.name
    job["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH] = content_hash({"run": run.to_wire(), "image": image})
    return job
