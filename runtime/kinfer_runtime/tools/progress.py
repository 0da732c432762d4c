"""A small progress display on stderr for the data tools (produce, replay, score).

On a terminal it redraws one line in place a few times a second; when stderr is a file or a pipe (CI logs) it
prints a plain line every few seconds instead, so logs stay readable. ``format_progress`` is pure and tested.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

BAR_WIDTH = 24


def format_count(n: float) -> str:
    """1234 → '1,234'; 1234567 → '1.23M' (short enough for one line)."""
    if n >= 10_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.2f}M"
    return f"{int(n):,}"


def format_progress(label: str, done: int, total: int | None, elapsed_s: float, extra: str = "") -> str:
    """One status line: a bar when the total is known, the count, the rate, and an optional extra part."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    parts = [label]
    if total:
        fraction = min(done / total, 1.0)
        filled = round(fraction * BAR_WIDTH)
        parts.append(f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction * 100:5.1f}%")
        parts.append(f"{format_count(done)}/{format_count(total)}")
    else:
        parts.append(format_count(done))
    parts.append(f"{format_count(rate)}/s")
    if extra:
        parts.append(extra)
    return " ".join(parts)


class ProgressBar:
    """Shows ``format_progress`` lines on a stream; call ``update`` as often as you like, it rate-limits itself."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: IO[str] | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.clock = clock
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        # A terminal line is cheap to redraw; a log line is not, so pipes get one every 5 s.
        self.interval_s = 0.2 if self.tty else 5.0
        self.started = clock()
        self.last_drawn = self.started
        self.done = 0
        self.extra = ""

    def update(self, done: int, extra: str = "") -> None:
        self.done, self.extra = done, extra
        now = self.clock()
        if self.enabled and now - self.last_drawn >= self.interval_s:
            self.last_drawn = now
            self._draw(final=False)

    def finish(self) -> None:
        """Draws the last state and ends the line (on a terminal)."""
        if self.enabled:
            self._draw(final=True)

    def _draw(self, final: bool) -> None:
        line = format_progress(self.label, self.done, self.total, self.clock() - self.started, self.extra)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
