"""Records scored per model version, kept in the metadata of the input's committed offsets (pure).

Each commit of an input partition carries, as its offset metadata, how many of that partition's records below
the committed offset each model version scored, and which versions the committing consumer had loaded:
``kinfer-scored v1=10234 v2=1130 loaded=1,2``. The counts travel with the offset in the same commit (or the
same transaction), so they always describe exactly the committed records: a batch read again after a crash or
an abort is counted once, when it is committed again. A consumer handed a partition starts from the counts of
its last commit. The operator reads the group's committed offsets anyway (for lag) and sums the counts over the
partitions into ``status.scoredByVersion``; ``loaded`` tells it on how many partitions' consumers the rollout's
candidate was loaded. A shadow candidate's predictions count for the candidate (it scored those records too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

PREFIX = "kinfer-scored"
MAX_VERSIONS = 16  # beyond this, versions no consumer has loaded are dropped, lowest first (the metadata stays small)

PartitionKey = tuple[str, int]
VersionCounts = dict[int, int]


@dataclass(frozen=True)
class PartitionScored:
    """What one partition's committed metadata says."""

    counts: Mapping[int, int]
    loaded: tuple[int, ...]


def encode(counts: Mapping[int, int], loaded: Iterable[int]) -> str:
    """The metadata of one partition's commit."""
    versions = " ".join(f"v{version}={count}" for version, count in sorted(counts.items()))
    loaded_text = ",".join(str(v) for v in sorted(set(loaded)))
    return f"{PREFIX} {versions} loaded={loaded_text}".replace("  ", " ")


def parse(metadata: str | None) -> PartitionScored | None:
    """The counts in one partition's commit metadata; None when it is not kinfer's (or is damaged)."""
    if not metadata or not metadata.startswith(PREFIX + " "):
        return None
    counts: VersionCounts = {}
    loaded: tuple[int, ...] = ()
    try:
        for word in metadata[len(PREFIX) + 1 :].split():
            name, _, value = word.partition("=")
            if name == "loaded":
                loaded = tuple(int(v) for v in value.split(",") if v)
            elif name.startswith("v"):
                counts[int(name[1:])] = int(value)
            else:
                return None
    except ValueError:
        return None
    return PartitionScored(counts, loaded)


def totals(partitions: Iterable[PartitionScored]) -> VersionCounts:
    """Records scored by each version, summed over partitions."""
    summed: VersionCounts = {}
    for scored in partitions:
        for version, count in scored.counts.items():
            summed[version] = summed.get(version, 0) + count
    return summed


def add_counts(target: dict[PartitionKey, VersionCounts], batch: Mapping[PartitionKey, Mapping[int, int]]) -> None:
    """Add one batch's counts per partition and version to ``target``."""
    for key, counts in batch.items():
        into = target.setdefault(key, {})
        for version, count in counts.items():
            into[version] = into.get(version, 0) + count


class ScoredCounts:
    """The cumulative counts of the partitions a consumer owns, as of their acknowledged (or committed) offsets.

    ``loaded()`` gives the versions the consumer has loaded right now. A partition whose previous counts could not
    be read is committed with no metadata until it is assigned again (counting it from zero would write counts
    that look complete and are not); its counts then start again from zero."""

    def __init__(self, loaded: Callable[[], Iterable[int]]) -> None:
        self.loaded = loaded
        self.counts: dict[PartitionKey, VersionCounts] = {}
        self.unknown: set[PartitionKey] = set()

    def restore(self, committed: Mapping[PartitionKey, str | None], unreadable: Iterable[PartitionKey] = ()) -> None:
        """Newly assigned partitions: start from the counts of their last commit (none: from zero)."""
        for key, metadata in committed.items():
            scored = parse(metadata)
            self.counts[key] = dict(scored.counts) if scored is not None else {}
            self.unknown.discard(key)
        for key in unreadable:
            self.counts.pop(key, None)
            self.unknown.add(key)

    def add(self, batch: Mapping[PartitionKey, Mapping[int, int]]) -> None:
        """A batch whose offsets are acknowledged (or committed): its records count."""
        add_counts(self.counts, {k: c for k, c in batch.items() if k not in self.unknown})

    def forget(self, keys: Iterable[PartitionKey]) -> None:
        for key in keys:
            self.counts.pop(key, None)
            self.unknown.discard(key)

    def metadata(self, key: PartitionKey, extra: Mapping[int, int] | None = None) -> str:
        """The metadata to commit ``key`` with (plus ``extra`` counts not added yet); "" when unknown."""
        if key in self.unknown:
            return ""
        counts = dict(self.counts.get(key, {}))
        for version, count in (extra or {}).items():
            counts[version] = counts.get(version, 0) + count
        loaded = set(self.loaded())
        if len(counts) > MAX_VERSIONS:
            droppable = sorted(v for v in counts if v not in loaded)
            for version in droppable[: len(counts) - MAX_VERSIONS]:
                del counts[version]
        return encode(counts, loaded)
