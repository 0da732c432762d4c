"""The whole test bed: Kafka plus the Kubernetes control plane, started together and described in a state file.

``make testbed-up`` and the pytest session fixtures both use :class:`TestBed`; with ``real_node=True`` it also runs a
real node (containerd + kubelet, tests/testbed/node/) whose pods reach Kafka and the API server on the node's bridge
address (README.md beside this file). A bed records everything it creates in ``<root>/ledger.json`` as it creates
it (tests/testbed/ledger.py), so that ``make testbed-down`` removes all of it even after a start that failed or was
interrupted; a finished start also writes ``<root>/state.json`` (endpoints) and ``<root>/env.sh``. A pytest
session that finds a live bed at ``.testbed`` attaches to it instead of starting another, so developers iterate
against one long-running bed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tests.polling import wait_until

from .kafka import KafkaBroker
from .kubernetes import ControlPlane, ControlPlanePaths
from .ledger import Ledger, tear_down
from .node import NodeAccess, NodeBinaries, NodeImages, NodeNetwork, RealNode
from .process import free_port

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DEFAULT_ROOT = REPO_ROOT / ".testbed"


def read_versions() -> dict[str, str]:
    versions = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def cache_dir() -> Path:
    return Path(os.environ.get("KINFER_CACHE", Path.home() / ".cache" / "kinfer"))


OTELCOL_DIR = HERE / "go" / "otelcol"
OTELCOL_SOURCES = ("main.go", "go.sum")  # what build.sh hashes into the collector's cache key


def component_dir(component: str) -> Path:
    """The cache directory of a built component, or an error that says how to build it (build.sh's names)."""
    versions = read_versions()
    version = {
        "kafka": versions["KAFKA_VERSION"],
        "etcd": versions["ETCD_VERSION"],
        "kubernetes": versions["KUBERNETES_VERSION"],
        "kwok": versions["KWOK_VERSION"],
        "helm": versions["HELM_VERSION"],
        "kubernetes-node": versions["KUBERNETES_VERSION"],
        "containerd": versions["CONTAINERD_VERSION"],
        "runc": versions["RUNC_VERSION"],
        "coredns": f"{versions['COREDNS_VERSION']}-{_content_hash(HERE / 'go' / 'coredns' / 'main.go')}",
        "pause": _content_hash(HERE / "node" / "pause.c"),
        "otelcol": f"{versions['OTELCOL_VERSION']}-{_content_hash(*(OTELCOL_DIR / f for f in OTELCOL_SOURCES))}",
    }[component]
    path = cache_dir() / f"{component}-{version}"
    if not (path / ".done").exists():
        raise RuntimeError(
            f"test bed: {component} is not built ({path}); run `bash tests/testbed/build.sh {component}`"
        )
    return path


def _content_hash(*paths: Path) -> str:
    """build.sh's key of a component built from these files (the sha256 of their contents in a row, 12 digits)."""
    return hashlib.sha256(b"".join(path.read_bytes() for path in paths)).hexdigest()[:12]


class TestBed:
    """Kafka and (optionally) Kubernetes on loopback, or with a real node on its bridge address; data in a throwaway
    directory, logs in ``<root>/logs``."""

    __test__ = False  # not a pytest test class

    def __init__(self, root: Path = DEFAULT_ROOT, *, kubernetes: bool = True, real_node: bool = False):
        self.root = root
        self.with_kubernetes = kubernetes or real_node
        self.with_real_node = real_node
        self.network: NodeNetwork | None = None
        self.node: RealNode | None = None
        self.log_dir = root / "logs"
        self.bin_dir = root / "bin"
        self.data_dir: Path | None = None
        self.kafka: KafkaBroker | None = None
        self.control_plane: ControlPlane | None = None
        self.state: dict[str, Any] = {}
        self.owner = False
        self.ledger = Ledger(root / "ledger.json")

    # --- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> TestBed:
        """Start every component; on any failure (or an interrupt) remove what was started, then raise."""
        started = time.monotonic()
        # A real node needs built binaries and images: say so before anything starts.
        node_parts = (self._node_binaries(), NodeImages.built()) if self.with_real_node else None
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self.data_dir = Path(tempfile.mkdtemp(prefix="kinfer-testbed-"))
        self.ledger.record("directory", path=str(self.data_dir))
        self.owner = True
        try:
            self._start_components()
            if node_parts:
                self._start_node(*node_parts)
        except BaseException:
            self.stop()
            raise
        self._write_state(time.monotonic() - started)
        return self

    def _start_components(self) -> None:
        assert self.data_dir is not None
        self._link_binaries()
        if self.with_real_node:  # the node's bridge first: Kafka and the API server listen on its address
            self.network = NodeNetwork.claim(self.ledger)
        self.kafka = KafkaBroker(
            component_dir("kafka") / "libs",
            self.data_dir / "kafka",
            self.log_dir,
            port=free_port(),
            controller_port=free_port(),
            address_listeners={"NODE": (self.network.node_ip, free_port())} if self.network else None,
            on_spawn=lambda pid: self.ledger.process("kafka", pid),
        )
        # Kafka's JVM and the control plane start in parallel: together they are what a warm start waits on.
        kafka_error: list[BaseException] = []

        def start_kafka() -> None:
            try:
                assert self.kafka is not None
                self.kafka.start()
            except BaseException as error:  # re-raised in the main thread
                kafka_error.append(error)

        kafka_thread = threading.Thread(target=start_kafka, name="kafka-start")
        kafka_thread.start()
        try:
            if self.with_kubernetes:
                self.control_plane = ControlPlane(
                    ControlPlanePaths(
                        bin_dir=component_dir("kubernetes"),
                        kwok_dir=component_dir("kwok"),
                        etcd_dir=component_dir("etcd"),
                        data_dir=self.data_dir / "kubernetes",
                        log_dir=self.log_dir,
                    ),
                    self.ledger,
                    bind_address=self.network.node_ip if self.network else "127.0.0.1",
                )
                self.control_plane.paths.data_dir.mkdir(parents=True)
                self.control_plane.start()
        finally:
            kafka_thread.join()
        if kafka_error:
            raise kafka_error[0]

    def _node_binaries(self) -> NodeBinaries:
        return NodeBinaries(
            kubernetes_node=component_dir("kubernetes-node"),
            containerd=component_dir("containerd"),
            runc=component_dir("runc") / "runc",
            coredns=component_dir("coredns") / "coredns",
        )

    def _start_node(self, binaries: NodeBinaries, images: NodeImages) -> None:
        assert self.network and self.control_plane and self.data_dir
        self.node = RealNode(
            root=self.data_dir / "node",
            log_dir=self.log_dir,
            ledger=self.ledger,
            network=self.network,
            binaries=binaries,
            images=images,
            server=self.control_plane.server,
            pki_dir=self.control_plane.pki_dir,
            admin_kubeconfig=self.control_plane.kubeconfig,
        ).start()

    def stop(self) -> None:
        """Stop the components in order (the node, then the control plane), then undo what the ledger still holds."""
        if self.node:
            self.node.stop()
        if self.control_plane:
            self.control_plane.stop()
        if self.kafka:
            self.kafka.stop()
        TestBed.down(self.root)

    # --- attaching to a running bed --------------------------------------------------------------------------

    @classmethod
    def attach(cls, root: Path = DEFAULT_ROOT) -> TestBed | None:
        """The bed described by ``<root>/state.json`` if all of its processes still run, else None."""
        try:
            state = json.loads((root / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        bed = cls(root, kubernetes=bool(state.get("kubeconfig")))
        recorded = [e for e in bed.ledger.entries if e["kind"] == "process"]
        if not recorded or len(bed.ledger.pids()) != len(recorded):
            return None
        bed.state = state
        bed.data_dir = Path(state["data_dir"])
        return bed

    @staticmethod
    def down(root: Path = DEFAULT_ROOT) -> bool:
        """Remove everything the bed at ``root`` recorded (from any process, after a finished, failed or
        interrupted start); True when there was something to remove."""
        removed = tear_down(root / "ledger.json")
        for name in ("state.json", "env.sh"):
            (root / name).unlink(missing_ok=True)
        return removed

    # --- what tests use --------------------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return str(self.state["bootstrap_servers"])

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state["kubeconfig"])

    @property
    def real_node(self) -> NodeAccess | None:
        """The real node's name, IP, Kafka address for pods and image references; None without a real node."""
        node = self.state.get("real_node")
        return NodeAccess(**node) if node else None

    @property
    def kafka_libs(self) -> Path:
        return Path(self.state["kafka_libs"])

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap_servers
        if self.state.get("kubeconfig"):
            env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["NO_PROXY"] = self._no_proxy()
        return env

    def _no_proxy(self) -> str:
        node = self.state.get("real_node")
        return "127.0.0.1,localhost" + (f",{node['ip']}" if node else "")

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self._run("kubectl", args, check, input)

    def helm(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self._run("helm", args, check, input)

    def wait_established(self, crd: str, timeout: float = 60.0) -> None:
        """Wait until a CRD is Established. Not ``kubectl wait --for=condition=Established``: it fails at once when
        it reads the CRD before the API server wrote any condition (kubernetes/kubernetes#66439; it failed a CI
        run so)."""
        jsonpath = '{.status.conditions[?(@.type=="Established")].status}'

        def established() -> bool:
            return self.kubectl("get", f"crd/{crd}", "-o", f"jsonpath={jsonpath}", check=False).stdout.strip() == "True"

        wait_until(established, timeout, f"CRD {crd} to be Established", interval=0.2)

    def _run(
        self, tool: str, args: tuple[str, ...], check: bool, input: str | None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin_dir / tool), *args], env=self.env, input=input, capture_output=True, text=True, timeout=300
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    # --- internals -------------------------------------------------------------------------------------------

    def _link_binaries(self) -> None:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        links = {}
        if self.with_kubernetes:  # a Kafka-only bed (make bench) has nothing to install or inspect
            links["helm"] = component_dir("helm") / "helm"
            links["kubectl"] = component_dir("kubernetes") / "kubectl"
            links["kwok"] = component_dir("kwok") / "kwok"
        for name, target in links.items():
            link = self.bin_dir / name
            link.unlink(missing_ok=True)
            link.symlink_to(target)

    def _write_state(self, startup_seconds: float) -> None:
        assert self.kafka is not None and self.data_dir is not None
        self.state = {
            "pids": self.ledger.pids(),
            "bootstrap_servers": self.kafka.bootstrap_servers,
            "kafka_libs": str(self.kafka.libs_dir),
            "kubeconfig": str(self.control_plane.kubeconfig) if self.control_plane else "",
            "api_server": self.control_plane.server if self.control_plane else "",
            "data_dir": str(self.data_dir),
            "startup_seconds": round(startup_seconds, 1),
            "real_node": asdict(self.node.access(self.kafka.listener_address("NODE"))) if self.node else None,
        }
        if self.node:
            self.state["node_timings"] = self.node.timings
        (self.root / "state.json").write_text(json.dumps(self.state, indent=2))
        lines = [
            "# Written by the kinfer test bed: `source .testbed/env.sh`",
            f"export KAFKA_BOOTSTRAP_SERVERS={self.bootstrap_servers}",
            f'export PATH="{self.bin_dir}:$PATH"',
            f"export NO_PROXY={self._no_proxy()}",
        ]
        if self.control_plane:
            lines.append(f"export KUBECONFIG={self.control_plane.kubeconfig}")
        if node := self.real_node:
            lines += [
                f"export KINFER_NODE_NAME={node.name} KINFER_NODE_IP={node.ip}",
                f"export KINFER_NODE_BOOTSTRAP_SERVERS={node.kafka_bootstrap}",
                *(
                    f"export KINFER_{name.upper().replace('-', '_')}_IMAGE={ref}"
                    for name, ref in sorted(node.images.items())
                ),
            ]
        (self.root / "env.sh").write_text("\n".join(lines) + "\n")
