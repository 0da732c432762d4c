"""The bed leaves nothing behind: a start killed half way is removed whole by ``testbed down``.

The starter (``python -m tests.testbed up``) is SIGKILLed once a few components run, so nothing of its own
clean-up runs; ``down`` must then find every process, port, mount and network namespace from the ledger alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.polling import wait_until
from tests.testbed import REPO_ROOT
from tests.testbed.ledger import Ledger, same_process


def bed(action: str, root: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.testbed", action, "--root", str(root), *extra],
        cwd=REPO_ROOT,
        # A bed of kwok nodes only: the session's bed may hold this machine's one real node (KINFER_REAL_NODE=1).
        env={**os.environ, "KINFER_REAL_NODE": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def listening_ports(pids: set[int]) -> set[int]:
    """TCP ports in LISTEN state whose socket belongs to one of ``pids`` (from /proc, no tools needed)."""
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else []:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def listening(port: int) -> bool:
    """Whether any socket listens on ``port`` (a closed listener may leave TIME_WAIT entries: those are not it)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


@pytest.mark.timing
def test_a_start_killed_half_way_is_removed_whole_by_down(tmp_path: Path) -> None:
    root = tmp_path / "bed"
    ledger_file = root / "ledger.json"
    starter = bed("up", root)
    try:
        # Half way: Kafka, etcd and the API server exist; the controllers and kwok are not started yet.
        wait_until(
            lambda: {"kafka", "etcd", "kube-apiserver"} <= set(Ledger(ledger_file).pids()), 120, "three components"
        )
        running = Ledger(ledger_file)
        ports = listening_ports(set(running.pids().values()))
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait(30)
    assert starter.returncode == -signal.SIGKILL
    entries = json.loads(ledger_file.read_text())
    processes = [e for e in entries if e["kind"] == "process"]
    assert processes and all(same_process(e) for e in processes), "the components outlive their starter"
    data_dirs = [e["path"] for e in entries if e["kind"] == "directory"]

    down = bed("down", root)
    assert down.wait(120) == 0
    assert not any(same_process(e) for e in processes), "every recorded process is gone"
    assert ports and not any(listening(port) for port in ports), (
        f"still listening: {[p for p in ports if listening(p)]}"
    )
    assert not any(Path(d).exists() for d in data_dirs), "the data directory is removed"
    mounts = Path("/proc/mounts").read_text()
    assert not any(d in mounts for d in data_dirs), "nothing stays mounted under the bed's directories"
    assert not ledger_file.exists() and not (root / "state.json").exists()
    print(f"killed the starter with {len(processes)} components running on {len(ports)} ports; down removed them all")
