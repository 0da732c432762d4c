"""`helm install` on the test bed: the chart creates everything, upgrades the CRD, keeps it on uninstall; its
ServiceAccount can do what the operator needs and nothing else (kubectl auth can-i --as); and `kinfer operator`
run out of cluster with the chart's arguments and the ServiceAccount's own token reconciles a sample pipeline.
Pods are kwok's (Running and Ready, nothing runs); the operator runs as a local process.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.chart import CHART, REPO_ROOT
from tests.helm.release import (
    APISERVICE,
    CRD_NAME,
    Release,
    adopt_crd,
    external_metrics_api_free,
    kubectl_json,
    operator_command_from_chart,
    running,
    service_account_kubeconfig,
    wait_for,
)
from tests.testbed import TestBed

pytestmark = pytest.mark.testbed


def install(bed: TestBed, release: Release, chart: Path, *sets: str, upgrade: bool = False) -> str:
    verb = ["upgrade", "--reuse-values"] if upgrade else ["install"]
    args = [*verb, release.name, str(chart), "-n", release.namespace, "--wait", "--timeout", "180s"]
    for item in sets:
        args += ["--set", item]
    return bed.helm(*args).stdout


@pytest.fixture(scope="module")
def cluster_release(testbed: TestBed) -> Iterator[Release]:
    """The chart with default values (all namespaces, external metrics API, CRD) in a namespace of its own."""
    suffix = uuid.uuid4().hex[:6]
    release = Release(f"kinfer-{suffix}", f"kinfer-system-{suffix}")
    testbed.kubectl("create", "namespace", release.namespace)
    with external_metrics_api_free(testbed):
        adopt_crd(testbed, release)
        notes = install(testbed, release, CHART, f"peering.name=kinfer-{suffix}")
        assert "kubectl get inferencepipelines" in notes
        try:
            yield release
        finally:
            testbed.helm("uninstall", release.name, "-n", release.namespace, "--wait", check=False)
            testbed.kubectl("delete", "namespace", release.namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def namespaced_release(testbed: TestBed, cluster_release: Release) -> Iterator[tuple[Release, str, str]]:
    """The chart in namespaced mode watching one namespace (the CRD and metrics API stay the first release's)."""
    suffix = uuid.uuid4().hex[:6]
    release = Release(f"kinfer-ns-{suffix}", f"kinfer-ns-system-{suffix}")
    watched, other = f"pipelines-{suffix}", f"elsewhere-{suffix}"
    for namespace in (release.namespace, watched, other):
        testbed.kubectl("create", "namespace", namespace)
    install(
        testbed, release, CHART,
        f"watchNamespaces={{{watched}}}", "crds.install=false", "externalMetrics.enabled=false",
        f"peering.name=kinfer-{suffix}",
    )  # fmt: skip
    try:
        yield release, watched, other
    finally:
        testbed.helm("uninstall", release.name, "-n", release.namespace, "--wait", check=False)
        for namespace in (release.namespace, watched, other):
            testbed.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_install_creates_every_object(testbed: TestBed, cluster_release: Release) -> None:
    r = cluster_release
    deployment = kubectl_json(testbed, "get", "deployment", r.fullname, "-n", r.namespace)
    assert deployment is not None and deployment["status"].get("availableReplicas") == 1
    crd = kubectl_json(testbed, "get", "crd", CRD_NAME)
    assert crd is not None
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for kind, name, namespace in [
        ("serviceaccount", r.fullname, r.namespace),
        ("service", f"{r.fullname}-metrics", r.namespace),
        ("service", f"{r.fullname}-metrics-api", r.namespace),
        ("secret", f"{r.fullname}-metrics-api-tls", r.namespace),
        ("poddisruptionbudget", r.fullname, r.namespace),
        ("rolebinding", f"{r.fullname}-auth-reader", "kube-system"),
    ]:
        assert kubectl_json(testbed, "get", kind, name, "-n", namespace) is not None, f"{kind} {name}"
    for kind, name in [
        ("clusterrole", r.fullname),
        ("clusterrolebinding", r.fullname),
        ("clusterrolebinding", f"{r.fullname}-auth-delegator"),
        ("crd", "clusterkopfpeerings.kopf.dev"),
        ("crd", "kopfpeerings.kopf.dev"),
        ("clusterkopfpeering", f"kinfer-{r.name.removeprefix('kinfer-')}"),
    ]:
        assert kubectl_json(testbed, "get", kind, name) is not None, f"{kind} {name}"
    api = kubectl_json(testbed, "get", "apiservice", APISERVICE)
    secret = kubectl_json(testbed, "get", "secret", f"{r.fullname}-metrics-api-tls", "-n", r.namespace)
    assert api is not None and secret is not None
    assert api["spec"]["service"]["name"] == f"{r.fullname}-metrics-api"
    assert base64.b64decode(api["spec"]["caBundle"]) == base64.b64decode(secret["data"]["ca.crt"])
    pods = kubectl_json(testbed, "get", "pods", "-n", r.namespace, "-l", "app.kubernetes.io/component=operator")
    assert pods is not None and len(pods["items"]) == 1
    assert pods["items"][0]["spec"]["serviceAccountName"] == r.fullname


def can_i(bed: TestBed, who: str, verb: str, resource: str, namespace: str | None = None, *extra: str) -> bool:
    # "kind#sub" asks about a subresource; "kind/name" about one named object (kubectl's own syntax).
    resource, _, subresource = resource.partition("#")
    args = ["auth", "can-i", verb, resource, f"--as={who}", *extra]
    if subresource:
        args.append(f"--subresource={subresource}")
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    result = bed.kubectl(*args, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


def metrics_access(bed: TestBed, user: str, metric: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": {
                "group": "external.metrics.k8s.io", "version": "v1beta1", "resource": metric,
                "namespace": "default", "verb": "get",
            },
        },
    }  # fmt: skip
    answer = json.loads(bed.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout)
    return bool(answer["status"].get("allowed"))


