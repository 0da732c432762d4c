"""The status of an InferencePipeline: what the operator writes and ``kubectl get``/``describe`` show.

One typed model for the three places that need the status's shape: the operator builds it
(``kinfer_operator.status.document``), knows from it which keys it owns (to remove one it no longer sets), and
the CRD's status schema is generated from it (``kinfer_operator.crd.generate``). Written by the operator only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from kinfer_runtime.spec.base import SpecModel


class ConditionStatus(SpecModel):
    """One condition, in the Kubernetes convention."""

    type: str = Field(description="Ready, TopicsReady, ConsumersReady, ServingReady, AutoscalingReady, Degraded, ...")
    status: Literal["True", "False", "Unknown"]
    reason: str | None = Field(default=None, description="CamelCase cause, stable for alerting.")
    message: str | None = Field(default=None, description="What is wrong and what to do about it.")
    last_transition_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    observed_generation: int | None = Field(default=None, json_schema_extra={"format": "int64"})


class RolloutStatus(SpecModel):
    """The rollout in force (spec.model.rollout), as kubectl shows it."""

    summary: str = Field(description="E.g. 'Canary 2 at 10%, live 1': the Rollout column of kubectl get.")
    live_version: int
    candidate_version: int
    mode: str = Field(description="Canary or Shadow.")
    share: float = Field(description="Canary: the share of keys the candidate scores. Shadow: of records.")
    candidate_loaded_partitions: int | None = Field(
        default=None,
        description="Input partitions whose consumer had the candidate loaded, as of each partition's last commit "
        "(one that could not load it serves every record with the live version and says why in its log).",
    )
    reporting_partitions: int | None = Field(
        default=None, description="Input partitions whose last commit says which versions its consumer had loaded."
    )


class BatchRunStatus(SpecModel):
    """One entry of spec.batch: its Job, where it stands, and what it scored."""

    name: str
    job: str = Field(description="The Job that runs it.")
    phase: Literal["Pending", "Running", "Succeeded", "Failed"]
    done: int | None = Field(default=None, description="Records scored so far (topicRange sources).")
    total: int | None = Field(default=None, description="Records in the range, fixed when the run started.")
    records: int | None = Field(default=None, description="Records read, once the run finished.")
    scored: int | None = Field(default=None, description="Records scored, once the run finished.")
    failed: dict[str, int] | None = Field(
        default=None, description="Records the live pipeline would dead-letter, by reason, once the run finished."
    )
    model_versions: dict[str, int] | None = Field(default=None, description="Records scored, by model version.")
    start_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    completion_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    message: str | None = Field(default=None, description="Why the run failed, or what it waits for.")


class PipelineStatus(SpecModel):
    """Observed state, written by the operator only."""

    observed_generation: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    conditions: list[ConditionStatus] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: int | None = Field(default=None, description="Consumer pods that exist (scale subresource).")
    ready_replicas: int | None = None
    label_selector: str | None = Field(default=None, description="Consumer pod selector (scale subresource).")
    partitions: int | None = Field(default=None, description="Partitions of the input topic.")
    topics: dict[str, int] | None = Field(default=None, description="Partitions of each topic, by topic name.")
    lag: int | None = Field(default=None, description="Total consumer lag of the input topic (records).")
    model_version: str | None = Field(default=None, description="Pinned version, or Latest.")
    rollout: RolloutStatus | None = Field(
        default=None,
        description="The candidate version being tried, and how (absent without a rollout). The comparison of "
        "the two versions is in metrics: kinfer_rollout_* (docs/models.md).",
    )
    scored_by_version: dict[str, int] | None = Field(
        default=None,
        description="Records scored by each model version, summed over the input partitions' committed offsets "
        "(a record read again after a restart counts once). A shadow candidate's count is of the records it "
        "scored beside the live version.",
    )
    serving_endpoint: str | None = Field(default=None, description="host:port of TF Serving (tfserving mode).")
    created_topics: list[str] | None = Field(
        default=None,
        description="Topics this pipeline created: the only ones kinfer reconfigures, re-creates when deleted, and "
        "deletes with deletionPolicy Delete. A topic that existed before the pipeline is never among them.",
    )
    autoscaling: dict[str, Any] | None = Field(
        default=None, description="Autoscaler state: lag by partition, drain estimate, desired replicas."
    )
    batch: list[BatchRunStatus] | None = Field(
        default=None,
        description="The runs of spec.batch.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


STATUS_KEYS: frozenset[str] = frozenset(
    field.alias or name for name, field in PipelineStatus.model_fields.items()
)  # camelCase, as on the wire
