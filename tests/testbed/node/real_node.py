"""A real Kubernetes node beside the bed's control plane: this package's pieces, started in order.

kwok's fake nodes run no container; this node does: containerd + runc + the CNI bridge + the kubelet, with
CoreDNS and kube-proxy for Services. The order matters: the bridge first (the bed makes it before Kafka and the
API server, which listen on its address), then credentials, containerd and the images, CoreDNS (the kubelet's
clusterDNS), the kubelet, the Node Ready, and kube-proxy last (it waits for its Node). Everything is written into
the bed's ledger as it is made, so ``testbed down`` removes the node with the rest of the bed, even after a start
that was killed half way.

Placement: the node carries the label and the NoSchedule taint ``kinfer.io/real-node=true``. Workloads of the
other tests do not tolerate it, so they stay on kwok's nodes exactly as before; a pod meant for the real node
selects the label and tolerates the taint (:meth:`NodeAccess.placement`). kwok manages only nodes annotated
``kwok.x-k8s.io/node=fake``, so it never touches this node or its pods.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import config

from kinfer_runtime import __version__

from ..ledger import Ledger
from ..process import ManagedProcess
from . import undo
from .containerd import Containerd
from .kubelet import NODE_LABEL, Kubelet, write_credentials
from .network import NodeNetwork
from .services import allow_coredns, start_coredns, start_kube_proxy

NODE_NAME = "kinfer-node-0"
IMAGE_NAMES = ("pause", "runtime", "operator", "tfserving-standin")
REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class NodeBinaries:
    """Where tests/testbed/build.sh put the node's programs (``build.sh node``)."""

    kubernetes_node: Path  # kubelet, kube-proxy
    containerd: Path  # containerd, containerd-shim-runc-v2, ctr
    runc: Path
    coredns: Path


@dataclass(frozen=True)
class NodeImages:
    """kinfer's images for this tree (images/build.sh): name -> reference, and name -> OCI archive."""

    refs: dict[str, str]
    archives: dict[str, Path]

    @classmethod
    def built(cls, names: tuple[str, ...] = IMAGE_NAMES) -> NodeImages:
        """The images built for the sources as they are now, or an error that says to run ``make images``
        (images/build.sh hashes the inputs in a second or two; it builds nothing here)."""
        result = subprocess.run(
            ["bash", str(REPO_ROOT / "images" / "build.sh"), "check", *names],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"real node: kinfer's images are not ready: {result.stderr.strip()[-600:]}")
        lines = [line.split() for line in result.stdout.splitlines() if len(line.split()) == 3]
        return cls({n: ref for n, ref, _ in lines}, {n: Path(archive) for n, _, archive in lines})

    def tags(self) -> dict[str, str]:
        """The chart's default image names, pointing at the local images (nothing is pulled). Not the operator's
        built-in default runtime image: a pod that runs it instead of the chart's runtimeImage must fail to start."""
        runtime, operator = self.refs["runtime"], self.refs["operator"]
        return {
            f"docker.io/kinfer/runtime:{__version__}": runtime,  # the chart's runtimeImage
            f"docker.io/kinfer/operator:{__version__}": operator,  # the chart's image
        }


@dataclass(frozen=True)
class NodeAccess:
    """What tests use of a running real node (the bed's state.json holds it)."""

    name: str
    ip: str
    kafka_bootstrap: str  # Kafka's NODE listener: the bootstrap servers of pods
    images: dict[str, str]  # runtime, operator, pause -> image reference in the node's containerd
    pod_logs: str = ""  # the kubelet's podLogsDir (/var/log/pods on a production node): what log shippers tail

    def placement(self) -> dict[str, Any]:
        """Pod spec fields that put a pod on the real node (and on no kwok node)."""
        return {
            "nodeSelector": {NODE_LABEL: "true"},
            "tolerations": [{"key": NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
        }


@dataclass
class RealNode:
    root: Path  # everything the node writes: configuration, containerd and kubelet data, pod logs
    log_dir: Path  # the bed's logs: node-<process>.log
    ledger: Ledger
    network: NodeNetwork
    binaries: NodeBinaries
    images: NodeImages
    server: str  # the API server on the node's IP
    pki_dir: Path  # the bed's CA
    admin_kubeconfig: Path
    name: str = NODE_NAME
    processes: list[ManagedProcess] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def start(self) -> RealNode:
        """Start every piece (the caller undoes the ledger when this raises)."""
        started = time.monotonic()
        self.ledger.command(undo.command("unmount-under", self.root), f"mounts under {self.root}")
        self.root.mkdir(parents=True, exist_ok=True)
        api = config.new_client_from_config(str(self.admin_kubeconfig))
        credentials = self._step(
            "credentials",
            lambda: write_credentials(self.pki_dir, self.root / "pki", self.server, self.name, self.network.node_ip),
        )
        containerd = Containerd(
            self.root / "containerd",
            self.binaries.containerd,
            self.binaries.runc,
            self.network,
            self.images.refs["pause"],
        )
        self._start("containerd", lambda: containerd.start(self.ledger, self.log_dir))
        self._step("images", lambda: containerd.import_images(list(self.images.archives.values()), self.images.tags()))
        allow_coredns(api)
        self._start(
            "coredns",
            lambda: start_coredns(
                self.binaries.coredns,
                self.root / "coredns",
                credentials.coredns,
                self.network,
                self.ledger,
                self.log_dir,
            ),
        )
        kubelet = Kubelet(
            self.name,
            self.root,
            self.binaries.kubernetes_node / "kubelet",
            self.network,
            credentials,
            containerd.socket,
        )
        self._start("kubelet", lambda: kubelet.start(self.ledger, self.log_dir, cluster_dns=True))
        self._step("node-ready", lambda: kubelet.wait_ready(api))
        self._start(
            "kube-proxy",
            lambda: start_kube_proxy(
                self.binaries.kubernetes_node / "kube-proxy",
                self.root / "kube-proxy",
                self.name,
                credentials.kube_proxy,
                self.network,
                self.ledger,
                self.log_dir,
            ),
        )
        self.timings["total"] = round(time.monotonic() - started, 1)
        return self

    def stop(self) -> None:
        """Stop the node's processes, the kubelet first (it would restart containers); the ledger undoes the rest."""
        for process in reversed(self.processes):
            process.stop(timeout=10)
        self.processes.clear()

    def access(self, kafka_bootstrap: str) -> NodeAccess:
        return NodeAccess(
            self.name, self.network.node_ip, kafka_bootstrap, dict(self.images.refs), str(self.root / "pod-logs")
        )

    def _step(self, name: str, action: Callable[[], Any]) -> Any:
        started = time.monotonic()
        result = action()
        self.timings[name] = round(time.monotonic() - started, 2)
        return result

    def _start(self, name: str, action: Callable[[], ManagedProcess]) -> None:
        self.processes.append(self._step(name, action))
