"""Pure logic of ``kinfer replay``: which dead-letter records to re-inject, with which headers, and the report.

A dead-letter record (README.md, "What comes out") carries the original key, value and headers plus ``kinfer.source.*``,
``kinfer.error.*``, ``kinfer.pipeline``, ``kinfer.model.version`` and ``kinfer.attempt``. Replay strips what the
dead-letter stage added, keeps the attempt count and adds ``kinfer.replayed-from``, so a record that fails
again comes back with its attempt raised; at ``spec.consumer.maxAttempts`` it is not replayed any more.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Header names as written by the runtime's dead-letter stage (kinfer_runtime.records.dead_letter).
ERROR_CLASS = "kinfer.error.class"
ERROR_MESSAGE = "kinfer.error.message"
ATTEMPT = "kinfer.attempt"
PIPELINE = "kinfer.pipeline"
SOURCE_TOPIC = "kinfer.source.topic"
REPLAYED_FROM = "kinfer.replayed-from"
# Everything the dead-letter stage or an earlier replay added; the rest are the producer's own headers.
ADDED_PREFIXES = ("kinfer.error.", "kinfer.source.", "kinfer.model.", PIPELINE, ATTEMPT, REPLAYED_FROM)
UNKNOWN_CLASS = "(none)"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, with the headers replay needs already decoded."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    error_class: str
    error_message: str
    attempt: int
    pipeline: str | None

    @classmethod
    def from_message(cls, message: Any) -> DeadLetter:
        headers: Headers = [(k, v if v is not None else b"") for k, v in (message.headers() or [])]
        return cls(
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            timestamp_ms=message.timestamp()[1],
            key=message.key(),
            value=message.value(),
            headers=headers,
            error_class=header_text(headers, ERROR_CLASS) or UNKNOWN_CLASS,
            error_message=header_text(headers, ERROR_MESSAGE) or "",
            attempt=attempt_of(headers),
            pipeline=header_text(headers, PIPELINE),
        )

    @property
    def position(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


def header_text(headers: Headers, name: str) -> str | None:
    """The last value of a header as text (the last one wins, as with the dead-letter stage's own reads)."""
    for key, value in reversed(headers):
        if key == name:
            return value.decode("utf-8", "replace")
    return None


def attempt_of(headers: Headers) -> int:
    """``kinfer.attempt`` as an int; a dead-letter record without one counts as a first failure."""
    text = header_text(headers, ATTEMPT)
    try:
        return max(1, int(text)) if text is not None else 1
    except ValueError:
        return 1


def replay_headers(dead_letter: DeadLetter) -> Headers:
    """The original headers, plus the attempt count kept from the dead-letter record and where it came from."""
    headers = [(k, v) for k, v in dead_letter.headers if not k.startswith(ADDED_PREFIXES)]
    headers.append((ATTEMPT, str(dead_letter.attempt).encode()))
    headers.append((REPLAYED_FROM, dead_letter.position.encode()))
    return headers


@dataclass(frozen=True)
class Selection:
    """What to replay: error classes (empty = all), the pipeline the records must belong to, the attempt limit."""

    pipeline: str
    max_attempts: int
    error_classes: frozenset[str] = frozenset()


def skip_reason(dead_letter: DeadLetter, selection: Selection) -> str | None:
    """None when the record is to be replayed, else why not (a short, stable phrase for the report)."""
    if dead_letter.pipeline is not None and dead_letter.pipeline != selection.pipeline:
        return "other pipeline"
    if selection.error_classes and dead_letter.error_class not in selection.error_classes:
        return "other error class"
    if dead_letter.attempt >= selection.max_attempts:
        return "attempts exhausted"
    return None


@dataclass
class ReplayReport:
    """Counts per error class of what was read, replayed (or would be) and skipped, plus a few samples."""

    sample_size: int = 5
    read: int = 0
    replayable: Counter[str] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (class, reason)
    samples: list[DeadLetter] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)

    def add(self, dead_letter: DeadLetter, reason: str | None) -> None:
        self.read += 1
        self.next_offsets[dead_letter.partition] = dead_letter.offset + 1
        if reason is None:
            self.replayable[dead_letter.error_class] += 1
            if len(self.samples) < self.sample_size:
                self.samples.append(dead_letter)
        else:
            self.skipped[(dead_letter.error_class, reason)] += 1

    @property
    def total_replayable(self) -> int:
        return sum(self.replayable.values())

    def table(self) -> str:
        """A table by error class: replayable, attempts exhausted, other skips."""
        classes = sorted(set(self.replayable) | {c for c, _ in self.skipped})
        lines = [f"{'error class':<20} {'replay':>8} {'exhausted':>10} {'skipped':>8}"]
        for name in classes:
            exhausted = self.skipped[(name, "attempts exhausted")]
            other = sum(n for (c, r), n in self.skipped.items() if c == name and r != "attempts exhausted")
            lines.append(f"{name:<20} {self.replayable[name]:>8,} {exhausted:>10,} {other:>8,}")
        lines.append(f"{'total':<20} {self.total_replayable:>8,} {self.read - self.total_replayable:>19,}")
        return "\n".join(lines)

    def sample_lines(self, width: int = 80) -> list[str]:
        lines = []
        for d in self.samples:
            value = (d.value or b"").decode("utf-8", "replace")
            value = value if len(value) <= width else value[: width - 3] + "..."
            lines.append(
                f"{d.position} {d.error_class} attempt={d.attempt} {d.error_message[:width]!r} value={value!r}"
            )
        return lines


RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time_ms(text: str, now_ms: int) -> int:
    """A point in time as epoch milliseconds: ``1732570000000`` (ms), ISO 8601, or ``30m``/``2h``/``1d`` ago."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    relative = RELATIVE.match(text)
    if relative:
        return now_ms - int(float(relative.group(1)) * UNIT_SECONDS[relative.group(2)] * 1000)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot read time {text!r}: use epoch ms, ISO 8601 or a duration ago like 30m") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
