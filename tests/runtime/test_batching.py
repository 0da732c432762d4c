"""When a micro-batch closes: full, its oldest record waited long enough, or more records are not expected."""

from __future__ import annotations

import pytest

from kinfer_runtime.pipeline.batching import RATE_WINDOW_S, BatchWindow


def busy_window(max_records: int = 100, max_wait_s: float = 0.020, rate: int = 5000, now: float = 10.0) -> BatchWindow:
    """A window that has seen ``rate`` records over the last second (the arrival rate it estimates)."""
    window = BatchWindow(max_records, max_wait_s, now - RATE_WINDOW_S)
    for step in range(10):
        window.closed(rate // 10, now - RATE_WINDOW_S + (step + 1) * RATE_WINDOW_S / 10)
    return window


def test_a_full_batch_closes_at_once_and_an_empty_one_never() -> None:
    window = busy_window()
    assert window.should_close(100, deadline=11.0, now=10.0)
    assert not window.should_close(0, deadline=9.0, now=10.0)


def test_the_deadline_counts_from_when_the_queue_was_last_seen_empty() -> None:
    window = busy_window(max_wait_s=0.020)
    window.consumed(asked=100, got=40, now=10.000)  # fewer than asked: the local queue is empty now
    assert window.deadline() == pytest.approx(10.020)
    window.consumed(asked=60, got=60, now=10.015)  # a full answer says nothing about the queue
    assert window.deadline() == pytest.approx(10.020)
    assert not window.should_close(50, deadline=10.020, now=10.010)
    assert window.should_close(50, deadline=10.020, now=10.020)


def test_a_slow_input_closes_the_batch_without_waiting_for_more() -> None:
    window = busy_window(rate=10)  # 10 records/s: fewer than one more expected within 20 ms
    assert window.arrival_rate(10.0) == pytest.approx(10)
    assert window.should_close(1, deadline=10.019, now=10.0)
    busy = busy_window(rate=5000)  # 100 more expected within 20 ms: worth waiting for
    assert not busy.should_close(1, deadline=10.019, now=10.0)


def test_the_arrival_rate_forgets_batches_older_than_its_window() -> None:
    window = busy_window(rate=5000, now=10.0)
    assert window.arrival_rate(10.0) == pytest.approx(5000)
    assert window.arrival_rate(10.0 + RATE_WINDOW_S / 2) == pytest.approx(2500, rel=0.25)
    assert window.arrival_rate(10.0 + 2 * RATE_WINDOW_S) == 0


def test_the_wait_follows_processing_time_within_a_quarter_and_all_of_max_batch_wait() -> None:
    window = busy_window(max_wait_s=0.020)
    window.consumed(asked=100, got=0, now=10.0)
    assert window.deadline() == pytest.approx(10.020)  # nothing learnt yet: the configured wait
    for _ in range(30):
        window.processed(0.008)  # batches take 8 ms: waiting 8 ms keeps the loop at most half busy
    assert window.deadline() == pytest.approx(10.008, abs=1e-4)
    for _ in range(30):
        window.processed(0.001)  # a fast model: the wait does not shrink below 5 ms (a quarter of 20)
    assert window.deadline() == pytest.approx(10.005)
    for _ in range(30):
        window.processed(0.200)  # a slow model: the wait is capped by maxBatchWaitMs
    assert window.deadline() == pytest.approx(10.020)


def test_zero_max_batch_wait_closes_as_soon_as_a_record_is_in_hand() -> None:
    window = busy_window(max_wait_s=0.0)
    window.consumed(asked=100, got=3, now=10.0)
    assert window.should_close(3, deadline=window.deadline(), now=10.0)
