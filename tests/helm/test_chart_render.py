"""The chart without a cluster: helm lint, helm template per values variant, the schema refusing bad values."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
import yaml
from cryptography import x509

from kinfer_operator.builders.network_policy import NetworkPolicies
from kinfer_operator.main import parse_args
from tests.helm.chart import CHART, NAMESPACE, REPO_ROOT, find, helm, one, render, render_error

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "monitoring": {
        "monitoring.serviceMonitor.enabled": True,
        "monitoring.podMonitor.enabled": True,
        "monitoring.prometheusRule.enabled": True,
        "monitoring.grafanaDashboard.enabled": True,
    },
    "replicas-2": {"replicaCount": 2},
    "no-external-metrics": {"externalMetrics.enabled": False, "crds.install": False},
    "cert-manager": {"externalMetrics.certificate.source": "certManager"},
    "network-policy": {
        "networkPolicy.enabled": True,
        "networkPolicy.metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}],
    },
}


def operator_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(manifests, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def all_rules(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for m in manifests if m["kind"] in ("Role", "ClusterRole") for rule in m["rules"]]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_passes(variant: str) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", "1.36.3"]
    for key, value in VARIANTS[variant].items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_chart_crd_copy_matches_generated_crd() -> None:
    generated = REPO_ROOT / "crds" / "kinfer.io_inferencepipelines.yaml"
    copy = CHART / "files" / "crds" / "kinfer.io_inferencepipelines.yaml"
    assert copy.read_bytes() == generated.read_bytes(), (
        f"the chart's CRD is stale: cp {generated.relative_to(REPO_ROOT)} {copy.relative_to(REPO_ROOT)}"
    )


def test_default_install_has_every_part() -> None:
    manifests = render()
    kinds = {m["kind"] for m in manifests}
    assert {
        "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RoleBinding",
        "Deployment", "Service", "Secret", "APIService", "PodDisruptionBudget", "ClusterKopfPeering",
    } <= kinds  # fmt: skip
    # Monitoring is off by default: one value each turns it on.
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}


def test_crd_is_the_generated_one_and_survives_uninstall() -> None:
    crd = one(render(), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    generated = yaml.safe_load((REPO_ROOT / "crds" / "kinfer.io_inferencepipelines.yaml").read_text())
    # Same schema after Helm's YAML round trip; the chart adds only labels and the keep annotation.
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["name"] == generated["metadata"]["name"] == "inferencepipelines.kinfer.io"
    crd_unkept = one(render({"crds.keep": False}), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in (crd_unkept["metadata"].get("annotations") or {})
    assert not find(render({"crds.install": False}), "CustomResourceDefinition")


def test_operator_deployment_runs_kinfer_operator_hardened() -> None:
    manifests = render()
    container = operator_container(manifests)
    assert container["command"] == ["kinfer", "operator"]
    args = container["args"]
    assert "--all-namespaces" in args and "--peering=kinfer" in args
    assert "--external-metrics-port=6443" in args and "--metrics-port=8080" in args
    assert "--log-level=INFO" in args
    assert "--log-level=DEBUG" in operator_container(render({"operator.logLevel": "DEBUG"}))["args"]
    assert {
        "--tls-cert-file=/etc/kinfer/metrics-api-tls/tls.crt",
        "--tls-key-file=/etc/kinfer/metrics-api-tls/tls.key",
    } <= set(args)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == "kinfer-kinfer-operator"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KINFER_RUNTIME_IMAGE"] == "kinfer/runtime:0.1.0"
    assert container["image"] == "kinfer/operator:0.1.0"
    digest = "sha256:" + "a" * 64
    assert operator_container(render({"image.digest": digest}))["image"] == f"kinfer/operator@{digest}"


def test_rbac_has_no_wildcards_and_only_the_operators_resources() -> None:
    for variant in VARIANTS.values():
        for rule in all_rules(render(variant)):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), rule
            assert "nonResourceURLs" not in rule
    rules = all_rules(render({"externalMetrics.enabled": False}))
    granted = {(g, r): set(rule["verbs"]) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {
        ("kinfer.io", "inferencepipelines"): {"get", "list", "watch", "patch"},
        ("kinfer.io", "inferencepipelines/status"): {"patch"},
        ("kinfer.io", "inferencepipelines/finalizers"): {"update"},
        ("batch", "jobs"): {"get", "list", "create", "patch", "delete"},
        ("apps", "deployments"): {"get", "list", "create", "patch", "delete"},
        ("", "configmaps"): {"get", "list", "create", "patch", "delete"},
        ("", "services"): {"get", "list", "create", "patch", "delete"},
        ("autoscaling", "horizontalpodautoscalers"): {"get", "list", "create", "patch", "delete"},
        ("", "events"): {"create"},
        ("", "persistentvolumeclaims"): {"get"},
        ("", "pods"): {"list", "watch"},
        ("", "secrets"): {"get"},
        ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    }
    no_secrets = all_rules(render({"rbac.secretsGet": False}))
    assert not [r for r in no_secrets if "secrets" in r["resources"]]
    keda = all_rules(render({"rbac.keda": True}))
    assert [r for r in keda if r["apiGroups"] == ["keda.sh"] and r["resources"] == ["scaledobjects"]]
    strimzi = all_rules(render({"rbac.strimziConnectors": True}))
    assert [r for r in strimzi if r["apiGroups"] == ["kafka.strimzi.io"] and r["resources"] == ["kafkaconnectors"]]


def test_external_metrics_api_auth_delegation() -> None:
    manifests = render()
    # The HPA controller's built-in role (system:controller:horizontal-pod-autoscaler) already reads
    # external.metrics.k8s.io; the chart grants nothing more (tests/helm/test_chart_install.py checks it).
    assert [c["metadata"]["name"] for c in find(manifests, "ClusterRole")] == ["kinfer-kinfer-operator"]
    delegator = one(manifests, "ClusterRoleBinding", "kinfer-kinfer-operator-auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    reader_binding = one(manifests, "RoleBinding", "kinfer-kinfer-operator-auth-reader")
    assert reader_binding["metadata"]["namespace"] == "kube-system"
    assert reader_binding["roleRef"]["name"] == "extension-apiserver-authentication-reader"


def test_namespaced_mode_uses_roles_in_each_watched_namespace() -> None:
    manifests = render(VARIANTS["namespaced"])
    roles = find(manifests, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = [b for b in find(manifests, "RoleBinding") if b["roleRef"]["kind"] == "Role"]
    watched = sorted(b["metadata"]["namespace"] for b in bindings if b["metadata"]["namespace"] != "kube-system")
    assert watched == ["team-a", "team-b"]
    for role in roles:
        resources = {r for rule in role["rules"] for r in rule["resources"]}
        assert {"inferencepipelines", "deployments", "secrets", "kopfpeerings"} <= resources
    # Nothing is granted cluster-wide but auth delegation (a binding to the built-in system:auth-delegator).
    assert not find(manifests, "ClusterRole")
    assert [b["roleRef"]["name"] for b in find(manifests, "ClusterRoleBinding")] == ["system:auth-delegator"]
    args = operator_container(manifests)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args
    peerings = find(manifests, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert not find(manifests, "ClusterKopfPeering")


def test_replicas_two_use_peering_and_a_disruption_budget() -> None:
    manifests = render(VARIANTS["replicas-2"])
    assert one(manifests, "Deployment")["spec"]["replicas"] == 2
    assert "--peering=kinfer" in operator_container(manifests)["args"]
    assert one(manifests, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    standalone = render({"peering.enabled": False})
    assert "--standalone" in operator_container(standalone)["args"]
    assert not find(standalone, "ClusterKopfPeering")


def test_apiservice_trusts_the_serving_certificate() -> None:
    manifests = render()
    api = one(manifests, "APIService", "v1beta1.external.metrics.k8s.io")
    assert api["spec"]["service"] == {"name": "kinfer-kinfer-operator-metrics-api", "namespace": NAMESPACE, "port": 443}
    secret = one(manifests, "Secret", "kinfer-kinfer-operator-metrics-api-tls")
    ca = x509.load_pem_x509_certificate(base64.b64decode(api["spec"]["caBundle"]))
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert base64.b64decode(secret["data"]["ca.crt"]) == base64.b64decode(api["spec"]["caBundle"])
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"kinfer-kinfer-operator-metrics-api.{NAMESPACE}.svc" in names
    service = one(manifests, "Service", "kinfer-kinfer-operator-metrics-api")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics-api"


def test_cert_manager_variant_injects_the_ca() -> None:
    manifests = render(VARIANTS["cert-manager"])
    api = one(manifests, "APIService")
    assert "caBundle" not in api["spec"]
    assert (
        api["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        == f"{NAMESPACE}/kinfer-kinfer-operator-metrics-api"
    )
    assert one(manifests, "Certificate")["spec"]["secretName"] == "kinfer-kinfer-operator-metrics-api-tls"
    assert one(manifests, "Issuer")["spec"] == {"selfSigned": {}}
    assert not find(manifests, "Secret")


def test_external_metrics_can_be_turned_off_for_clusters_with_keda() -> None:
    manifests = render(VARIANTS["no-external-metrics"])
    assert not find(manifests, "APIService") and not find(manifests, "Secret")
    args = operator_container(manifests)["args"]
    assert not [a for a in args if a.startswith(("--external-metrics-port", "--tls-"))]


def test_monitoring_assets_each_behind_one_value() -> None:
    manifests = render(VARIANTS["monitoring"])
    service_monitor = one(manifests, "ServiceMonitor")
    assert service_monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    assert service_monitor["spec"]["endpoints"][0]["honorLabels"] is True
    pod_monitor = one(manifests, "PodMonitor")
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "kinfer",
        "app.kubernetes.io/component": "consumer",
    }
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    alerts = {r["alert"] for g in one(manifests, "PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    assert {
        "KinferConsumerLagGrowing", "KinferDeadLetterRateHigh", "KinferPipelineNotReady", "KinferModelServerDown",
        "KinferConsumersCappedByPartitions",
    } <= alerts  # fmt: skip
    dashboard = one(manifests, "ConfigMap", "kinfer-kinfer-operator-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    committed = json.loads((CHART / "files" / "dashboards" / "kinfer-pipelines.json").read_text())
    assert json.loads(dashboard["data"]["kinfer-pipelines.json"]) == committed
    for key in VARIANTS["monitoring"]:
        alone = {m["kind"] for m in render({key: True})}
        assert len(alone & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}) == 1, key


BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"replicaCount": 0}, "/replicaCount"),
    ({"replicaCount": 2, "peering.enabled": False}, "/peering/enabled"),
    ({"image.pullPolicy": "Sometimes"}, "'Always', 'IfNotPresent', 'Never'"),
    ({"image.digest": "latest"}, "/image/digest"),
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ({"watchNamespaces": ["a", "a"]}, "/watchNamespaces"),
    ({"operator.metricsPort": 70000}, "/operator/metricsPort"),
    ({"externalMetrics.certificate.source": "vault"}, "'helm', 'certManager', 'secret'"),
    ({"externalMetrics.certificate.source": "secret"}, "/externalMetrics/certificate/existingSecret"),
    ({"monitoring.prometheusRule.deadLetterRatio": 5}, "/monitoring/prometheusRule/deadLetterRatio"),
    ({"monitoring.serviceMonitor.interval": "soon"}, "/monitoring/serviceMonitor/interval"),
    ({"podDisruptionBudget.maxUnavailable": "half"}, "/podDisruptionBudget/maxUnavailable"),
    ({"watchNamespace": ["typo"]}, "additional properties 'watchNamespace' not allowed"),
    ({"crds.install": "yes"}, "/crds/install"),
    ({"operator.logLevel": "verbose"}, "/operator/logLevel"),
    ({"networkPolicy.metricsFrom": [{"namespaceSelecter": {}}]}, "/networkPolicy/metricsFrom/0"),
    ({"networkPolicy.metricsFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}, "0/podSelector"),
    ({"networkPolicy.metricsFrom": [{"ipBlock": {}}]}, "/networkPolicy/metricsFrom/0/ipBlock"),
]


@pytest.mark.parametrize(
    ("values", "message"), BAD_VALUES, ids=[next(iter(v)) + "-" + str(i) for i, (v, _) in enumerate(BAD_VALUES)]
)
def test_schema_refuses_bad_values_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    error = render_error(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error, error


def test_values_are_documented_line_by_line() -> None:
    """Every key of values.yaml has a comment right above it (inside Kubernetes-native blocks such as resources
    or securityContext, the block's comment covers its fields)."""
    native_blocks = ("resources", "podSecurityContext", "securityContext", "labels")
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented, inside_native = [], None
    for number, line in enumerate(lines, 1):
        match = re.match(r"^(\s*)([A-Za-z][\w]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        if inside_native is not None and indent > inside_native:
            continue
        inside_native = indent if key in native_blocks else None
        if not lines[number - 2].strip().startswith("#"):
            undocumented.append(f"{number}: {line.strip()}")
    assert not undocumented, "values without a comment:\n" + "\n".join(undocumented)
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"]), "every top-level value is in the schema"


def test_security_values_become_operator_flags() -> None:
    manifests = render(
        {
            "security.allowedBootstrapServers": ["kafka-*.kafka.svc:9092", "10.0.0.5:9093"],
            "security.allowedConnectUrls": ["http://connect.ingest.svc:8083"],
            "security.secretLabel": "kinfer.io/use=true",
        }
    )
    args = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--allowed-bootstrap=kafka-*.kafka.svc:9092" in args and "--allowed-bootstrap=10.0.0.5:9093" in args
    assert "--allowed-connect-url=http://connect.ingest.svc:8083" in args
    assert "--secret-label=kinfer.io/use=true" in args
    defaults = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in defaults if a.startswith(("--allowed-", "--secret-label"))]


def _network_policy_rules(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for rule in all_rules(manifests) if rule["apiGroups"] == ["networking.k8s.io"]]


def test_network_policies_only_when_enabled() -> None:
    default = render()
    assert not find(default, "NetworkPolicy") and not _network_policy_rules(default)
    assert not [a for a in operator_container(default)["args"] if a.startswith("--network-polic")]

    manifests = render(VARIANTS["network-policy"])
    peers = VARIANTS["network-policy"]["networkPolicy.metricsFrom"]
    policy = one(manifests, "NetworkPolicy", "kinfer-kinfer-operator")
    assert policy["metadata"]["namespace"] == NAMESPACE
    operator_pods = one(manifests, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"] == {"matchLabels": operator_pods}
    assert policy["spec"]["policyTypes"] == ["Ingress"], "egress stays open (the API server, Kafka by host name)"
    metrics, metrics_api = policy["spec"]["ingress"]
    assert metrics == {"ports": [{"protocol": "TCP", "port": 8080}], "from": peers}
    assert metrics_api == {"ports": [{"protocol": "TCP", "port": 6443}]}, "the aggregator is no selectable pod"
    (rule,) = _network_policy_rules(manifests)
    assert rule["resources"] == ["networkpolicies"]
    assert set(rule["verbs"]) == {"get", "list", "create", "patch", "delete"}

    # The flags reach the operator as it parses them.
    args = [a for a in operator_container(manifests)["args"] if a.startswith("--network-polic")]
    assert parse_args(args).network_policies == NetworkPolicies(tuple(peers))


def test_network_policies_defaults_and_namespaced_mode() -> None:
    manifests = render({"networkPolicy.enabled": True, "externalMetrics.enabled": False})
    (metrics,) = one(manifests, "NetworkPolicy")["spec"]["ingress"]
    assert metrics == {"ports": [{"protocol": "TCP", "port": 8080}]}, "no metricsFrom: any source"
    assert [a for a in operator_container(manifests)["args"] if a.startswith("--network-polic")] == [
        "--network-policies"
    ]
    namespaced = render({"networkPolicy.enabled": True, **VARIANTS["namespaced"]})
    for role in find(namespaced, "Role"):
        assert "networkpolicies" in {r for rule in role["rules"] for r in rule["resources"]}, role["metadata"]
    assert one(namespaced, "NetworkPolicy")["metadata"]["namespace"] == NAMESPACE, "the operator's own, once"
