"""The real node's network: one Linux bridge whose first address is the node's IP, fenced off by policy routing.

Pods get an address on the bridge from the CNI bridge plugin (host-local IPAM). The node's IP is the kubelet's
``--node-ip``, the address it serves on, and the address pods use to reach the API server, Kafka's NODE listener
and the cluster DNS: all of them listen on it. A policy routing rule sends every packet that arrives from the
bridge to a table holding only the bridge's subnet and an ``unreachable`` default, so nothing a pod sends is
routed off the machine; the ``local`` table is consulted first, so the machine's own addresses stay reachable. No
NAT anywhere (the bridge plugin's ``ipMasq`` is off).

Addresses: ``198.18.0.0/24``, from 198.18.0.0/15 (RFC 2544, benchmarking): not a private (RFC 1918) range, so it
cannot collide with the networks of the machine's environment, and disjoint from the bed's service range
10.0.0.0/24 and kwok's pod range 10.244.0.0/16.

Each change is written into the bed's ledger before it is made, with the command that undoes it.
"""

from __future__ import annotations

import ipaddress
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..ledger import Ledger

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def run(*command: str | Path, input: str | None = None) -> str:
    """Run a command; its stdout, or an error that names it and quotes its stderr."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, input=input, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"real node: `{' '.join(map(str, command))}` failed ({result.returncode}): {result.stderr}")
    return result.stdout


def http_ok(url: str) -> bool:
    """A readiness probe: GET ``url`` (a process's health endpoint on loopback) answers 200."""
    with urllib.request.urlopen(url, timeout=3) as response:
        return bool(response.status == 200)


@dataclass(frozen=True)
class NodeNetwork:
    """The node's bridge: ``claim`` creates it and fences it off. One real node per machine: kube-proxy's nftables
    table (``kube-proxy``) and the kernel tunables the kubelet sets are machine-wide, so a second node would
    overwrite the first one's rules and restore the wrong values."""

    bridge: str = "kinfer0"
    cidr: str = "198.18.0.0/24"
    route_table: int = 7341  # also the policy rule's priority
    cni_network: str = "kinfer-node"

    @property
    def node_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.cidr).hosts()))

    @property
    def first_pod_ip(self) -> str:
        # .2 to .9 stay free for addresses the bed might add beside the node's.
        return str(list(ipaddress.ip_network(self.cidr).hosts())[9])

    @classmethod
    def claim(cls, ledger: Ledger) -> NodeNetwork:
        network = cls()
        added = subprocess.run(
            ["ip", "link", "add", network.bridge, "type", "bridge"], capture_output=True, text=True, check=False
        )
        if "exists" in added.stderr:
            raise RuntimeError(
                f"real node: {network.bridge} exists: another bed runs a real node on this machine, and there can be "
                "one (`make testbed-down`, or `python -m tests.testbed down --root ROOT` of that bed)"
            )
        if added.returncode != 0:
            raise RuntimeError(f"real node: `ip link add {network.bridge} type bridge` failed: {added.stderr}")
        ledger.record("interface", name=network.bridge)
        network._configure(ledger)
        return network

    def _configure(self, ledger: Ledger) -> None:
        prefix = ipaddress.ip_network(self.cidr).prefixlen
        table = str(self.route_table)
        run("ip", "addr", "add", f"{self.node_ip}/{prefix}", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        # Pods may reach local addresses (the local table comes first) and each other, nothing else.
        ledger.command(["ip", "route", "flush", "table", table], f"routing table {table} of {self.bridge}")
        run("ip", "route", "add", self.cidr, "dev", self.bridge, "table", table)
        run("ip", "route", "add", "unreachable", "default", "table", table)
        rule = ["iif", self.bridge, "lookup", table, "priority", table]
        ledger.command(["ip", "rule", "del", *rule], f"policy rule for packets from {self.bridge}")
        run("ip", "rule", "add", *rule)
        # The CNI bridge plugin (isGateway) turns IPv4 forwarding on, machine-wide: its value now is restored.
        before = IP_FORWARD.read_text().strip()
        ledger.command(["sysctl", "-q", "-w", f"net.ipv4.ip_forward={before}"], "IPv4 forwarding as it was")

    def cni_config(self, ipam_dir: Path) -> dict[str, Any]:
        """The CNI network list containerd hands every pod sandbox: a veth into the bridge, an address of it."""
        return {
            "cniVersion": "1.0.0",
            "name": self.cni_network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": False,  # nothing leaves the machine; no NAT
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.cidr, "rangeStart": self.first_pod_ip, "gateway": self.node_ip}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(ipam_dir),
                    },
                }
            ],
        }
