"""Names, labels and annotations the operator puts on its children (listed in docs/operator.md).

One place for them so the builders, the reconcile, the autoscaler and the Helm chart's selectors agree.
"""

from __future__ import annotations

from typing import Final

from kinfer_operator import __version__
from kinfer_runtime.spec import API_GROUP, API_VERSION, KIND, PLURAL, tfserving_service

GROUP: Final = API_GROUP
VERSION: Final = API_VERSION
PIPELINE_KIND: Final = KIND
PIPELINE_PLURAL: Final = PLURAL
PIPELINE_API_VERSION: Final = f"{API_GROUP}/{API_VERSION}"

LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PIPELINE: Final = "kinfer.io/pipeline"

COMPONENT_CONSUMER: Final = "consumer"
COMPONENT_TFSERVING: Final = "tfserving"
COMPONENT_RUNTIME_CONFIG: Final = "runtime-config"
COMPONENT_METRICS: Final = "metrics"
COMPONENT_BATCH: Final = "batch"
LABEL_BATCH_RUN: Final = "kinfer.io/batch-run"  # on a batch run's Job and pods: the entry of spec.batch

# Hash of the desired child, compared before any write: equal hash → nothing is sent to the API server.
ANNOTATION_SPEC_HASH: Final = "kinfer.io/spec-hash"
# Hash of the runtime ConfigMap's content on the pod template, so a config change rolls the pods.
ANNOTATION_CONFIG_HASH: Final = "kinfer.io/config-hash"
# Where kopf keeps its progress and diff-base (annotations, so the status stays ours alone).
ANNOTATION_PREFIX: Final = "kinfer.io"
# Set by the delete handler when it started waiting for an unreachable Kafka (bounded give-up).

FINALIZER: Final = "kinfer.io/finalizer"
FIELD_MANAGER: Final = "kinfer-operator"

RUNTIME_CONFIG_KEY: Final = "pipeline.yaml"
RUNTIME_CONFIG_DIR: Final = "/etc/kinfer"
MODEL_ROOT: Final = "/mnt/models"
SASL_DIR: Final = "/var/run/secrets/kinfer/sasl"
TLS_DIR: Final = "/var/run/secrets/kinfer/tls"
TFSERVING_CONFIG_DIR: Final = "/etc/tfserving"


def consumer_name(pipeline: str) -> str:
    return f"{pipeline}-consumer"


def runtime_config_name(pipeline: str) -> str:
    return f"{pipeline}-runtime"


def metrics_service_name(pipeline: str) -> str:
    return f"{pipeline}-metrics"


def tfserving_name(pipeline: str) -> str:
    return tfserving_service(pipeline)


def tfserving_config_name(pipeline: str) -> str:
    return f"{pipeline}-tfserving-config"


def batch_job_name(pipeline: str, run: str) -> str:
    return f"{pipeline}-batch-{run}"


def batch_progress_group(namespace: str, pipeline: str, run: str) -> str:
    """The consumer group a topicRange batch run commits its progress to (never joined, never a live group)."""
    return f"kinfer-batch-{namespace}-{pipeline}-{run}"


def common_labels(pipeline: str, component: str) -> dict[str, str]:
    """Labels on every child (and on the pod templates of the Deployments)."""
    return {
        LABEL_MANAGED_BY: "kinfer",
        LABEL_PART_OF: "kinfer",
        LABEL_PIPELINE: pipeline,
        LABEL_COMPONENT: component,
    }


def selector_labels(pipeline: str, component: str) -> dict[str, str]:
    """The immutable subset used in Deployment selectors and Service selectors."""
    return {LABEL_PIPELINE: pipeline, LABEL_COMPONENT: component}


def consumer_label_selector(pipeline: str) -> str:
    """The consumer pods' selector as a string, for the scale subresource's ``status.labelSelector``."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(pipeline, COMPONENT_CONSUMER).items())


# The consumer pods' image when neither the pipeline (spec.consumer.image) nor the operator's installation (the
# chart's runtimeImage, as KINFER_RUNTIME_IMAGE) names one: the runtime of the operator's own version.
DEFAULT_RUNTIME_IMAGE: Final = f"ghcr.io/kinfer/runtime:{__version__}"
