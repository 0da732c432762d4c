"""The arithmetic of a batch run's progress commits (tools/batch_progress.py): what a resumed run reads, and the
progress the operator shows."""

from __future__ import annotations

from kinfer_runtime.tools.batch_progress import (
    Committed,
    parse_range_metadata,
    progress,
    range_metadata,
    recorded_ranges,
    resume_ranges,
)


def test_the_metadata_round_trips_and_other_commits_are_not_read_as_a_run() -> None:
    assert parse_range_metadata(range_metadata(5, 900)) == (5, 900)
    assert parse_range_metadata("") is None
    assert parse_range_metadata(None) is None
    assert parse_range_metadata("kinfer-batch start=5") is None


def test_a_first_run_reads_what_it_planned() -> None:
    planned = {0: (0, 100), 1: (10, 50)}
    none = {0: Committed(-1001, None), 1: Committed(-1001, None)}
    recorded = recorded_ranges(planned, none)
    assert recorded == planned
    assert resume_ranges(recorded, none) == planned
    assert progress(none) is None


def test_a_resumed_run_keeps_the_first_range_and_starts_from_the_commits() -> None:
    planned_now = {0: (0, 180), 1: (10, 90)}  # more records arrived since the first attempt planned
    committed = {0: Committed(40, range_metadata(0, 100)), 1: Committed(50, range_metadata(10, 50))}
    recorded = recorded_ranges(planned_now, committed)
    assert recorded == {0: (0, 100), 1: (10, 50)}
    assert resume_ranges(recorded, committed) == {0: (40, 100)}  # partition 1 is done
    assert progress(committed) == (40 + 40, 100 + 40)


def test_a_commit_of_another_range_does_not_move_the_start() -> None:
    recorded = {0: (0, 100)}
    assert resume_ranges(recorded, {0: Committed(70, range_metadata(50, 100))}) == {0: (0, 100)}
    assert resume_ranges(recorded, {0: Committed(70, range_metadata(0, 100))}) == {0: (70, 100)}
