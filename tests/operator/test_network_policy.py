"""The pipelines' NetworkPolicies (builders/network_policy.py) and the flags that turn them on: which pods each
selects, what it admits, that they match the Deployments' pod labels and ports, and that a bad peer list stops
the operator at start. Against the real API server: test_lifecycle.py."""

from __future__ import annotations

from typing import Any

import pytest

from kinfer_operator.builders import naming
from kinfer_operator.builders.consumer import build_consumer_deployment
from kinfer_operator.builders.desired import desired_children
from kinfer_operator.builders.manifests import spec_hash_of
from kinfer_operator.builders.network_policy import (
    NetworkPolicies,
    build_consumer_network_policy,
    build_network_policies,
    build_tfserving_network_policy,
    parse_peers,
)
from kinfer_operator.builders.tfserving import build_tfserving_deployment
from kinfer_operator.main import parse_args
from tests.operator.pipelines import FRAUD, SENSOR, owner, pipeline

MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
SCRAPERS = NetworkPolicies((MONITORING,))


def _ports(rule: dict[str, Any]) -> list[int]:
    return [port["port"] for port in rule["ports"]]


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _container_ports(deployment: dict[str, Any]) -> set[int]:
    return {port["containerPort"] for port in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}


def test_consumer_pods_admit_only_their_metrics_port_from_the_metrics_peers() -> None:
    p = pipeline(FRAUD, monitoring={"metricsPort": 9500})
    policy = build_consumer_network_policy(p, owner(p), SCRAPERS)
    assert (policy["apiVersion"], policy["kind"], policy["metadata"]["name"]) == (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "fraud-consumer",
    )
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"], "egress stays open: Kafka is reached at host names"
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9500}], "from": [MONITORING]}]
    deployment = build_consumer_deployment(p, owner(p), 1, "hash")
    assert spec["podSelector"]["matchLabels"].items() <= _pod_labels(deployment).items()
    assert _container_ports(deployment) == {9500}, "the one port the consumer pods serve"


def test_no_metrics_peers_means_any_source_on_the_metrics_port() -> None:
    p = pipeline(FRAUD)
    (rule,) = build_consumer_network_policy(p, owner(p), NetworkPolicies())["spec"]["ingress"]
    assert rule == {"ports": [{"protocol": "TCP", "port": 9400}]}  # a rule without "from" admits every source


def test_tfserving_pods_admit_their_own_consumers_and_the_metrics_peers_on_rest() -> None:
    p = pipeline(SENSOR, serving={"tfserving": {"grpcPort": 9000, "restPort": 9001}})
    policy = build_tfserving_network_policy(p, owner(p), SCRAPERS)
    assert policy["metadata"]["name"] == "sensor-anomaly-tfserving"
    consumers, scrapers = policy["spec"]["ingress"]
    assert _ports(consumers) == [9000, 9001] and _ports(scrapers) == [9001]
    assert scrapers["from"] == [MONITORING]
    (peer,) = consumers["from"]
    assert set(peer) == {"podSelector"}, "the pipeline's own namespace only"
    consumer_pods = _pod_labels(build_consumer_deployment(p, owner(p), 1, "hash"))
    tfserving = build_tfserving_deployment(p, owner(p), 1, "hash")
    assert peer["podSelector"]["matchLabels"].items() <= consumer_pods.items()
    assert peer["podSelector"]["matchLabels"][naming.LABEL_PIPELINE] == "sensor-anomaly"
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= _pod_labels(tfserving).items()
    assert not policy["spec"]["podSelector"]["matchLabels"].items() <= consumer_pods.items()
    assert _container_ports(tfserving) == {9000, 9001}
    # TF Serving's metrics are on the REST port (the pod's scrape annotation says so).
    assert tfserving["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9001"


def test_a_tfserving_policy_only_where_the_operator_deploys_tfserving() -> None:
    def names(p: Any) -> list[str]:
        return [policy["metadata"]["name"] for policy in build_network_policies(p, owner(p), NetworkPolicies())]

    assert names(pipeline(FRAUD)) == ["fraud-consumer"]
    assert names(pipeline(SENSOR)) == ["sensor-anomaly-consumer", "sensor-anomaly-tfserving"]
    external = pipeline(SENSOR, serving={"tfserving": {"endpoint": "tfs.example:8500"}})
    assert names(external) == ["sensor-anomaly-consumer"]


def test_policies_are_children_first_in_the_apply_order_and_only_when_asked_for() -> None:
    p = pipeline(SENSOR)
    assert not [c for c in desired_children(p, owner(p), 1, 1) if c["kind"] == "NetworkPolicy"]
    children = desired_children(p, owner(p), 1, 1, network_policies=SCRAPERS)
    assert [c["kind"] for c in children[:2]] == ["NetworkPolicy", "NetworkPolicy"]
    assert "NetworkPolicy" not in [c["kind"] for c in children[2:]]
    for policy in children[:2]:
        assert policy["metadata"]["namespace"] == "ns1"
        assert policy["metadata"]["ownerReferences"][0]["uid"] == "uid-1234"
        assert policy["metadata"]["labels"][naming.LABEL_MANAGED_BY] == "kinfer"
        assert policy["metadata"]["labels"][naming.LABEL_PIPELINE] == "sensor-anomaly"
        assert spec_hash_of(policy)
    again = desired_children(pipeline(SENSOR), owner(p), 1, 1, network_policies=SCRAPERS)
    assert [spec_hash_of(c) for c in again[:2]] == [spec_hash_of(c) for c in children[:2]]
    anyone = desired_children(p, owner(p), 1, 1, network_policies=NetworkPolicies())
    assert spec_hash_of(anyone[0]) != spec_hash_of(children[0]), "other peers: the policy is applied again"


def test_peers_are_parsed_from_json_and_typos_refused() -> None:
    peers = '[{"namespaceSelector": {}, "podSelector": {}}, {"ipBlock": {"cidr": "10.0.0.0/8"}}]'
    assert parse_peers(peers)[1] == {"ipBlock": {"cidr": "10.0.0.0/8"}}
    assert parse_peers("[]") == ()
    for text, message in [
        ("{", "not JSON"),
        ('{"podSelector": {}}', "expected a JSON list"),
        ("[{}]", "peer 0: expected an object"),
        ('[{"namespaceSelecter": {}}]', "unknown field 'namespaceSelecter'"),
        ('[{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]', "ipBlock cannot be combined"),
        ('[{"ipBlock": {}}]', "ipBlock needs a cidr"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_peers(text)


def test_operator_flags() -> None:
    assert parse_args([]).network_policies is None
    assert parse_args(["--network-policies"]).network_policies == NetworkPolicies()
    given = parse_args(["--network-policies", '--network-policy-metrics-from=[{"podSelector": {}}]'])
    assert given.network_policies == NetworkPolicies(({"podSelector": {}},))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (['--network-policy-metrics-from=[{"podSelector": {}}]'], "needs --network-policies"),
        (["--network-policies", "--network-policy-metrics-from=[{}]"], "peer 0"),
    ],
)
def test_operator_flags_refused(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(args)
    assert message in capsys.readouterr().err
