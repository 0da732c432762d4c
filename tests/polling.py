"""Waiting for a condition in integration tests: one polling loop for every test area."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something truthy, and return that. Fail,
    naming ``what`` and the last value, when a call made after ``timeout`` seconds still returns nothing."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last value: {last!r}")
        time.sleep(interval)
