"""Turn one consumed batch plus its predictions and failures into the records to produce (pure).

Every input yields exactly one record: an output when it was predicted, a dead-letter record otherwise. The
batch also yields, per input partition, the offset to commit once all of them are acknowledged, and how many of
its records each model version scored (committed with that offset: records/scored_counts.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from kinfer_runtime.pipeline.commits import Outgoing, TopicPartitionKey
from kinfer_runtime.records.dead_letter import Failure, dead_letter_headers
from kinfer_runtime.records.output import OWN_HEADERS, SOURCE_OFFSET, SOURCE_PARTITION, BatchContext, OutputEncoder

TIMESTAMP_NOT_AVAILABLE = 0  # confluent_kafka.TIMESTAMP_NOT_AVAILABLE


class InputRecord(Protocol):
    """The part of ``confluent_kafka.Message`` used here."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> Any: ...
    def value(self) -> Any: ...
    def headers(self) -> Any: ...
    def timestamp(self) -> tuple[int, int]: ...


@dataclass
class AssembledBatch:
    """``records[i]`` is the output or dead letter of ``messages[predicted[i]]`` for the first ``len(predicted)``
    records, and of ``messages[failed[i - len(predicted)]]`` after them (:meth:`input_of`)."""

    records: list[Outgoing]
    next_offsets: dict[TopicPartitionKey, int]
    output_timestamps_s: np.ndarray
    messages: Sequence[InputRecord] = ()
    predicted: Sequence[int] = ()
    failed: Sequence[int] = ()
    scored: dict[TopicPartitionKey, dict[int, int]] = field(default_factory=dict)  # per partition and version

    def input_of(self, index: int) -> InputRecord | None:
        """The input whose output or dead letter ``records[index]`` is (None if this batch does not know it).
        Only a failed delivery asks, so the success path builds no per-record map."""
        if not self.messages:
            return None
        n = len(self.predicted)
        if index >= n + len(self.failed):
            return None  # a shadow candidate's record: its input has an output of its own
        return self.messages[self.predicted[index] if index < n else self.failed[index - n]]


def record_timestamp_ms(message: InputRecord) -> int | None:
    kind, value = message.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE or value <= 0 else value


def next_offsets(messages: Sequence[InputRecord]) -> dict[TopicPartitionKey, int]:
    offsets: dict[TopicPartitionKey, int] = {}
    for message in messages:
        key = (message.topic() or "", message.partition() or 0)
        offset = (message.offset() or 0) + 1
        if offset > offsets.get(key, -1):
            offsets[key] = offset
    return offsets


@dataclass(frozen=True)
class ScoredRows:
    """Inputs scored by one model version: ``predictions[i]`` (its JSON) is the prediction of
    ``messages[predicted[i]]``, and ``context`` says which version made it."""

    context: BatchContext
    predicted: Sequence[int]
    predictions: Sequence[bytes]


def assemble_batch(
    messages: Sequence[InputRecord],
    predicted: Sequence[int],
    predictions: Sequence[bytes],
    failures: Sequence[tuple[int, Failure]],
    context: BatchContext,
    *,
    output_topic: str,
    dead_letter_topic: str,
    now_ms: float,
    more: Sequence[ScoredRows] = (),
    shadow: ScoredRows | None = None,
    shadow_topic: str | None = None,
) -> AssembledBatch:
    """``predicted[i]`` is the index in ``messages`` of the input whose prediction (its JSON) is
    ``predictions[i]``; ``failures`` pairs indices with why they failed; ``more`` holds inputs another model
    version scored (a canary), whose outputs follow. Together they must cover every message exactly once.
    ``shadow``: a shadow candidate's predictions, produced to ``shadow_topic`` after everything else."""
    groups = [ScoredRows(context, predicted, predictions), *more]
    for group in groups:
        if len(group.predicted) != len(group.predictions):
            raise ValueError(f"{len(group.predictions)} prediction rows for {len(group.predicted)} predicted records")
    scored = sum(len(group.predicted) for group in groups)
    if scored + len(failures) != len(messages):
        raise ValueError(f"{scored} predicted + {len(failures)} failed != {len(messages)} consumed records")
    records: list[Outgoing] = []
    timestamps = np.empty(scored, dtype=np.float64)
    counts: dict[TopicPartitionKey, dict[int, int]] = {}
    for group in groups:
        _outputs(records, timestamps, messages, group, output_topic, int(now_ms), counts)
    failed = []
    for index, failure in failures:
        failed.append(index)
        records.append(dead_letter(messages[index], failure, dead_letter_topic, context.pipeline,
                                   context.model_version, context.source_topic))  # fmt: skip
    if shadow is not None and shadow_topic is not None and shadow.predicted:
        if len(shadow.predicted) != len(shadow.predictions):
            raise ValueError(f"{len(shadow.predictions)} shadow rows for {len(shadow.predicted)} records")
        scratch = np.empty(len(records) + len(shadow.predicted), dtype=np.float64)  # not outputs: no latency
        _outputs(records, scratch, messages, shadow, shadow_topic, int(now_ms), counts, shadow=True)
    timestamps = timestamps[~np.isnan(timestamps)]
    all_predicted = predicted if not more else [index for group in groups for index in group.predicted]
    return AssembledBatch(records, next_offsets(messages), timestamps, messages, all_predicted, failed, counts)