ALLOWED = [
    ("list", "inferencepipelines.kinfer.io"), ("watch", "inferencepipelines.kinfer.io"),
    ("patch", "inferencepipelines.kinfer.io"), ("patch", "inferencepipelines.kinfer.io#status"),
    ("update", "inferencepipelines.kinfer.io#finalizers"),
    ("get", "deployments.apps"), ("create", "deployments.apps"), ("patch", "deployments.apps"),
    ("list", "deployments.apps"), ("delete", "deployments.apps"), ("delete", "horizontalpodautoscalers.autoscaling"),
    ("create", "configmaps"), ("patch", "services"), ("patch", "horizontalpodautoscalers.autoscaling"),
    ("create", "events"), ("get", "secrets"), ("create", "jobs.batch"), ("delete", "jobs.batch"),
]  # fmt: skip
DENIED = [
    ("list", "secrets"), ("watch", "secrets"), ("create", "secrets"), ("delete", "inferencepipelines.kinfer.io"),
    ("create", "inferencepipelines.kinfer.io"), ("create", "pods"), ("delete", "pods"), ("get", "pods"),
    ("create", "pods#exec"), ("watch", "deployments.apps"), ("deletecollection", "deployments.apps"),
    ("create", "serviceaccounts#token"), ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"), ("patch", "persistentvolumeclaims"),
    ("delete", "namespaces"), ("create", "cronjobs.batch"), ("watch", "jobs.batch"),
    ("patch", "scaledobjects.keda.sh"),
    ("create", "kafkaconnectors.kafka.strimzi.io"),
]  # fmt: skip


def test_cluster_mode_service_account_can_only_do_what_the_operator_needs(
    testbed: TestBed, cluster_release: Release
) -> None:
    who = cluster_release.service_account
    for verb, resource in ALLOWED:
        assert can_i(testbed, who, verb, resource, "default"), f"cannot {verb} {resource}"
        assert can_i(testbed, who, verb, resource), f"cannot {verb} {resource} in all namespaces"
    for verb, resource in DENIED:
        assert not can_i(testbed, who, verb, resource, "default"), f"can {verb} {resource}"
    # Cluster-scoped: its peering object only; nothing of RBAC, CRDs, nodes, APIServices or impersonation.
    assert can_i(testbed, who, "patch", "clusterkopfpeerings.kopf.dev")
    for verb, resource in [
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("patch", "customresourcedefinitions.apiextensions.k8s.io"), ("patch", "apiservices.apiregistration.k8s.io"),
        ("get", "nodes"), ("impersonate", "users"), ("impersonate", "serviceaccounts"), ("list", "namespaces"),
    ]:  # fmt: skip
        assert not can_i(testbed, who, verb, resource, None), f"can {verb} {resource}"
    # Auth delegation of the external metrics API server.
    assert can_i(testbed, who, "create", "subjectaccessreviews.authorization.k8s.io", None)
    assert can_i(testbed, who, "create", "tokenreviews.authentication.k8s.io", None)
    assert can_i(testbed, who, "get", "configmaps/extension-apiserver-authentication", "kube-system")
    # The HPA controller reads every metric the operator serves through its built-in role (the chart grants
    # nothing for it); other identities are refused. Asked as the operator's metrics API asks, with a
    # SubjectAccessReview (kubectl can-i cannot name a resource of an API group whose server is not up).
    from kinfer_operator.autoscaling.scalers import METRIC_NAMES

    hpa = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
    for metric in METRIC_NAMES:
        assert metrics_access(testbed, hpa, metric), metric
        assert not metrics_access(testbed, "system:serviceaccount:default:default", metric), metric


