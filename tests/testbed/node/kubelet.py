"""The real node's kubelet: its credentials from the bed's CA, its configuration, and what it changes on the host.

The kubelet authenticates as ``system:node:<name>`` with a client certificate of the bed's CA and serves TLS on
the node's IP with a serving certificate of the same CA (x509 + webhook authentication, webhook authorization),
so the API server's ``kubectl logs``/``exec`` calls work. Configuration for this machine: cgroup v1 allowed, the
cgroupfs driver under a cgroup root of its own (its pods stay apart from any other kubelet's), no swap check, its
own root and pod-log directories, no host resolver for pods, no iptables utility chains.

Machine-wide changes it makes anyway are undone from the ledger: the kernel tunables it sets at start
(``vm.overcommit_memory``, ``kernel.panic``... get their values of before back), and the cgroup root with every
process still in it (the node's containers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from ..kubernetes import write_kubeconfig
from ..ledger import Ledger
from ..pki import CertificateAuthority, CertificateFiles
from ..process import ManagedProcess, free_port
from . import undo
from .network import NodeNetwork, http_ok

CLUSTER_DOMAIN = "cluster.local"
# Keeps the bed's other workloads off the real node (they do not tolerate it); its own pods select the label.
NODE_LABEL = "kinfer.io/real-node"
# The kubelet sets these at start (protectKernelDefaults: false); the values of before are restored at down.
KERNEL_TUNABLES = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)


@dataclass(frozen=True)
class NodeCredentials:
    """Kubeconfigs of the node's clients (kubelet, kube-proxy, CoreDNS) and the kubelet's serving certificate."""

    ca_file: Path
    kubelet: Path
    kube_proxy: Path
    coredns: Path
    serving: CertificateFiles


def write_credentials(pki_dir: Path, into: Path, server: str, name: str, ip: str) -> NodeCredentials:
    """Issue the node's certificates with the bed's CA (``pki_dir``) into ``into``. ``server`` is the API server as
    the node reaches it (on the node's IP)."""
    ca = CertificateAuthority.load(pki_dir, "ca", issue_into=into)

    def kubeconfig(user: str, organizations: tuple[str, ...] = ()) -> Path:
        files = ca.issue(user.replace(":", "-"), user, organizations=organizations, client=True)
        path = into / f"{user.replace(':', '-')}.kubeconfig"
        write_kubeconfig(path, server, ca.cert_path, files.cert, files.key, user=user)
        return path

    return NodeCredentials(
        ca_file=ca.cert_path,
        kubelet=kubeconfig(f"system:node:{name}", ("system:nodes",)),
        kube_proxy=kubeconfig("system:kube-proxy"),  # bound to system:node-proxier by the default RBAC
        coredns=kubeconfig("kinfer:coredns"),  # a role of its own (services.py)
        serving=ca.issue("kubelet-serving", name, dns_names=(name,), ip_addresses=(ip,), server=True),
    )


class Kubelet:
    """The kubelet of node ``name``: ``start`` prepares the host (recording every change), starts and waits for it."""

    def __init__(
        self, name: str, root: Path, binary: Path, network: NodeNetwork, credentials: NodeCredentials, socket: Path
    ) -> None:
        self.name = name
        self.root = root
        self.binary = binary
        self.network = network
        self.credentials = credentials
        self.socket = socket
        self.cgroup_root = f"/{name}"
        self.healthz_port = free_port()
        self.port = free_port()

    def config(self, cluster_dns: bool) -> dict[str, Any]:
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # this machine has cgroup v1 (hybrid)
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "failSwapOn": False,
            "enforceNodeAllocatable": [],
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "podLogsDir": str(self.root / "pod-logs"),
            "address": self.network.node_ip,
            "port": self.port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            "tlsCertFile": str(self.credentials.serving.cert),
            "tlsPrivateKeyFile": str(self.credentials.serving.key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.credentials.ca_file)},
            },
            "authorization": {"mode": "Webhook"},
            "registerWithTaints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}],
            "clusterDomain": CLUSTER_DOMAIN,
            "clusterDNS": [self.network.node_ip] if cluster_dns else [],
            "resolvConf": "",  # the machine's resolver is off-limits to pods
            # KUBE-FIREWALL and canary chains in the machine's iptables: nothing here needs them.
            "makeIPTablesUtilChains": False,
            "staticPodPath": "",
            "oomScoreAdj": 0,  # lowering it needs CAP_SYS_RESOURCE
            "imageGCHighThresholdPercent": 100,  # the imported images cannot be pulled again
            "imageGCLowThresholdPercent": 99,
            "mergeDefaultEvictionSettings": False,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "serializeImagePulls": False,
            "shutdownGracePeriod": "0s",
        }
        return config

    def start(self, ledger: Ledger, log_dir: Path, *, cluster_dns: bool) -> ManagedProcess:
        self._create_cgroup_root(ledger)
        tunables = [f"{key}={_sysctl(key)}" for key in KERNEL_TUNABLES]
        ledger.command(["sysctl", "-q", "-w", *tunables], "kernel tunables the kubelet sets")
        (self.root / "kubelet").mkdir(parents=True, exist_ok=True)
        (self.root / "pod-logs").mkdir(parents=True, exist_ok=True)
        path = self.root / "kubelet-config.yaml"
        path.write_text(yaml.safe_dump(self.config(cluster_dns), sort_keys=False))
        process = ManagedProcess(
            name="node-kubelet",
            command=[
                str(self.binary),
                f"--config={path}",
                f"--kubeconfig={self.credentials.kubelet}",
                f"--root-dir={self.root / 'kubelet'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.network.node_ip}",
                f"--node-labels={NODE_LABEL}=true",
                "--v=1",
            ],
            log_path=log_dir / "node-kubelet.log",
            ready=lambda: http_ok(f"http://127.0.0.1:{self.healthz_port}/healthz"),
            on_spawn=lambda pid: ledger.process("node-kubelet", pid),
        )
        process.start()
        return process

    def _create_cgroup_root(self, ledger: Ledger) -> None:
        """The kubelet's cgroupRoot must exist in every v1 hierarchy. Its removal kills what is left in it: the
        containers, whose shims outlive containerd."""
        ledger.command(undo.command("kill-cgroup", self.cgroup_root), f"cgroup {self.cgroup_root} and its processes")
        for hierarchy in sorted(undo.CGROUP_MOUNT.iterdir()):
            if not (hierarchy / "cgroup.procs").exists() or hierarchy.name == "unified":
                continue
            path = hierarchy / self.cgroup_root.lstrip("/")
            path.mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":  # an empty cpuset cannot take tasks: inherit the parent's
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((hierarchy / knob).read_text())

    def wait_ready(self, api: client.ApiClient, timeout: float = 120) -> None:
        core = client.CoreV1Api(api)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                conditions = core.read_node(self.name).status.conditions or []
            except client.ApiException:
                conditions = []
            if any(c.type == "Ready" and c.status == "True" for c in conditions):
                return
            time.sleep(0.5)
        raise RuntimeError(f"real node: {self.name} not Ready after {timeout:.0f} s (see node-kubelet.log)")


def _sysctl(key: str) -> str:
    return Path("/proc/sys", *key.split(".")).read_text().strip().replace("\t", " ")
