"""Turn one consumed batch plus its predictions and failures into the records to produce (pure).

Every input yields exactly one record: an output when it was predicted, a dead-letter record otherwise. The
batch also yields, per input partition, the offset to commit once all of them are acknowledged, and how many of
its records each model version scored (committed with that offset: records/scored_counts.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import sub, truediv
from typing import Any

import numpy as np

from kinfer_runtime.pipeline.commits import TopicPartitionKey
from kinfer_runtime.pipeline.consumed import TIMESTAMP_NOT_AVAILABLE, ConsumedBatch, InputRecord, record_timestamp_ms
from kinfer_runtime.pipeline.outgoing import BatchRecords, Outgoing
from kinfer_runtime.records.dead_letter import Failure, dead_letter_headers
from kinfer_runtime.records.output import OWN_HEADERS, SOURCE_OFFSET, SOURCE_PARTITION, BatchContext, OutputEncoder
from kinfer_runtime.records.predictions import EncodedPredictions


@dataclass
class AssembledBatch:
    """``records[i]`` is the output or dead letter of ``messages[predicted[i]]`` for the first ``len(predicted)``
    records, and of ``messages[failed[i - len(predicted)]]`` after them (:meth:`input_of`)."""

    records: BatchRecords
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
    records = BatchRecords([], [], [], [], [], [])
    consumed = ConsumedBatch(messages)
    timestamps: list[float] = []
    counts: dict[TopicPartitionKey, dict[int, int]] = {}
    for group in groups:
        _outputs(records, timestamps, consumed, group, output_topic, int(now_ms), counts)
    failed = []
    for index, failure in failures:
        failed.append(index)
        records.append(dead_letter(messages[index], failure, dead_letter_topic, context.pipeline,
                                   context.model_version, context.source_topic))  # fmt: skip
    if shadow is not None and shadow_topic is not None and shadow.predicted:
        if len(shadow.predicted) != len(shadow.predictions):
            raise ValueError(f"{len(shadow.predictions)} shadow rows for {len(shadow.predicted)} records")
        _outputs(records, [], consumed, shadow, shadow_topic, int(now_ms), counts, shadow=True)
    output_times = np.array(timestamps, dtype=np.float64)
    output_times = output_times[~np.isnan(output_times)]
    all_predicted = predicted if not more else [index for group in groups for index in group.predicted]
    return AssembledBatch(records, consumed.next_offsets(), output_times, messages, all_predicted, failed, counts)


def _outputs(
    records: BatchRecords,
    timestamps: list[float],
    consumed: ConsumedBatch,
    group: ScoredRows,
    output_topic: str,
    now: int,
    counts: dict[TopicPartitionKey, dict[int, int]],
    shadow: bool = False,
) -> None:
    """Append the output records of one group to ``records``, and their inputs' timestamps (s, NaN for none) to
    ``timestamps``; count the group's records per input partition into ``counts``."""
    # The hot path of the runtime. Everything equal for the whole group is built once (the value templates, the
    # shared headers, the partition headers); the per-record reads of the messages are C-level maps; per record
    # there is one %-format of the value and one header list: what output.output_value / output_headers describe.
    predicted = group.predicted
    chosen = list(map(consumed.messages.__getitem__, predicted))
    at_partition = list(map(consumed.partitions.__getitem__, predicted))
    at_offset = list(map(consumed.offsets.__getitem__, predicted))
    n = len(chosen)
    records.topics.extend(repeat(output_topic, n))
    records.keys.extend(consumed.read("key", chosen))
    records.reasons.extend(repeat(None, n))
    records.shadows.extend(repeat(shadow, n))
    encoder = OutputEncoder(group.context)
    shared = group.context.shared_headers()
    partition_headers = {p: (SOURCE_PARTITION, b"%d" % p) for p in set(at_partition)}
    kinds, stamps = zip(*consumed.read("timestamp", chosen), strict=True) if n else ((), ())
    own = consumed.read("headers", chosen)
    if TIMESTAMP_NOT_AVAILABLE in kinds or (n and min(stamps) <= 0) or any(own):
        _outputs_one_by_one(records, timestamps, encoder, shared, partition_headers, group.predictions,
                            at_partition, at_offset, kinds, stamps, own, now)  # fmt: skip
        return _count(counts, group.context, at_partition)
    # Every input has a timestamp and no headers of its own (the usual batch): the same records built by C-level
    # maps, with no Python code run per record. Each offset is written once, for its header and its value; the
    # prediction's fields go straight into the value (one %-format per record).
    timestamps.extend(map(truediv, stamps, repeat(1000.0)))
    offset_bytes = list(map(b"%d".__mod__, at_offset))
    partition_bytes = map(b"%d".__mod__, at_partition)
    end_to_end = map(sub, repeat(now), stamps)
    predictions = group.predictions
    if isinstance(predictions, EncodedPredictions):
        template = encoder.template(predictions.template, b"%b")
        rows = zip(*predictions.columns, partition_bytes, offset_bytes, stamps, end_to_end, strict=True)
    else:
        template = encoder.template(b"%b", b"%b")
        rows = zip(predictions, partition_bytes, offset_bytes, stamps, end_to_end, strict=True)
    records.values.extend(map(template.__mod__, rows))
    records.headers += [
        [*shared, partition_headers[partition], (SOURCE_OFFSET, offset)]
        for partition, offset in zip(at_partition, offset_bytes, strict=True)
    ]
    _count(counts, group.context, at_partition)


def _outputs_one_by_one(
    records: BatchRecords,
    timestamps: list[float],
    encoder: OutputEncoder,
    shared: list[tuple[str, bytes]],
    partition_headers: dict[int, tuple[str, bytes]],
    predictions: Sequence[bytes],
    partitions: list[int],
    offsets: list[int],
    kinds: Sequence[int],
    stamps: Sequence[int],
    own: list[Any],
    now: int,
) -> None:
    """``_outputs``' values and headers for a group where some input has no timestamp or headers of its own."""
    nan = float("nan")
    rows = zip(predictions, partitions, offsets, kinds, stamps, own, strict=True)
    for prediction, partition, offset, kind, stamp, headers in rows:
        timed = kind != TIMESTAMP_NOT_AVAILABLE and stamp > 0
        timestamps.append(stamp / 1000.0 if timed else nan)
        records.values.append(encoder.value(prediction, partition, offset, stamp if timed else None, now))
        kept = [h for h in headers if h[0] not in OWN_HEADERS] if headers else []
        records.headers.append([*kept, *shared, partition_headers[partition], (SOURCE_OFFSET, b"%d" % offset)])


def _count(counts: dict[TopicPartitionKey, dict[int, int]], context: BatchContext, partitions: list[int]) -> None:
    """Add one version's records per input partition to ``counts``."""
    version, topic = context.model_version, context.source_topic
    for partition in set(partitions):
        count = partitions.count(partition)  # C-level; a batch holds records of a few partitions
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
