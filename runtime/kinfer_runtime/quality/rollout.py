"""Which records a candidate model version scores, and how its predictions compare with the live ones (pure).

A record's side is a hash of its key (CRC-32: the same on every platform and Python), so that in a canary a key
always sees the same version and in a shadow the same keys are compared; a record without key is placed by its
partition and offset. A candidate must give the predictions the same fields as the live version (consumers of
the output topic read both), and may need other inputs: each version preprocesses with its own kinfer.json.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kinfer_runtime.spec.model_metadata import ModelMetadata

HASH_RANGE = 2**32
# candidate minus live, per numeric output: symmetric around 0, finer near it
DIFFERENCE_BUCKETS = (-1.0, -0.5, -0.2, -0.1, -0.05, -0.01, 0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0)


def candidate_mask(
    keys: Sequence[bytes | str | None], places: Callable[[], Sequence[tuple[int, int]]], share: float
) -> np.ndarray:
    """Per record, whether the candidate scores it: hash(key) below ``share`` of the hash range (``places()``:
    (partition, offset) of each record, asked for only when a record has no key). A share of 1 (a shadow of every
    record) or 0 takes no hashing."""
    if share >= 1.0 or share <= 0.0:
        return np.full(len(keys), share >= 1.0)
    limit = share * HASH_RANGE
    crc32 = zlib.crc32
    try:
        hashes = list(map(crc32, keys))  # type: ignore[arg-type]  # keys as consumed (bytes): C-level
    except TypeError:  # a key that is None (or text)
        hashes = [
            crc32(key.encode() if isinstance(key, str) else key) if key is not None else crc32(b"%d:%d" % place)
            for key, place in zip(keys, places(), strict=True)
        ]
    return np.fromiter(hashes, dtype=np.uint64, count=len(hashes)) < limit


def incompatibility(live: ModelMetadata, candidate: ModelMetadata) -> str | None:
    """Why ``candidate`` cannot stand in for ``live`` in the output records, or None."""
    if sorted(candidate.outputs) != sorted(live.outputs):
        return f"its outputs {sorted(candidate.outputs)} differ from the live version's {sorted(live.outputs)}"
    live_label = live.labels.field if live.labels else None
    candidate_label = candidate.labels.field if candidate.labels else None
    if candidate_label != live_label:
        return f"its label field {candidate_label!r} differs from the live version's {live_label!r}"
    return None


@dataclass(frozen=True)
class Comparison:
    """The candidate's predictions beside the live ones for the same records."""

    agreeing: int  # records whose predicted label is the same (0 and 0 without labels)
    disagreeing: int
    differences: dict[str, np.ndarray]  # per numeric output: candidate minus live, finite values only


def compare(
    live_scores: dict[str, np.ndarray],
    live_labels: Sequence[str],
    candidate_scores: dict[str, np.ndarray],
    candidate_labels: Sequence[str],
    rows: np.ndarray,
) -> Comparison:
    """``rows``: the positions in the live arrays of the records the candidate scored, in its order."""
    agreeing = disagreeing = 0
    if live_labels and candidate_labels:
        same = np.asarray(live_labels, dtype=object)[rows] == np.asarray(candidate_labels, dtype=object)
        agreeing = int(np.count_nonzero(same))
        disagreeing = len(rows) - agreeing
    differences = {}
    for output, values in candidate_scores.items():
        live = live_scores.get(output)
        if live is not None:
            difference = values - live[rows]
            differences[output] = difference[np.isfinite(difference)]
    return Comparison(agreeing, disagreeing, differences)
