"""Progress of a batch run over a topic range, kept as offsets committed to a consumer group of its own.

``kinfer score --progress-group G`` commits, per partition, the next offset to score with the metadata
``kinfer-batch start=S end=E``: the range that run planned. That one record serves two readers:

- the operator, which shows a batch run's progress in the pipeline's status without talking to the pod
  (``done / total`` is the sum of ``offset - S`` over the sum of ``E - S``; :func:`progress`);
- the run itself when it starts again (a Job's retry after its pod died): with a topic as output, it resumes
  from the committed offsets and keeps the range it planned first (:func:`resume_ranges`), so an input is
  scored once whatever the number of attempts, and records appended since are not pulled in.

The group is never one a live consumer uses, and a run never joins it (partitions are assigned by hand).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from kinfer_runtime.kafka.topic_range import Range

MARK = "kinfer-batch"
_METADATA = re.compile(rf"^{MARK} start=(\d+) end=(\d+)$")


def range_metadata(start: int, end: int) -> str:
    return f"{MARK} start={start} end={end}"


def parse_range_metadata(text: str | None) -> Range | None:
    """The (start, end) a run recorded, or None for a commit that is not a batch run's."""
    found = _METADATA.match(text or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


@dataclass(frozen=True)
class Committed:
    offset: int  # the next offset to score; negative when the partition has no commit
    metadata: str | None


def recorded_ranges(planned: dict[int, Range], committed: dict[int, Committed]) -> dict[int, Range]:
    """The ranges of the run: those a previous attempt recorded in the group, when it holds any; otherwise the
    ranges planned now."""
    recorded = {p: parse_range_metadata(c.metadata) for p, c in committed.items()}
    kept = {p: bounds for p, bounds in sorted(recorded.items()) if bounds is not None}
    return kept or dict(planned)


def resume_ranges(recorded: dict[int, Range], committed: dict[int, Committed]) -> dict[int, Range]:
    """What is left of ``recorded``: each range from its committed offset on (a finished partition is left out)."""
    left = {}
    for partition, (start, end) in sorted(recorded.items()):
        entry = committed.get(partition)
        resume = start if entry is None or parse_range_metadata(entry.metadata) != (start, end) else entry.offset
        if max(start, resume) < end:
            left[partition] = (max(start, resume), end)
    return left


def progress(committed: dict[int, Committed]) -> tuple[int, int] | None:
    """(records done, records in the range) from a group's commits, or None when no batch run committed there."""
    done = total = 0
    found = False
    for entry in committed.values():
        bounds = parse_range_metadata(entry.metadata)
        if bounds is None:
            continue
        found = True
        start, end = bounds
        total += end - start
        done += min(max(entry.offset, start), end) - start
    return (done, total) if found else None


def read_committed(
    consumer: Consumer, topic: str, partitions: list[int], timeout_s: float = 30.0
) -> dict[int, Committed]:
    found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout_s)
    return {tp.partition: Committed(tp.offset, tp.metadata) for tp in found}


class ProgressCommits:
    """Commits how far a run got, at most every ``interval_s`` and at the end. ``recorded``: the ranges of the
    run (the first attempt's, on a resumed one); ``left``: what this attempt reads of them."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        recorded: dict[int, Range],
        left: dict[int, Range],
        interval_s: float = 2.0,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.recorded = dict(recorded)
        self.position = {p: left[p][0] if p in left else end for p, (_, end) in recorded.items()}
        self.interval_s = interval_s
        self.last = 0.0

    def record(self, source: dict[str, Any]) -> None:
        """A record (by its ``source`` fields) whose result is written: the next to score follows it."""
        partition = source["partition"]
        self.position[partition] = max(self.position.get(partition, 0), source["offset"] + 1)

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval_s

    def commit(self) -> None:
        """Synchronous: raises when the broker refuses, so a run never reports progress it has not stored."""
        offsets = [
            TopicPartition(self.topic, p, self.position[p], metadata=range_metadata(start, end))
            for p, (start, end) in sorted(self.recorded.items())
        ]
        if offsets:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        self.last = time.monotonic()