def _outputs(
    records: list[Outgoing],
    timestamps: np.ndarray,
    messages: Sequence[InputRecord],
    group: ScoredRows,
    output_topic: str,
    now: int,
    counts: dict[TopicPartitionKey, dict[int, int]],
    shadow: bool = False,
) -> None:
    """Append the output records of one group, and their inputs' timestamps (s, NaN for none) from
    ``len(records)`` on in ``timestamps``; count the group's records per input partition into ``counts``."""
    # The hot path of the runtime (one pass per output record): everything equal for the whole group is built
    # once (OutputEncoder's template, the shared headers, partition header bytes); per record there is one
    # %-format of the value and one header list: what output.output_value / output_headers describe.
    append = records.append
    shared = group.context.shared_headers()
    encode = OutputEncoder(group.context).value
    predictions = group.predictions
    first = len(records)
    partition_headers: dict[int, tuple[str, bytes]] = {}
    per_partition: dict[int, int] = {}
    for row_number, index in enumerate(group.predicted):
        message = messages[index]
        partition, offset = message.partition() or 0, message.offset() or 0
        kind, timestamp_ms = message.timestamp()
        if kind == TIMESTAMP_NOT_AVAILABLE or timestamp_ms <= 0:
            timestamps[first + row_number] = np.nan
            value = encode(predictions[row_number], partition, offset, None, now)
        else:
            timestamps[first + row_number] = timestamp_ms / 1000.0
            value = encode(predictions[row_number], partition, offset, timestamp_ms, now)
        partition_header = partition_headers.get(partition)
        if partition_header is None:
            partition_header = partition_headers[partition] = (SOURCE_PARTITION, str(partition).encode())
            per_partition[partition] = 0
        per_partition[partition] += 1
        input_headers = message.headers()
        if input_headers:
            headers = [h for h in input_headers if h[0] not in OWN_HEADERS]
            headers += shared
        else:
            headers = shared.copy()
        headers.append(partition_header)
        headers.append((SOURCE_OFFSET, str(offset).encode()))
        append(Outgoing(output_topic, message.key(), value, headers, None, shadow))
    version, topic = group.context.model_version, group.context.source_topic
    for partition, count in per_partition.items():
        into = counts.setdefault((topic, partition), {})
        into[version] = into.get(version, 0) + count


def dead_letter(
    message: InputRecord,
    failure: Failure,
    topic: str,
    pipeline: str,
    model_version: int | None,
    source_topic: str = "",
) -> Outgoing:
    """The dead letter of one input: its key and value as they were, its headers plus the ``kinfer.*`` ones."""
    headers = dead_letter_headers(
        message.headers(),
        topic=message.topic() or source_topic,
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp_ms=record_timestamp_ms(message),
        failure=failure,
        pipeline=pipeline,
        model_version=model_version,
    )
    return Outgoing(topic, message.key(), message.value(), headers, reason=failure.reason)
