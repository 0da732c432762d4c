"""Fence the exactly-once producer of a consumer pod that is gone, so that its open transaction ends at once.

An exactly-once consumer pod writes its outputs in transactions under ``InferencePipeline.transactional_id(pod)``.
A pod restarted in place keeps its name, and its new process fences the old one itself. A pod that is deleted,
evicted or lost with its node never comes back under that name, and a successor pod has another: the open
transaction of the pod that is gone would hold back every read_committed reader of the output partitions it wrote
to until the broker's ``transaction.timeout.ms`` ended it (60 s by librdkafka's default). When the pod object is
gone, the operator starts a producer under its id: Kafka bumps the producer epoch, aborts the open transaction and
refuses whatever the old process still tries to write (a zombie on a node cut off from the API server).

The pod object is removed only after its containers stopped or its node was given up, so a live pod is never
fenced. Pods that went while no operator was running are not fenced: their transactions end by the timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException, Producer

from kinfer_operator.builders import naming
from kinfer_operator.k8s.client import Kube, kafka_secrets, object_path
from kinfer_operator.kafka.admin import admin_config
from kinfer_operator.status.preflight import AccessPolicy, access_problems, parse_or_problems
from kinfer_runtime.spec import Delivery

log = logging.getLogger(__name__)
FENCE_TIMEOUT_SECONDS = 30.0


def fence(config: dict[str, Any], transactional_id: str, timeout_seconds: float = FENCE_TIMEOUT_SECONDS) -> None:
    """Start and drop a producer under ``transactional_id``: its ``init_transactions`` fences the previous
    holder of the id and aborts that holder's open transaction. Raises KafkaException if Kafka refuses."""
    producer = Producer({**config, "transactional.id": transactional_id, "client.id": "kinfer-operator-fence"})
    producer.init_transactions(timeout_seconds)
    producer.flush(0)  # nothing was produced; the producer is destroyed when dropped


def fence_departed_pod(kube: Kube, access: AccessPolicy, namespace: str, pipeline_name: str, pod: str) -> str | None:
    """Fence the transactional id of a consumer pod whose object is gone, if its pipeline is exactly-once.

    Returns the fenced id, or None when there is nothing to fence (the pipeline is gone, invalid,
    at-least-once, or points at a Kafka cluster this installation may not reach)."""
    path = object_path(naming.PIPELINE_API_VERSION, naming.PIPELINE_KIND, namespace, pipeline_name)
    live = kube.request("GET", path)
    if live is None:
        return None
    pipeline, _problems = parse_or_problems(pipeline_name, namespace, dict(live.get("spec") or {}))
    if pipeline is None or pipeline.spec.consumer.delivery is not Delivery.EXACTLY_ONCE:
        return None
    if access_problems(pipeline, access):
        return None
    transactional_id = pipeline.transactional_id(pod)
    config = admin_config(pipeline.spec.kafka, kafka_secrets(kube, namespace, pipeline.spec.kafka))
    try:
        fence(config, transactional_id)
    except KafkaException as error:
        log.warning("could not fence %s of gone pod %s/%s: %s", transactional_id, namespace, pod, error)
        return None
    log.info("fenced %s: consumer pod %s/%s is gone, its open transaction is aborted", transactional_id, namespace, pod)
    return transactional_id
