"""``make flake-check``: how often the bed's start and stop, and the timing-sensitive tests, fail when repeated.

Not part of CI (it runs for a long while). Two parts, each printed as a table of failures per item:

1. ``--cycles`` times ``python -m tests.testbed up`` then ``down`` on a bed of its own; a cycle fails when either
   command fails or when anything the bed recorded (a process, a listening port, its data directory) is still
   there after ``down``;
2. every test marked ``timing`` (``pytest -m timing``), ``--runs`` times each, one pytest process per run, all
   attached to one shared bed (started here, without a real node) so that the runs measure the tests and not bed
   starts. A run that only skipped is reported as skipped, not passed: the real-node test among them runs only
   with ``KINFER_REAL_NODE=1`` in the environment (after ``make images``), as in ``make test``.

Exit status 0 only when nothing failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.testbed import REPO_ROOT
from tests.testbed.bed import DEFAULT_ROOT
from tests.testbed.ledger import Ledger, same_process
from tests.testbed.ports import ephemeral_low

CYCLE_ROOT = REPO_ROOT / ".testbed-flake-check"


def listening_sockets() -> dict[int, str]:
    """Listening TCP sockets below the kernel's ephemeral range (where the bed's ports come from,
    tests/testbed/ports.py), port -> socket inode. Listeners above it belong to other processes of the machine
    (e.g. a test elsewhere that bound port 0). The inode tells a leftover socket from a new one on the same port:
    another bed started meanwhile may take over a stopped bed's block of ports and listen on them again."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[3] == "0A" and port < ephemeral_low():
                sockets[port] = fields[9]
    return sockets


def without_real_node() -> dict[str, str]:
    """The environment without KINFER_REAL_NODE: there is one real node per machine, and the real-node test among
    the timing tests needs it free (it starts a bed of its own). The other tests must not ask for one either: with
    KINFER_REAL_NODE=1 each run would start a session bed of its own with a real node instead of attaching to the
    shared one."""
    return {key: value for key, value in os.environ.items() if key != "KINFER_REAL_NODE"}


def bed(action: str, root: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tests.testbed", action, "--root", str(root)]
    return subprocess.run(command, cwd=REPO_ROOT, env=without_real_node(), capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip


def one_cycle(root: Path) -> str | None:
    """None when up and down both worked and nothing was left; else what went wrong."""
    before = listening_sockets()
    up = bed("up", root)
    if up.returncode != 0:
        bed("down", root)
        return f"up failed: {(up.stdout + up.stderr).strip().splitlines()[-1:]}"
    entries = Ledger.read(root / "ledger.json")
    state = json.loads((root / "state.json").read_text())
    ours = {port: inode for port, inode in listening_sockets().items() if before.get(port) != inode}
    down = bed("down", root)
    if down.returncode != 0:
        return f"down failed: {down.stderr.strip()[-300:]}"
    left = [e["name"] for e in entries if e["kind"] == "process" and same_process(e)]
    now = listening_sockets()
    still = sorted(port for port, inode in ours.items() if now.get(port) == inode)
    if left or still or Path(state["data_dir"]).exists():
        return f"left behind: processes {left}, listening ports {still}, data dir {Path(state['data_dir']).exists()}"
    return None


def timing_tests(marks: str = "timing") -> list[str]:
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", marks, "-p", "no:cacheprovider"]
    listed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    return [line for line in listed.stdout.splitlines() if "::" in line]


def run_test(node: str, real_node: bool) -> tuple[str, float, str]:
    """One pytest process for one test: ("pass" | "skip" | "FAIL", seconds, why). A skip is not a pass: a test
    that needs the real node (KINFER_REAL_NODE=1) is skipped without it and measured nothing."""
    started = time.monotonic()
    environment = os.environ.copy() if real_node else without_real_node()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", node],
                            cwd=REPO_ROOT, env=environment, capture_output=True, text=True, check=False)  # fmt: skip
    lines = (result.stdout + result.stderr).strip().splitlines()
    summary = lines[-1] if lines else ""
    if result.returncode == 0 and " passed" not in summary and " skipped" in summary:
        reason = next((line for line in lines if line.startswith("SKIPPED")), summary)
        return "skip", time.monotonic() - started, reason[:200]
    reason = next((line for line in reversed(lines) if line.startswith(("E ", "FAILED", "ERROR"))), summary)
    return ("pass" if result.returncode == 0 else "FAIL"), time.monotonic() - started, reason[:200]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make flake-check", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=20, help="bed starts and stops (default 20)")
    parser.add_argument("--runs", type=int, default=10, help="runs of each timing-sensitive test (default 10)")
    parser.add_argument("-k", dest="select", default="", help="only timing tests whose id contains this")
    args = parser.parse_args(argv)
    failed = 0
    if args.cycles:
        problems = []
        for number in range(1, args.cycles + 1):
            started = time.monotonic()
            problem = one_cycle(CYCLE_ROOT)
            print(f"bed cycle {number:>2}/{args.cycles}: {problem or 'ok'} ({time.monotonic() - started:.0f} s)",
                  flush=True)  # fmt: skip
            if problem:
                problems.append(problem)
        print(f"\nbed start/stop: {len(problems)} of {args.cycles} cycles failed", flush=True)
        failed += len(problems)
    tests = [t for t in timing_tests() if args.select in t] if args.runs else []
    on_real_node = set(timing_tests("timing and realnode")) if tests else set()
    if tests:
        up = bed("up", DEFAULT_ROOT)  # shared by every run (the fixtures attach to a running bed)
        if up.returncode != 0:
            print(f"could not start the shared bed: {up.stderr[-500:]}")
            return 1
        table = []
        try:
            for node in tests:
                outcomes = []
                for run in range(1, args.runs + 1):
                    outcome, seconds, reason = run_test(node, node in on_real_node)
                    outcomes.append(outcome)
                    print(f"{node} run {run}/{args.runs}: {outcome}{'' if outcome == 'pass' else ' ' + reason} "
                          f"({seconds:.0f} s)", flush=True)  # fmt: skip
                table.append((node, outcomes.count("FAIL"), outcomes.count("skip"), len(outcomes)))
        finally:
            bed("down", DEFAULT_ROOT)
        print("\nfailures per timing-sensitive test (runs skipped are not passes):")
        for node, failures, skips, runs in table:
            print(f"  {failures:>2}/{runs} failed, {runs - failures - skips:>2} passed, {skips:>2} skipped  {node}")
        failed += sum(failures for _, failures, _, _ in table)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
