"""Batch runs (``spec.batch``): ``kinfer score`` run by the operator as a Kubernetes Job, over a range of a topic or a
file on a volume, with the pipeline's own preprocessing, model and Kafka credentials (docs/models.md, "Batch
scoring in the cluster")."""

from __future__ import annotations

import datetime
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from kinfer_runtime.spec.base import NAME_PATTERN, TOPIC_PATTERN, SpecModel

FILE_FORMATS = ("jsonl", "csv", "parquet", "npy", "images", "avro")  # what kinfer score reads (tools/sources.py)
OUTPUT_SUFFIXES = (".parquet", ".pq", ".jsonl")


def _rfc3339(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an RFC 3339 time such as 2026-12-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone: add Z or an offset such as +01:00")
    return value


class BatchTopicRange(SpecModel):
    """Records of a topic between two offsets or two times; the end is fixed when the run starts."""

    topic: Annotated[str, Field(pattern=TOPIC_PATTERN)] | None = Field(
        default=None, description="Topic to read; the pipeline's input topic when not set."
    )
    partitions: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, description="Partitions to read; all when empty."
    )
    from_offset: int | None = Field(default=None, ge=0, description="First offset to read (inclusive).")
    to_offset: int | None = Field(default=None, ge=0, description="Last offset to read (inclusive).")
    since: str | None = Field(default=None, description="Only records at or after this RFC 3339 time.")
    until: str | None = Field(default=None, description="Only records before this RFC 3339 time.")

    @field_validator("since", "until")
    @classmethod
    def _times(cls, value: str | None) -> str | None:
        return _rfc3339(value)


class BatchFile(SpecModel):
    """A file on a PersistentVolumeClaim of the pipeline's namespace."""

    claim_name: str = Field(pattern=NAME_PATTERN, max_length=253, description="The claim that holds the file.")
    path: str = Field(
        min_length=1,
        pattern=r"^[^/]",
        description="Path inside the claim, relative (no leading /, no ..): a file, or a folder of images.",
    )

    @field_validator("path")
    @classmethod
    def _inside(cls, value: str) -> str:
        if ".." in value.split("/"):
            raise ValueError(f"{value!r} leaves the claim: remove the '..'")
        return value


class BatchSource(SpecModel):
    """Exactly one of topicRange and file."""

    topic_range: BatchTopicRange | None = Field(default=None, description="Score a range of a topic.")
    file: BatchFile | None = Field(default=None, description="Score a file: JSONL, CSV, Parquet, .npy, Avro, images.")
    format: str | None = Field(
        default=None,
        pattern=rf"^({'|'.join(FILE_FORMATS)})$",
        description="The file's format when its extension does not say: " + ", ".join(FILE_FORMATS) + ".",
    )

    @model_validator(mode="after")
    def _one(self) -> BatchSource:
        if (self.topic_range is None) == (self.file is None):
            raise ValueError("give exactly one of source.topicRange and source.file")
        return self


class BatchOutput(SpecModel):
    """Exactly one of topic and file."""

    topic: Annotated[str, Field(pattern=TOPIC_PATTERN)] | None = Field(
        default=None,
        description="Publish as the live pipeline does: outputs to this topic (it must exist; the pipeline's own "
        "output topic is allowed), records it would dead-letter to the dead-letter topic. topicRange sources only.",
    )
    file: BatchFile | None = Field(
        default=None, description="Write the results to a .parquet or .jsonl file on a claim (replaced if it exists)."
    )

    @model_validator(mode="after")
    def _one(self) -> BatchOutput:
        if (self.topic is None) == (self.file is None):
            raise ValueError("give exactly one of output.topic and output.file")
        if self.file is not None and not self.file.path.lower().endswith(OUTPUT_SUFFIXES):
            raise ValueError(f"output.file.path {self.file.path!r} must end in .parquet or .jsonl")
        return self


class BatchRunSpec(SpecModel):
    """One run of ``kinfer score`` as a Job. A finished run stays in the status until its entry is removed; to run
    again, give the entry another name."""

    name: str = Field(
        pattern=NAME_PATTERN,
        max_length=40,
        description="Unique in the pipeline; the Job is <pipeline>-batch-<name> (at most 63 characters).",
    )
    source: BatchSource
    output: BatchOutput
    batch_size: int | None = Field(
        default=None, ge=1, le=100_000, description="Records per model call; consumer.maxBatchSize when not set."
    )
    retries: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Pods the Job starts again after one fails (backoffLimit). A topic-to-topic run resumes where "
        "the failed pod stopped, so no input is published twice.",
    )

    @model_validator(mode="after")
    def _topic_output_needs_topic_source(self) -> BatchRunSpec:
        if self.output.topic is not None and self.source.topic_range is None:
            raise ValueError(f"batch run {self.name!r}: output.topic needs source.topicRange; write a file instead")
        return self
