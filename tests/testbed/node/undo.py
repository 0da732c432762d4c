"""Undo steps of the real node that one command line cannot express, run from the bed's ledger at tear-down.

The ledger (tests/testbed/ledger.py) runs undo commands as argv lists, in whatever process calls ``testbed down``
and possibly long after the process that started the node was killed. So this file is a script that imports only
the standard library, ``python undo.py ACTION ARG...``, and every action is idempotent: what is gone already is
skipped, and a failure of one step never stops the next.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

CGROUP_MOUNT = Path("/sys/fs/cgroup")
CNI_RESULTS = Path("/var/lib/cni/results")


def command(action: str, *args: str | Path) -> list[str]:
    """The argv that runs ``action`` of this script with this interpreter: what the node writes into the ledger."""
    return [sys.executable, str(Path(__file__).resolve()), action, *map(str, args)]


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, from this process's mount table (octal escapes such as ``\\040`` undone)."""
    prefix = str(root).rstrip("/") + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == str(root) or point.startswith(prefix):
            points.append(point)
    return points


def unmount_under(root: Path) -> None:
    """Lazily unmount everything at or below ``root``, deepest first; again while a mount uncovers another."""
    for _ in range(5):
        points = mounts_under(root)
        if not points:
            return
        for point in sorted(set(points), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def cgroup_trees(name: str) -> list[Path]:
    """The cgroup ``name`` (such as ``/kinfer-node-0``) in every mounted hierarchy (v1 controllers, v2 unified)."""
    trees: dict[Path, Path] = {}
    for hierarchy in CGROUP_MOUNT.iterdir() if CGROUP_MOUNT.is_dir() else []:
        tree = hierarchy / name.lstrip("/")
        if tree.is_dir():
            trees.setdefault(tree.resolve(), tree)  # cpu and cpuacct may be one hierarchy under two names
    return list(trees.values())


def kill_cgroup(name: str, timeout: float = 20.0) -> None:
    """SIGKILL every process in the cgroup trees of ``name`` (the node's pods and containers), then remove them."""
    trees = cgroup_trees(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = {
            int(pid)
            for tree in trees
            for procs in tree.rglob("cgroup.procs")
            for pid in _read(procs).split()
            if pid.isdigit()
        }
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    for tree in trees:
        for directory in sorted((p for p in tree.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            tree.rmdir()


def kill_shims(socket: str, timeout: float = 10.0) -> None:
    """SIGKILL the containerd-shim-runc-v2 processes of the containerd listening on ``socket``: they run in their
    own process groups, so stopping containerd leaves them."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and socket.encode() in argv:
                pids.append(int(proc.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.1)


def remove_cni_results(network: str) -> None:
    """Sandboxes killed without a CNI DEL leave their cached results at fixed paths: ours are named after our
    network, and containerd's loopback entry of the same sandbox goes with them."""
    for cached in CNI_RESULTS.glob(f"{network}-*"):
        sandbox = cached.name.removeprefix(f"{network}-").rsplit("-", 1)[0]
        (CNI_RESULTS / f"cni-loopback-{sandbox}-lo").unlink(missing_ok=True)
        cached.unlink(missing_ok=True)
    remove_if_empty([CNI_RESULTS, CNI_RESULTS.parent])


def remove_stale_sockets(directory: Path) -> None:
    """Unix sockets in ``directory`` that nothing listens on any more (a killed shim leaves its socket behind;
    another runtime's live shims answer and are left alone), then the directory and its parent if empty."""
    for path in directory.iterdir() if directory.is_dir() else []:
        with contextlib.suppress(OSError):
            if not stat.S_ISSOCK(path.lstat().st_mode):
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(path))
                except ConnectionRefusedError:
                    path.unlink()
    remove_if_empty([directory, directory.parent])


def remove_if_empty(directories: list[Path]) -> None:
    """Directories at fixed paths that another runtime on the machine may use too: removed only when empty."""
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()


def nft_tables() -> list[str]:
    """The machine's nftables tables as "family name" (iptables-nft keeps its tables there too)."""
    result = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return [line.removeprefix("table ").strip() for line in result.stdout.splitlines() if line.startswith("table ")]


def remove_new_empty_tables(tables_before: list[str]) -> None:
    """nftables tables that did not exist before the node and hold no rule now (iptables-nft creates ``ip filter``
    and others on first use, and leaves them behind empty)."""
    for table in sorted(set(nft_tables()) - set(tables_before)):
        family, name = table.split()
        listing = subprocess.run(["nft", "list", "table", family, name], capture_output=True, text=True, check=False)
        structure = ("table", "chain", "type", "}", "policy")
        if not any(line.strip() and not line.strip().startswith(structure) for line in listing.stdout.splitlines()):
            subprocess.run(["nft", "delete", "table", family, name], capture_output=True, check=False)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="undo.py", description=__doc__.splitlines()[0] if __doc__ else None)
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("unmount-under").add_argument("root", type=Path)
    actions.add_parser("kill-cgroup").add_argument("name")
    actions.add_parser("kill-shims").add_argument("socket")
    actions.add_parser("cni-results").add_argument("network")
    actions.add_parser("stale-sockets").add_argument("directory", type=Path)
    actions.add_parser("new-empty-tables").add_argument("tables_before", nargs="*")
    args = parser.parse_args(argv)
    if args.action == "unmount-under":
        unmount_under(args.root)
    elif args.action == "kill-cgroup":
        kill_cgroup(args.name)
    elif args.action == "kill-shims":
        kill_shims(args.socket)
    elif args.action == "cni-results":
        remove_cni_results(args.network)
    elif args.action == "stale-sockets":
        remove_stale_sockets(args.directory)
    else:
        remove_new_empty_tables(args.tables_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
