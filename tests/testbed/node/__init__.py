"""A real Kubernetes node for the test bed (opt-in: ``TestBed(real_node=True)``, ``make testbed-up
KINFER_REAL_NODE=1``): containerd, runc, a CNI bridge, the kubelet, CoreDNS and kube-proxy on this machine.

Modules: network (the bridge, policy routing, forwarding), containerd (runtime, CNI, images), kubelet
(credentials, configuration, host changes), services (CoreDNS, kube-proxy), real_node (the order of it all, what
tests use), undo (clean-up steps the ledger runs as commands). tests/testbed/README.md explains the design.
"""

from .network import NodeNetwork
from .real_node import NodeAccess, NodeBinaries, NodeImages, RealNode

__all__ = ["NodeAccess", "NodeBinaries", "NodeImages", "NodeNetwork", "RealNode"]
