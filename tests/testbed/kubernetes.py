"""A local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.

All binaries are built from the Go modules by ``build.sh``. Client-certificate auth and RBAC are on, the
aggregation layer is configured (front-proxy CA and client certificate) so that an extension API server such as
the operator's external metrics API can be registered, and the controller-manager runs with a short HPA sync
period. kwok simulates kubelets on fake nodes, so Deployments get Running, Ready pods; no container ever runs.
With a real node (tests/testbed/node/) the API server listens on the node's bridge address instead of loopback,
so that pods reach it, and talks to that node's kubelet.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .ledger import Ledger
from .pki import CertificateAuthority, write_service_account_keys
from .process import ManagedProcess, StartError, free_port

# The controller-manager's HPA sync period: short, so autoscaling tests see decisions within seconds.
HPA_SYNC_PERIOD = "3s"
FAKE_NODE_COUNT = 3


def _https_ok(url: str, ca_file: Path, cert: tuple[Path, Path] | None = None) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    with urllib.request.urlopen(url, context=context, timeout=3) as response:
        return bool(response.status == 200)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as response:
        return bool(response.status == 200)


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str = "admin") -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kinfer-testbed", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [
            {"name": "kinfer-testbed", "context": {"cluster": "kinfer-testbed", "user": user, "namespace": "default"}}
        ],
        "current-context": "kinfer-testbed",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def fake_node(name: str) -> dict[str, object]:
    """A Node that kwok manages (by annotation); no taint, so every workload can be scheduled on it."""
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": "2"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "topology.kubernetes.io/zone": f"zone-{name[-1]}",
            },
        },
        "status": {"allocatable": capacity, "capacity": capacity},
    }


@dataclass
class ControlPlanePaths:
    bin_dir: Path
    kwok_dir: Path
    etcd_dir: Path
    data_dir: Path
    log_dir: Path


class ControlPlane:
    """Starts the control plane in order, each step gated on readiness; ``stop`` reverses it. Every process is
    written into ``ledger`` as soon as it exists.

    ``bind_address``: where the API server listens and what it advertises. Loopback by default; a real node's
    bridge address when pods must reach it: then the ``kubernetes`` Service gets an endpoint (the API server's
    own reconciler refuses a loopback address) and the API server a client certificate for kubelets (logs, exec)."""

    def __init__(self, paths: ControlPlanePaths, ledger: Ledger | None = None, bind_address: str = "127.0.0.1"):
        self.paths = paths
        self.ledger = ledger
        self.bind_address = bind_address
        self.real_node = not bind_address.startswith("127.")
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.api_port = free_port()
        self.scheduler_port = free_port()
        self.kwok_port = free_port()
        self.pki_dir = paths.data_dir / "pki"
        self.kubeconfig = paths.data_dir / "admin.kubeconfig"
        self.processes: list[ManagedProcess] = []

    @property
    def server(self) -> str:
        return f"https://{self.bind_address}:{self.api_port}"

    def _process(
        self,
        name: str,
        command: Callable[[], list[str]],
        ready: Callable[[], bool],
        timeout: float = 120,
        new_ports: Callable[[], None] | None = None,
    ) -> ManagedProcess:
        """Start one component. If it loses a port to another process between the port's allocation and its own
        bind, ``new_ports`` picks others and this component (not the whole bed) is started again, once."""
        ledger = self.ledger
        for attempt in (1, 2):
            process = ManagedProcess(
                name=name,
                command=command(),
                log_path=self.paths.log_dir / f"{name}.log",
                ready=ready,
                start_timeout=timeout,
                on_spawn=(lambda pid: ledger.process(name, pid)) if ledger else None,
            )
            self.processes.append(process)
            try:
                process.start()
                return process
            except StartError:
                if attempt == 2 or new_ports is None or not process.lost_a_port_race():
                    raise
                process.stop(timeout=10)
                self.processes.remove(process)
                new_ports()
        raise AssertionError("unreachable")

    def write_pki(self) -> None:
        ca = CertificateAuthority(self.pki_dir, "ca")
        self.ca_file = ca.cert_path
        self.apiserver_cert = ca.issue(
            "apiserver",
            "kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ip_addresses=tuple(dict.fromkeys(("127.0.0.1", "10.0.0.1", self.bind_address))),
            server=True,
        )
        # The API server's client certificate towards kubelets (logs, exec, port-forward on a real node).
        self.kubelet_client_cert = ca.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", organizations=("system:masters",), client=True
        )
        self.admin_cert = ca.issue("admin", "kubernetes-admin", organizations=("system:masters",), client=True)
        front_proxy = CertificateAuthority(self.pki_dir, "front-proxy-ca")
        self.front_proxy_ca = front_proxy.cert_path
        self.front_proxy_client = front_proxy.issue("front-proxy-client", "front-proxy-client", client=True)
        self.service_account = write_service_account_keys(self.pki_dir)
        write_kubeconfig(self.kubeconfig, self.server, self.ca_file, self.admin_cert.cert, self.admin_cert.key)

    def start(self) -> None:
        self.write_pki()
        bins = self.paths.bin_dir
        self._process(
            "etcd",
            lambda: [
                str(self.paths.etcd_dir / "etcd"),
                "--name=kinfer-testbed",
                f"--data-dir={self.paths.data_dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
                f"--initial-cluster=kinfer-testbed=http://127.0.0.1:{self.etcd_peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            lambda: _http_ok(f"http://127.0.0.1:{self.etcd_port}/health"),
            new_ports=self._new_etcd_ports,
        )
        self._process(
            "kube-apiserver",
            lambda: [
                str(bins / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--bind-address={self.bind_address}",
                f"--advertise-address={self.bind_address}",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={self.apiserver_cert.cert}",
                f"--tls-private-key-file={self.apiserver_cert.key}",
                f"--client-ca-file={self.ca_file}",
                "--authorization-mode=Node,RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.service_account.cert}",
                f"--service-account-signing-key-file={self.service_account.key}",
                "--allow-privileged=true",
                *self._node_flags(),
                # The aggregation layer, for APIService-registered servers (the external metrics API).
                f"--requestheader-client-ca-file={self.front_proxy_ca}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-username-headers=X-Remote-User",
                f"--proxy-client-cert-file={self.front_proxy_client.cert}",
                f"--proxy-client-key-file={self.front_proxy_client.key}",
                f"--audit-log-path={self.paths.log_dir / 'audit.log'}",
                f"--audit-policy-file={self._audit_policy()}",
                "--audit-log-maxsize=200",
                "--v=1",
            ],
            lambda: _https_ok(f"{self.server}/readyz", self.ca_file),
            timeout=180,
            new_ports=self._new_api_port,
        )
        kubeconfig = str(self.kubeconfig)
        self._process(
            "kube-controller-manager",
            lambda: [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--leader-elect=false",
                f"--service-account-private-key-file={self.service_account.key}",
                f"--root-ca-file={self.ca_file}",
                f"--horizontal-pod-autoscaler-sync-period={HPA_SYNC_PERIOD}",
                "--v=1",
            ],
            self._default_service_account_exists,
        )
        if self.real_node:
            self.publish_api_endpoint()
        self._process(
            "kube-scheduler",
            lambda: [
                str(bins / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.scheduler_port}",
                "--leader-elect=false",
                "--v=1",
            ],
            self._scheduler_healthy,
            new_ports=lambda: setattr(self, "scheduler_port", free_port()),
        )
        self._process(
            "kwok",
            lambda: [
                str(self.paths.kwok_dir / "kwok"),
                f"--kubeconfig={kubeconfig}",
                f"--config={self.paths.kwok_dir / 'stages.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--manage-nodes-with-label-selector=",
                "--manage-single-node=",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.0.0.2",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{self.kwok_port}",
            ],
            lambda: _http_ok(f"http://127.0.0.1:{self.kwok_port}/healthz"),
            new_ports=lambda: setattr(self, "kwok_port", free_port()),
        )
        self.create_fake_nodes()

    def _node_flags(self) -> list[str]:
        if not self.real_node:
            return ["--endpoint-reconciler-type=none"]
        return [
            # publish_api_endpoint instead of the lease reconciler, which at shutdown waits 20 s to remove its
            # endpoint from an etcd that the bed's down stops at the same time.
            "--endpoint-reconciler-type=none",
            f"--kubelet-client-certificate={self.kubelet_client_cert.cert}",
            f"--kubelet-client-key={self.kubelet_client_cert.key}",
            # The node's name resolves nowhere (no DNS for node names here): dial its InternalIP.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
        ]

    def publish_api_endpoint(self) -> None:
        """The ``kubernetes`` Service's EndpointSlice (the API server on the node's address), written once: pods
        reach the API server at 10.0.0.1:443 through kube-proxy, and CoreDNS resolves kubernetes.default."""
        from kubernetes import client, config

        api = client.DiscoveryV1Api(config.new_client_from_config(str(self.kubeconfig)))
        api.create_namespaced_endpoint_slice(
            "default",
            {
                "metadata": {
                    "name": "kubernetes",
                    "labels": {
                        "kubernetes.io/service-name": "kubernetes",
                        "endpointslice.kubernetes.io/managed-by": "kinfer-testbed",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [self.bind_address], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": self.api_port, "protocol": "TCP"}],
            },
        )

    def _new_etcd_ports(self) -> None:
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()

    def _new_api_port(self) -> None:
        self.api_port = free_port()
        write_kubeconfig(self.kubeconfig, self.server, self.ca_file, self.admin_cert.cert, self.admin_cert.key)

    def _audit_policy(self) -> Path:
        # Writes only (no reads, no events), so tests can count what an idle operator writes to the API server.
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived", "ResponseStarted"],
            "rules": [
                {"level": "None", "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
                {"level": "None", "resources": [{"group": "", "resources": ["events"]}]},
                {"level": "None", "resources": [{"group": "events.k8s.io", "resources": ["events"]}]},
                {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
            ],
        }
        path = self.pki_dir.parent / "audit-policy.yaml"
        path.write_text(yaml.safe_dump(policy))
        return path

    def _default_service_account_exists(self) -> bool:
        # The controller-manager is working once its service-account controller created `default` in default.
        return _https_ok(
            f"{self.server}/api/v1/namespaces/default/serviceaccounts/default",
            self.ca_file,
            (self.admin_cert.cert, self.admin_cert.key),
        )

    def _scheduler_healthy(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the scheduler serves a self-signed certificate on loopback
        url = f"https://127.0.0.1:{self.scheduler_port}/healthz"
        with urllib.request.urlopen(url, context=context, timeout=3) as response:
            return bool(response.status == 200)

    def create_fake_nodes(self) -> None:
        import time

        from kubernetes import client, config

        api = client.CoreV1Api(config.new_client_from_config(str(self.kubeconfig)))
        for index in range(FAKE_NODE_COUNT):
            api.create_node(fake_node(f"kwok-node-{index}"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            nodes = api.list_node().items
            ready = [
                n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
            ]
            if len(ready) == FAKE_NODE_COUNT:
                return
            time.sleep(0.5)
        raise RuntimeError(f"test bed: kwok did not make {FAKE_NODE_COUNT} nodes Ready within 60 s")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
