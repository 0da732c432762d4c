"""One managed child process of the test bed: started with its log in a file, probed until ready, stopped.

A component that fails to start raises :class:`StartError` with its command line and the tail of its log,
which is what a person needs to see first. ``on_spawn(pid)`` runs as soon as the process exists, so the bed's
ledger (tests/testbed/ledger.py) knows of it even if it never becomes ready.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .ports import free_port

__all__ = ["ManagedProcess", "StartError", "free_port", "log_tail", "pid_alive"]


class StartError(RuntimeError):
    """A component did not become ready; the message has its command line and the tail of its log."""


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


@dataclass
class ManagedProcess:
    """A component process. ``ready`` is a probe that returns True once the component serves requests."""

    name: str
    command: Sequence[str]
    log_path: Path
    ready: Callable[[], bool]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    start_timeout: float = 120.0
    on_spawn: Callable[[int], None] | None = field(default=None, repr=False)
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    pid: int | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(self.command)}\n".encode())
            log.flush()
            # A new session, so that stopping the bed's process group never signals the test runner.
            self.popen = subprocess.Popen(
                list(self.command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.pid = self.popen.pid
        if self.on_spawn is not None:
            self.on_spawn(self.pid)
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise self._start_error(f"exited with code {self.popen.returncode}")
            try:
                if self.ready():
                    return
            except Exception:
                pass
            time.sleep(0.25)
        raise self._start_error(f"not ready after {self.start_timeout:.0f} s")

    def lost_a_port_race(self) -> bool:
        """Whether the last start failed because another process had bound one of its ports."""
        return "address already in use" in log_tail(self.log_path, 60).lower()

    def _start_error(self, what: str) -> StartError:
        return StartError(
            f"test bed: {self.name} {what}\ncommand: {' '.join(self.command)}\n"
            f"log {self.log_path} (last lines):\n{log_tail(self.log_path)}"
        )

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def signal(self, signum: int) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; a paused (SIGSTOPped) process is continued first."""
        if self.pid is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            time.sleep(0.1)
        if self.alive():
            self.signal(signal.SIGKILL)
            if self.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(5)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(1)
