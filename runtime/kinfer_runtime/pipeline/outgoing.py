"""The records one batch produces: each an :class:`Outgoing` (an output, a dead letter or a shadow candidate's
prediction), kept per batch as :class:`BatchRecords`, the columns ``produce`` is called with (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, overload


@dataclass(slots=True)
class Outgoing:
    """One record to produce: an output, a dead-letter record (``reason`` set), or a shadow candidate's
    prediction (``shadow``: not an output of its input, which has one already)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    reason: str | None = None
    shadow: bool = False


class BatchRecords:
    """The records of one batch as the columns ``produce`` takes: per record its topic, key, value and headers,
    plus its dead-letter reason (None for an output) and whether a shadow candidate made it. The success path
    hands the columns to ``produce`` whole (pipeline/sending.py); the failure paths read or replace one record at
    a time as an :class:`Outgoing`."""

    __slots__ = ("headers", "keys", "reasons", "shadows", "topics", "values")

    def __init__(self, topics: list[str], keys: list[Any], values: list[Any], headers: list[Any],
                 reasons: list[str | None], shadows: list[bool]) -> None:  # fmt: skip
        self.topics, self.keys, self.values, self.headers = topics, keys, values, headers
        self.reasons, self.shadows = reasons, shadows

    @classmethod
    def of(cls, records: Iterable[Outgoing]) -> BatchRecords:
        listed = list(records)
        return cls([r.topic for r in listed], [r.key for r in listed], [r.value for r in listed],
                   [r.headers for r in listed], [r.reason for r in listed], [r.shadow for r in listed])  # fmt: skip

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> Outgoing: ...
    @overload
    def __getitem__(self, index: slice) -> list[Outgoing]: ...
    def __getitem__(self, index: int | slice) -> Outgoing | list[Outgoing]:
        if isinstance(index, slice):
            return list(self)[index]
        return Outgoing(self.topics[index], self.keys[index], self.values[index], self.headers[index],
                        self.reasons[index], self.shadows[index])  # fmt: skip

    def __setitem__(self, index: int, record: Outgoing) -> None:
        self.topics[index], self.keys[index], self.values[index] = record.topic, record.key, record.value
        self.headers[index], self.reasons[index], self.shadows[index] = record.headers, record.reason, record.shadow

    def append(self, record: Outgoing) -> None:
        self.topics.append(record.topic)
        self.keys.append(record.key)
        self.values.append(record.value)
        self.headers.append(record.headers)
        self.reasons.append(record.reason)
        self.shadows.append(record.shadow)

    def __iter__(self) -> Iterator[Outgoing]:
        return map(Outgoing, self.topics, self.keys, self.values, self.headers, self.reasons, self.shadows)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, BatchRecords | list) else NotImplemented