def test_namespaced_mode_grants_nothing_outside_the_watched_namespace(
    testbed: TestBed, namespaced_release: tuple[Release, str, str]
) -> None:
    release, watched, other = namespaced_release
    who = release.service_account
    for verb, resource in ALLOWED:
        assert can_i(testbed, who, verb, resource, watched), f"cannot {verb} {resource} in {watched}"
        assert not can_i(testbed, who, verb, resource, other), f"can {verb} {resource} in {other}"
    assert not can_i(testbed, who, "list", "inferencepipelines.kinfer.io")  # not cluster-wide
    assert can_i(testbed, who, "patch", "kopfpeerings.kopf.dev", watched)
    assert not can_i(testbed, who, "list", "clusterkopfpeerings.kopf.dev", None)
    assert not can_i(testbed, who, "create", "subjectaccessreviews.authorization.k8s.io", None)
    assert not can_i(testbed, who, "get", "configmaps/extension-apiserver-authentication", "kube-system")


def sample_pipeline(bootstrap: str, namespace: str, suffix: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((REPO_ROOT / "crds" / "samples" / "fraud-embedded.yaml").read_text())
    manifest["metadata"]["namespace"] = namespace
    spec = manifest["spec"]
    spec["kafka"]["bootstrapServers"] = bootstrap
    for topic in spec["topics"].values():  # the broker is shared: topics of this test only
        topic["name"] = f"{topic['name']}-{suffix}"
    return manifest


def make_bound_claim(bed: TestBed, namespace: str, claim: str) -> None:
    """The sample's model claim, bound to a hostPath volume, so kwok can schedule the consumer pods."""
    volume = f"{namespace}-{claim}"
    objects = [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"], "storageClassName": "",
                  "hostPath": {"path": f"/tmp/{volume}"}, "claimRef": {"namespace": namespace, "name": claim}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": namespace},
         "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}},
                  "storageClassName": "", "volumeName": volume}},
    ]  # fmt: skip
    bed.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


def ready_condition(bed: TestBed, namespace: str, name: str) -> dict[str, Any] | None:
    obj = kubectl_json(bed, "get", "inferencepipeline", name, "-n", namespace)
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return dict(condition)
    return None


