"""What a test bed created, written down before it creates the next thing, so that everything can be removed.

A start that fails half way, or a starter that is killed, leaves processes (and, with a real node, mounts,
network interfaces and namespaces) behind; nothing else knows about them. So every component records what it
makes in ``<root>/ledger.json`` the moment it exists (a process right after it is spawned, before it is ready),
and :func:`tear_down` undoes the entries in reverse order: processes and their process groups (SIGTERM, then
SIGKILL), mounts, interfaces, network namespaces, directories, and undo commands (``command``: an argv written down
before the change it undoes, such as a policy routing rule, a sysctl's old value, a firewall table; run ignoring
failures, since the change may never have happened). ``make testbed-down`` and the pytest fixtures' teardown both
use it, so they clean up after a start that never finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

KINDS = ("process", "mount", "interface", "netns", "directory", "command")
COMMAND_TIMEOUT = 120.0


class Ledger:
    """An append-only list of created resources in a JSON file, rewritten atomically on every entry."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = self.read(path)
        self._lock = threading.Lock()  # Kafka and the control plane start on two threads

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        try:
            entries = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return []
        return entries if isinstance(entries, list) else []

    def record(self, kind: str, **details: Any) -> None:
        assert kind in KINDS, kind
        with self._lock:
            self.entries.append({"kind": kind, **details})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.entries, indent=1))
            os.replace(tmp, self.path)

    def process(self, name: str, pid: int) -> None:
        self.record("process", name=name, pid=pid, start_time=process_start_time(pid))

    def command(self, argv: Sequence[str | Path], note: str) -> None:
        """An undo command: ``argv`` runs at tear-down (newest first, with the other kinds); ``note`` says what
        it undoes."""
        self.record("command", argv=[str(arg) for arg in argv], note=note)

    def pids(self) -> dict[str, int]:
        return {e["name"]: e["pid"] for e in self.entries if e["kind"] == "process" and same_process(e)}


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat): with the pid it names the
    process, so a pid reused by another process after a reboot or a long time is never signalled."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def same_process(entry: dict[str, Any]) -> bool:
    start = process_start_time(int(entry["pid"]))
    return start is not None and start == entry.get("start_time") and not _zombie(int(entry["pid"]))


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    return True


def _signal_group(pid: int, signum: int) -> None:
    """The process and its process group (components start in sessions of their own, leading their group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def stop_processes(entries: list[dict[str, Any]], timeout: float = 30.0, grace: float = 10.0) -> None:
    """Newest first, one at a time: SIGTERM, wait up to ``grace`` (and within ``timeout`` for all), then SIGKILL.

    One at a time because the components depend on each other: a kube-apiserver told to stop while its etcd
    stops too can wait on the storage it lost until SIGKILL (seen: 30 s downs, the whole timeout), while the
    same apiserver stopped before its etcd ends in about a second."""
    deadline = time.monotonic() + timeout
    for entry in reversed([e for e in entries if same_process(e)]):
        _signal_group(int(entry["pid"]), signal.SIGCONT)
        _signal_group(int(entry["pid"]), signal.SIGTERM)
        own = min(deadline, time.monotonic() + grace)
        while time.monotonic() < own and same_process(entry):
            time.sleep(0.05)
        if same_process(entry):
            _signal_group(int(entry["pid"]), signal.SIGKILL)


def tear_down(path: Path, timeout: float = 30.0) -> bool:
    """Undo every entry of the ledger at ``path`` (newest first); True when there was one to undo."""
    entries = Ledger.read(path)
    if not entries:
        return False
    stop_processes([e for e in entries if e["kind"] == "process"], timeout)
    for entry in reversed(entries):
        kind = entry["kind"]
        if kind == "mount":
            subprocess.run(["umount", "-l", entry["path"]], capture_output=True, check=False)
        elif kind == "interface":
            subprocess.run(["ip", "link", "delete", entry["name"]], capture_output=True, check=False)
        elif kind == "netns":
            subprocess.run(["ip", "netns", "delete", entry["name"]], capture_output=True, check=False)
        elif kind == "directory":
            shutil.rmtree(entry["path"], ignore_errors=True)
        elif kind == "command":
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(entry["argv"], capture_output=True, check=False, timeout=COMMAND_TIMEOUT)
    path.unlink(missing_ok=True)
    return True
