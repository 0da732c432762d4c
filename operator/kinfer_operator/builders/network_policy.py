"""Pure builders of a pipeline's NetworkPolicies: which connections its consumer and TF Serving pods accept.

Made only when the installation asks for them (``kinfer operator --network-policies``, the chart's
``networkPolicy.enabled``; docs/security.md). Per pipeline:

- ``<name>-consumer`` selects the consumer pods. They serve nothing but their metrics port (``/metrics``,
  ``/healthz``, ``/readyz``), so that port is the only one open, and only to the installation's metrics peers.
- ``<name>-tfserving`` (only when the operator deploys TF Serving for the pipeline) selects the TF Serving pods:
  gRPC and REST from this pipeline's consumer pods (REST is their fallback), and the REST port also from the
  metrics peers, because TF Serving serves its Prometheus metrics there (whoever may scrape may therefore also
  call its REST API).

No metrics peers means any source may reach the metrics ports, which is what an ingress rule without ``from``
means. The kubelet's probes are never blocked: traffic from a pod's own node is always allowed.

Only ingress is restricted. Egress stays open: the consumers reach Kafka at the spec's bootstrap servers and at
the addresses the brokers advertise, which are host names, and a NetworkPolicy can only name pods and IP blocks.

The policies are children like the others (labels, owner reference, spec-hash): they go with their pipeline,
and the TF Serving one is pruned when a spec change drops TF Serving.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kinfer_operator.builders import naming
from kinfer_operator.builders.manifests import Owner, child
from kinfer_runtime.spec import InferencePipeline

API_VERSION = "networking.k8s.io/v1"
KIND = "NetworkPolicy"

_SELECTORS = frozenset({"podSelector", "namespaceSelector"})
_PEER_KEYS = _SELECTORS | {"ipBlock"}


@dataclass(frozen=True)
class NetworkPolicies:
    """The installation's settings: every pipeline gets NetworkPolicies, and ``metrics_from`` (NetworkPolicyPeer
    objects) may reach the metrics ports; empty: any source."""

    metrics_from: tuple[dict[str, Any], ...] = ()


def parse_peers(text: str) -> tuple[dict[str, Any], ...]:
    """NetworkPolicyPeer objects from a JSON list (the operator's ``--network-policy-metrics-from``).

    Checked here, at start, so a typo stops the operator with a message instead of every pipeline's policy
    being refused by the API server."""
    try:
        peers = json.loads(text)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(peers, list):
        raise ValueError("expected a JSON list of NetworkPolicyPeer objects")
    for index, peer in enumerate(peers):
        if not isinstance(peer, dict) or not peer:
            raise ValueError(f"peer {index}: expected an object with podSelector, namespaceSelector or ipBlock")
        unknown = sorted(set(peer) - _PEER_KEYS)
        if unknown:
            raise ValueError(f"peer {index}: unknown field {unknown[0]!r} (podSelector, namespaceSelector, ipBlock)")
        if "ipBlock" in peer and _SELECTORS & set(peer):
            raise ValueError(f"peer {index}: ipBlock cannot be combined with a selector in one peer")
        if "ipBlock" in peer and not (isinstance(peer["ipBlock"], dict) and peer["ipBlock"].get("cidr")):
            raise ValueError(f"peer {index}: ipBlock needs a cidr")
    return tuple(peers)


def _port(number: int) -> dict[str, Any]:
    return {"protocol": "TCP", "port": number}


def _rule(ports: list[int], peers: list[dict[str, Any]]) -> dict[str, Any]:
    """An ingress rule; without peers it admits any source on those ports."""
    rule: dict[str, Any] = {"ports": [_port(number) for number in ports]}
    if peers:
        rule["from"] = peers
    return rule


def _policy(owner: Owner, name: str, component: str, ingress: list[dict[str, Any]]) -> dict[str, Any]:
    spec = {
        "podSelector": {"matchLabels": naming.selector_labels(owner.name, component)},
        # Ingress only: listing Egress here would cut the pods off from Kafka (see the module's docstring).
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    }
    return child(API_VERSION, KIND, name, owner, component, {"spec": spec})


def build_consumer_network_policy(
    pipeline: InferencePipeline, owner: Owner, settings: NetworkPolicies
) -> dict[str, Any]:
    """The consumer pods accept connections only on their metrics port, from the metrics peers."""
    port = pipeline.spec.monitoring.metrics_port
    ingress = [_rule([port], list(settings.metrics_from))]
    return _policy(owner, naming.consumer_name(owner.name), naming.COMPONENT_CONSUMER, ingress)


def build_tfserving_network_policy(
    pipeline: InferencePipeline, owner: Owner, settings: NetworkPolicies
) -> dict[str, Any]:
    """The TF Serving pods accept gRPC and REST from the pipeline's consumer pods, and REST (their metrics) from
    the metrics peers."""
    tfserving = pipeline.spec.serving.tfserving
    consumers = {"podSelector": {"matchLabels": naming.selector_labels(owner.name, naming.COMPONENT_CONSUMER)}}
    ingress = [
        _rule([tfserving.grpc_port, tfserving.rest_port], [consumers]),
        _rule([tfserving.rest_port], list(settings.metrics_from)),
    ]
    return _policy(owner, naming.tfserving_name(owner.name), naming.COMPONENT_TFSERVING, ingress)


def build_network_policies(
    pipeline: InferencePipeline, owner: Owner, settings: NetworkPolicies
) -> list[dict[str, Any]]:
    """Every NetworkPolicy the pipeline should have: its consumers', and its TF Serving's when it deploys one."""
    policies = [build_consumer_network_policy(pipeline, owner, settings)]
    if pipeline.spec.serving.deploys_tfserving:
        policies.append(build_tfserving_network_policy(pipeline, owner, settings))
    return policies
