"""Services for the real node's pods: cluster DNS (CoreDNS) and Service routing (kube-proxy, nftables mode).

Both run as processes of the host, not as pods: the node has no registry to pull their images from, and they
must be there before any pod. CoreDNS answers for ``cluster.local`` on the node's IP (the kubelet's clusterDNS)
from the API server; it forwards nothing, so a name outside the cluster is refused at once. kube-proxy turns
ClusterIPs into DNAT rules in nftables tables of its own (``ip kube-proxy``, ``ip6 kube-proxy``), deleted at down;
its settings keep it off machine-wide knobs (conntrack sysctls, NodePorts on loopback, OOM score).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from ..ledger import Ledger
from ..process import ManagedProcess, free_port
from .kubelet import CLUSTER_DOMAIN
from .network import NodeNetwork, http_ok

DNS_USER = "kinfer:coredns"


def allow_coredns(api: client.ApiClient) -> None:
    """CoreDNS's user (its client certificate's name) may list and watch what the kubernetes plugin reads."""
    rbac = client.RbacAuthorizationV1Api(api)
    read = ["list", "watch"]
    role = {
        "metadata": {"name": DNS_USER},
        "rules": [
            {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": read},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
        ],
    }
    binding = {
        "metadata": {"name": DNS_USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": DNS_USER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": DNS_USER}],
    }
    for create, body in ((rbac.create_cluster_role, role), (rbac.create_cluster_role_binding, binding)):
        try:
            create(body)
        except client.ApiException as error:
            if error.status != 409:  # a bed's API server is new: only a retried start finds it
                raise


def start_coredns(
    binary: Path, directory: Path, kubeconfig: Path, network: NodeNetwork, ledger: Ledger, log_dir: Path
) -> ManagedProcess:
    directory.mkdir(parents=True, exist_ok=True)
    ready_port = free_port()
    corefile = directory / "Corefile"
    corefile.write_text(
        f"""\
{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {network.node_ip}
    errors
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
    }}
    cache 5
}}
"""
    )
    process = ManagedProcess(
        name="node-coredns",
        command=[str(binary), "-conf", str(corefile)],
        log_path=log_dir / "node-coredns.log",
        ready=lambda: http_ok(f"http://127.0.0.1:{ready_port}/ready"),
        on_spawn=lambda pid: ledger.process("node-coredns", pid),
    )
    process.start()
    return process


def kube_proxy_config(node_name: str, kubeconfig: Path, network: NodeNetwork, healthz_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_name,
        "bindAddress": network.node_ip,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{free_port()}",
        "clusterCIDR": network.cidr,
        "detectLocalMode": "ClusterCIDR",
        "nodePortAddresses": [f"{network.node_ip}/32"],
        "oomScoreAdj": 0,  # lowering it needs CAP_SYS_RESOURCE
        # No NodePorts on 127.0.0.1: they need net.ipv4.conf.all.route_localnet=1, a machine-wide change.
        "iptables": {"localhostNodePorts": False},
        # 0: leave the machine's conntrack sysctls alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
    }


def start_kube_proxy(
    binary: Path, directory: Path, node_name: str, kubeconfig: Path, network: NodeNetwork, ledger: Ledger, log_dir: Path
) -> ManagedProcess:
    """Started once the Node exists: kube-proxy reads it (and waits for it, up to minutes, otherwise)."""
    directory.mkdir(parents=True, exist_ok=True)
    healthz_port = free_port()
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(kube_proxy_config(node_name, kubeconfig, network, healthz_port), sort_keys=False))
    for family in ("ip", "ip6"):
        ledger.command(["nft", "delete", "table", family, "kube-proxy"], f"kube-proxy's {family} rules")
    process = ManagedProcess(
        name="node-kube-proxy",
        command=[str(binary), f"--config={path}", "--v=1"],
        log_path=log_dir / "node-kube-proxy.log",
        ready=lambda: http_ok(f"http://127.0.0.1:{healthz_port}/healthz"),
        on_spawn=lambda pid: ledger.process("node-kube-proxy", pid),
    )
    process.start()
    return process