def test_operator_with_the_chart_identity_reconciles_a_sample(
    testbed: TestBed, namespaced_release: tuple[Release, str, str], tmp_path: Path
) -> None:
    release, watched, _ = namespaced_release
    kubeconfig = service_account_kubeconfig(testbed, release, tmp_path / "kubeconfig")
    command, chart_env = operator_command_from_chart(testbed, release, tmp_path)
    assert command[:2] == ["kinfer", "operator"] and f"--namespace={watched}" in command
    env = {**testbed.env, **chart_env, "KUBECONFIG": str(kubeconfig)}
    kinfer = str(Path(sys.executable).parent / "kinfer")
    suffix = uuid.uuid4().hex[:6]
    manifest = sample_pipeline(testbed.bootstrap_servers, watched, suffix)
    claim = manifest["spec"]["model"]["uri"].removeprefix("pvc://").split("/")[0]
    make_bound_claim(testbed, watched, claim)
    log = tmp_path / "operator.log"
    with running([kinfer, *command[1:]], env, log) as process:
        testbed.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        name = manifest["metadata"]["name"]

        def ready() -> bool:
            assert process.poll() is None, f"operator exited:\n{log.read_text()[-3000:]}"
            condition = ready_condition(testbed, watched, name)
            return bool(condition and condition["status"] == "True")

        try:
            wait_for(ready, 150, f"pipeline {name} Ready under the chart's ServiceAccount")
        except AssertionError:
            print(log.read_text()[-5000:], ready_condition(testbed, watched, name))
            raise
        for kind, child in [
            ("deployment", f"{name}-consumer"), ("configmap", f"{name}-runtime"), ("service", f"{name}-metrics"),
        ]:  # fmt: skip
            obj = kubectl_json(testbed, "get", kind, child, "-n", watched)
            assert obj is not None, f"{kind} {child} missing"
            assert obj["metadata"]["ownerReferences"][0]["name"] == name

        # Autoscaling on creates the HPA; off again prunes it (list by label + delete under these rules).
        def autoscaling(enabled: bool) -> None:
            patch = {"spec": {"autoscaling": {"enabled": enabled}}}
            testbed.kubectl("patch", "inferencepipeline", name, "-n", watched, "--type=merge", "-p", json.dumps(patch))

        def hpa() -> dict[str, Any] | None:
            return kubectl_json(testbed, "get", "hpa", f"{name}-consumer", "-n", watched)

        autoscaling(True)
        wait_for(hpa, 90, "the consumer HPA")
        autoscaling(False)
        wait_for(lambda: hpa() is None, 90, "the HPA pruned once autoscaling is off")
        # The peering object shows this operator as a live peer: peering works with these rules.
        peering = kubectl_json(testbed, "get", "kopfpeering", f"kinfer-{release.name.split('-')[-1]}", "-n", watched)
        assert peering is not None and peering.get("status"), peering
        testbed.kubectl("delete", "inferencepipeline", name, "-n", watched, "--wait=false")
        wait_for(
            lambda: kubectl_json(testbed, "get", "inferencepipeline", name, "-n", watched) is None,
            90, "pipeline deletion (finalizer removed by the operator)",
        )  # fmt: skip
    # No refusal at all: with exact --namespace names the operator turns kopf's cluster scanning (listing
    # namespaces and CRDs, which this identity may not do) off, and a refused prune list is logged.
    refusals = [line for line in log.read_text().splitlines() if "Forbidden" in line or " 403" in line]
    assert not refusals, "RBAC refusals in the operator log:\n" + "\n".join(refusals[:20])
    assert "Not enough permissions" not in log.read_text(), "kopf fell back after a refused scan"


def test_upgrade_updates_the_crd_and_keeps_the_certificate(
    testbed: TestBed, cluster_release: Release, tmp_path: Path
) -> None:
    r = cluster_release
    secret_before = kubectl_json(testbed, "get", "secret", f"{r.fullname}-metrics-api-tls", "-n", r.namespace)
    chart = tmp_path / "kinfer-operator"
    shutil.copytree(CHART, chart)
    crd_file = chart / "files" / "crds" / "kinfer.io_inferencepipelines.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    columns = crd["spec"]["versions"][0].setdefault("additionalPrinterColumns", [])
    columns.append({"name": "UpgradeProbe", "type": "string", "jsonPath": ".spec.model.name"})
    crd_file.write_text(yaml.safe_dump(copy.deepcopy(crd)))
    install(testbed, r, chart, upgrade=True)
    live = kubectl_json(testbed, "get", "crd", CRD_NAME)
    assert live is not None
    names = [c["name"] for c in live["spec"]["versions"][0].get("additionalPrinterColumns", [])]
    assert "UpgradeProbe" in names, names
    secret_after = kubectl_json(testbed, "get", "secret", f"{r.fullname}-metrics-api-tls", "-n", r.namespace)
    assert secret_before is not None and secret_after is not None
    assert secret_after["data"] == secret_before["data"], "helm upgrade must not rotate the serving certificate"
    install(testbed, r, CHART, upgrade=True)  # back to the committed chart
    live = kubectl_json(testbed, "get", "crd", CRD_NAME)
    assert live is not None
    assert "UpgradeProbe" not in [c["name"] for c in live["spec"]["versions"][0].get("additionalPrinterColumns", [])]


def test_uninstall_keeps_the_crd_and_removes_the_rest(testbed: TestBed, cluster_release: Release) -> None:
    r = cluster_release
    testbed.helm("uninstall", r.name, "-n", r.namespace, "--wait")
    assert kubectl_json(testbed, "get", "crd", CRD_NAME) is not None, "the CRD (and every pipeline) must survive"
    assert kubectl_json(testbed, "get", "clusterrole", r.fullname) is None
    assert kubectl_json(testbed, "get", "deployment", r.fullname, "-n", r.namespace) is None
    assert kubectl_json(testbed, "get", "apiservice", APISERVICE) is None


