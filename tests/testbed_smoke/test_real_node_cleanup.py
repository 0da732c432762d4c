"""A bed with a real node leaves nothing behind: its start killed half way is removed whole by ``testbed down``.

As in test_cleanup.py, the starter (``python -m tests.testbed up --real-node``) is SIGKILLed, here once the
node's containerd and kubelet run (kube-proxy, the last step, is being started), and a pod is then started on
the orphaned node so that it has sandboxes, mounts and veths. ``down`` must find everything from the ledger
alone: processes (shims and containers included), listeners, mounts, the bridge and the pod's interfaces and
network namespaces, the policy rule and its table, nftables tables, cgroups, CNI caches, and the sysctls the
bridge plugin and the kubelet change. There is one real node per machine (tests/testbed/README.md), so this test
is skipped while another bed's node runs: run it in a session of its own, or before the session's bed has one.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.polling import wait_until
from tests.testbed import component_dir
from tests.testbed.ledger import Ledger, same_process
from tests.testbed.node import NodeNetwork
from tests.testbed.node.kubelet import KERNEL_TUNABLES
from tests.testbed.node.real_node import NODE_NAME
from tests.testbed.node.undo import mounts_under
from tests.testbed_smoke.test_cleanup import bed, listening, listening_ports

SYSCTLS = ("net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet", *KERNEL_TUNABLES)


def out(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout


def host_state() -> dict[str, Any]:
    """What a node could change on this machine, machine-wide (not only under the bed's directories)."""
    cgroups = Path("/sys/fs/cgroup")
    return {
        "links": sorted(line.split(":")[1].strip().split("@")[0] for line in out("ip", "-o", "link").splitlines()),
        "rules": out("ip", "rule").splitlines(),
        "netns": out("ip", "netns", "list").splitlines(),
        "nft": out("nft", "list", "ruleset"),
        "sysctls": {key: Path("/proc/sys", *key.split(".")).read_text() for key in SYSCTLS},
        "cgroups": sorted(str(p) for p in cgroups.glob("*/*") if p.is_dir() and "kinfer" in p.name),
        "paths": [str(p) for p in (Path("/var/lib/cni"), Path("/run/containerd"), Path("/var/log/pods")) if p.exists()],
    }


def sleeping_pod(node_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "orphan", "namespace": "default"},
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": "pause", "image": "localhost/kinfer/pause:1", "imagePullPolicy": "Never"}],
        },
    }


@pytest.mark.realnode
@pytest.mark.timing
def test_a_start_with_a_real_node_killed_half_way_is_removed_whole_by_down(tmp_path: Path) -> None:
    if Path("/sys/class/net", NodeNetwork.bridge).exists():
        pytest.skip("another bed runs the real node of this machine (one per machine)")
    before = host_state()
    root = tmp_path / "bed"
    ledger_file = root / "ledger.json"
    started = time.monotonic()
    starter = bed("up", root, "--real-node")
    try:
        wait_until(
            lambda: starter.poll() is not None or "node-kube-proxy" in Ledger(ledger_file).pids(),
            300,
            "the node's kube-proxy to start",
        )
        assert starter.poll() is None, f"the start failed (exit {starter.returncode}); see {root / 'logs'}"
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait(30)
    killed_after = time.monotonic() - started
    entries = json.loads(ledger_file.read_text())
    processes = [e for e in entries if e["kind"] == "process"]
    assert {"node-containerd", "node-kubelet", "kube-apiserver", "kafka"} <= {e["name"] for e in processes}
    data_dir = Path(next(e["path"] for e in entries if e["kind"] == "directory"))
    bridge = next(e["name"] for e in entries if e["kind"] == "interface")
    node_name = NODE_NAME

    # The orphaned node still runs pods: one more sandbox, container, veth and set of mounts for down to remove.
    kubectl = [str(component_dir("kubernetes") / "kubectl"), f"--kubeconfig={data_dir / 'kubernetes/admin.kubeconfig'}"]
    subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(sleeping_pod(node_name)), text=True, check=True)
    wait_until(
        lambda: out(*kubectl, "get", "pod", "orphan", "-o", "jsonpath={.status.phase}") == "Running", 120, "a pod"
    )
    ports = listening_ports({e["pid"] for e in processes if same_process(e)})
    during = host_state()
    assert bridge in during["links"] and any(bridge in rule for rule in during["rules"])
    assert mounts_under(data_dir), "the node mounted its pod's rootfs, volumes and network namespace"

    down_started = time.monotonic()
    down = bed("down", root)
    assert down.wait(180) == 0
    down_seconds = time.monotonic() - down_started
    assert not any(same_process(e) for e in processes), "every recorded process is gone"
    assert ports and not any(listening(port) for port in ports), f"listening: {[p for p in ports if listening(p)]}"
    assert not mounts_under(data_dir) and not data_dir.exists(), "no mount, no file of the bed's data directory"
    leftovers = [cmd for cmd in out("ps", "-eo", "args").splitlines() if str(data_dir) in cmd]
    assert not leftovers, f"processes of the bed still run (shims, containers): {leftovers}"
    after = host_state()
    for key in before:
        assert after[key] == before[key], f"{key} differs after down:\nbefore {before[key]}\nafter  {after[key]}"
    assert not ledger_file.exists() and not (root / "state.json").exists()
    print(
        f"killed the starter {killed_after:.1f} s into the start ({len(processes)} processes, {len(ports)} ports, "
        f"a pod on {node_name}); down removed everything in {down_seconds:.1f} s"
    )