def peering_state(log: str) -> str | None:
    """The operator's latest kopf peering decision in its log: "active", "paused", or None (none yet)."""
    state = None
    for line in log.splitlines():
        if "Resuming operations after the pause" in line:
            state = "active"
        elif "Pausing operations in favour of" in line:
            state = "paused"
    return state


def peering_priority(log: str) -> int:
    """The priority the operator logged at start (its log lines are JSON objects)."""
    (message,) = [
        entry["message"]
        for entry in (json.loads(line) for line in log.splitlines() if line.startswith("{"))
        if entry.get("logger") == "kinfer_operator" and entry.get("message", "").startswith("peering priority")
    ]
    return int(message.split()[-1])


def test_two_operator_replicas_one_active_and_a_standby_takes_over(
    testbed: TestBed, namespaced_release: tuple[Release, str, str], tmp_path: Path
) -> None:
    """replicaCount: 2 with the chart's arguments: kopf peering lets one pod reconcile; when it dies, the other
    takes over. kopf pauses *every* operator that sees a peer of the same priority, so the operator must give each
    process a distinct priority (`kinfer operator --priority`, random by default under --peering)."""
    kinfer = str(Path(sys.executable).parent / "kinfer")
    release, watched, _ = namespaced_release
    kubeconfig = service_account_kubeconfig(testbed, release, tmp_path / "kubeconfig")
    env = {**testbed.env, "KUBECONFIG": str(kubeconfig)}
    manifest = sample_pipeline(testbed.bootstrap_servers, watched, uuid.uuid4().hex[:6])
    manifest["metadata"]["name"] = "fraud-peered"
    claim = manifest["spec"]["model"]["uri"].removeprefix("pvc://").split("/")[0]
    make_bound_claim(testbed, watched, claim)
    name = manifest["metadata"]["name"]

    def observed(generation: int) -> bool:
        obj = kubectl_json(testbed, "get", "inferencepipeline", name, "-n", watched) or {}
        return ((obj.get("status") or {}).get("observedGeneration") or 0) >= generation

    first_command, chart_env = operator_command_from_chart(testbed, release, tmp_path)
    second_command, _ = operator_command_from_chart(testbed, release, tmp_path)  # its own free ports
    with (
        running([kinfer, *first_command[1:]], {**env, **chart_env}, tmp_path / "first.log") as first,
        running([kinfer, *second_command[1:]], {**env, **chart_env}, tmp_path / "second.log") as second,
    ):
        logs = {first: tmp_path / "first.log", second: tmp_path / "second.log"}

        def settled() -> bool:
            # With mandatory peering kopf starts paused and logs only changes: the highest priority logs that it
            # resumed; the other logs nothing if it saw that peer on its first look (it stays paused) or
            # "resumed, then paused" if it looked before the peer had written its entry.
            assert first.poll() is None and second.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
            texts = {p: log.read_text() for p, log in logs.items()}
            if not all("peering priority" in text for text in texts.values()):
                return False
            highest = max(texts, key=lambda p: peering_priority(texts[p]))
            (other,) = [p for p in texts if p is not highest]
            return peering_state(texts[highest]) == "active" and peering_state(texts[other]) != "active"

        wait_for(settled, 120, "two peered operators, the higher priority one active")
        testbed.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        wait_for(lambda: observed(1), 180, "one of two peered operators to reconcile")
        active = [p for p, log in logs.items() if "Handler 'reconcile' succeeded" in log.read_text()]
        assert len(active) == 1, "exactly one replica reconciles"
        (leader,) = active
        priorities = {p: peering_priority(log.read_text()) for p, log in logs.items()}
        assert priorities[leader] == max(priorities.values()), f"the highest priority is active: {priorities}"
        leader.kill()
        leader.wait(30)
        testbed.kubectl("patch", "inferencepipeline", name, "-n", watched, "--type=merge",
                        "-p", json.dumps({"spec": {"consumer": {"maxBatchSize": 128}}}))  # fmt: skip
        wait_for(lambda: observed(2), 180, "the standby replica to take over after the active one died")
        testbed.kubectl("delete", "inferencepipeline", name, "-n", watched, "--wait=false")
        wait_for(
            lambda: kubectl_json(testbed, "get", "inferencepipeline", name, "-n", watched) is None,
            90, "pipeline deletion by the remaining replica",
        )  # fmt: skip
