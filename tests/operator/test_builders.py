"""Pure child builders: what each manifest holds, and that equal input gives an equal spec-hash."""

from __future__ import annotations

from typing import Any

import yaml

from kinfer_operator.builders import naming
from kinfer_operator.builders.consumer import build_consumer_deployment, build_metrics_service, build_runtime_configmap
from kinfer_operator.builders.desired import adopt, desired_children
from kinfer_operator.builders.manifests import spec_hash_of
from kinfer_operator.builders.naming import DEFAULT_RUNTIME_IMAGE
from kinfer_operator.builders.tfserving import (
    batching_config_text,
    build_tfserving_deployment,
    build_tfserving_service,
    models_config_text,
)
from tests.operator.pipelines import FRAUD, SENSOR, owner, pipeline


def _kinds(children: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["kind"], c["metadata"]["name"]) for c in children]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_embedded_children_and_order() -> None:
    p = pipeline(FRAUD)
    children = desired_children(p, owner(p), 2, None)
    assert _kinds(children) == [
        ("ConfigMap", "fraud-runtime"),
        ("Deployment", "fraud-consumer"),
        ("Service", "fraud-metrics"),
    ]
    for c in children:
        assert c["metadata"]["namespace"] == "ns1"
        assert c["metadata"]["ownerReferences"][0]["uid"] == "uid-1234"
        assert c["metadata"]["ownerReferences"][0]["controller"] is True
        assert c["metadata"]["labels"][naming.LABEL_PIPELINE] == "fraud"
        assert c["metadata"]["labels"][naming.LABEL_MANAGED_BY] == "kinfer"
        assert spec_hash_of(c)


def test_tfserving_children() -> None:
    p = pipeline(SENSOR)
    children = desired_children(p, owner(p), 1, 2)
    assert _kinds(children)[:3] == [
        ("ConfigMap", "sensor-anomaly-tfserving-config"),
        ("Deployment", "sensor-anomaly-tfserving"),
        ("Service", "sensor-anomaly-tfserving"),
    ]
    external = pipeline(SENSOR, serving={"tfserving": {"endpoint": "tfs.example:8500"}})
    assert all("tfserving" not in c["metadata"]["name"] for c in desired_children(external, owner(external), 1, 1))


def test_runtime_configmap_holds_the_whole_manifest_with_defaults() -> None:
    p = pipeline(FRAUD)
    document = yaml.safe_load(build_runtime_configmap(p, owner(p))["data"]["pipeline.yaml"])
    assert document["apiVersion"] == "kinfer.io/v1alpha1" and document["kind"] == "InferencePipeline"
    assert document["metadata"] == {"name": "fraud", "namespace": "ns1"}
    assert document["spec"]["consumer"]["maxAttempts"] == 3  # a default the sample doesn't set
    assert document["spec"]["topics"]["input"]["name"] == "transactions"


def test_secrets_are_mounted_never_copied() -> None:
    p = pipeline(
        FRAUD,
        kafka={
            "securityProtocol": "SASL_SSL",
            "sasl": {"mechanism": "SCRAM-SHA-512", "secretName": "kafka-user"},
            "tls": {"secretName": "kafka-ca"},
        },
    )
    config_text = build_runtime_configmap(p, owner(p))["data"]["pipeline.yaml"]
    assert "kafka-user" in config_text  # the reference, not the values (which the operator never reads here)
    deployment = build_consumer_deployment(p, owner(p), 1, "h")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-sasl"]["secret"]["secretName"] == "kafka-user"
    assert [i["key"] for i in volumes["kafka-sasl"]["secret"]["items"]] == ["username", "password"]
    assert volumes["kafka-tls"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    env = {e["name"]: e for e in _container(deployment)["env"]}
    assert env["KINFER_SASL_DIR"]["value"] == naming.SASL_DIR and env["KINFER_TLS_DIR"]["value"] == naming.TLS_DIR
    assert not any("secretKeyRef" in str(e) for e in env.values())


def test_consumer_deployment_runtime_contract_and_hardening() -> None:
    p = pipeline(FRAUD, consumer={"terminationGraceSeconds": 90}, monitoring={"metricsPort": 9500})
    deployment = build_consumer_deployment(p, owner(p), 3, "cfg")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert deployment["spec"]["replicas"] == 3
    assert container["command"] == ["kinfer", "run", "/etc/kinfer/pipeline.yaml"]
    assert container["image"] == "ghcr.io/kinfer/runtime:0.1.0"
    env = {e["name"]: e for e in container["env"]}
    assert env["KINFER_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9500, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] == 90
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/kinfer", "/tmp", "/mnt/models"} <= mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert "initContainers" not in pod
    assert deployment["spec"]["template"]["metadata"]["annotations"][naming.ANNOTATION_CONFIG_HASH] == "cfg"


def test_object_storage_model_gets_an_init_container() -> None:
    p = pipeline(SENSOR)
    pod = build_consumer_deployment(p, owner(p), 1, "h")["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["command"][-2:] == ["s3://kinfer-models/sensor-anomaly", "/mnt/models/sensor-anomaly"]
    assert init["envFrom"] == [{"secretRef": {"name": "model-store"}}]
    assert {"name": "model", "emptyDir": {}} in pod["volumes"]
    gs = pipeline(SENSOR, model={"uri": "gs://bucket/m", "storageSecret": None})
    init = build_consumer_deployment(gs, owner(gs), 1, "h")["spec"]["template"]["spec"]["initContainers"][0]
    assert "gs://bucket/m" in init["command"] and "envFrom" not in init
    in_image = pipeline(FRAUD, model={"uri": "/models/fraud"})
    pod = build_consumer_deployment(in_image, owner(in_image), 1, "h")["spec"]["template"]["spec"]
    assert "initContainers" not in pod and all(v["name"] != "model" for v in pod["volumes"])


def test_tfserving_mode_points_consumers_at_the_service() -> None:
    p = pipeline(SENSOR)
    env = {e["name"]: e.get("value") for e in _container(build_consumer_deployment(p, owner(p), 1, "h"))["env"]}
    assert env["KINFER_TFSERVING_ENDPOINT"] == "sensor-anomaly-tfserving.ns1.svc:8500"


def test_tfserving_service_is_headless_for_client_side_balancing() -> None:
    """The consumers balance over the pods the name resolves to; behind a cluster IP one connection sticks to one
    pod. The name and ports stay as they were, so the consumers' endpoint does not change."""
    p = pipeline(SENSOR, serving={"tfserving": {"grpcPort": 9000, "restPort": 9001}})
    service = build_tfserving_service(p, owner(p))
    assert service["metadata"]["name"] == "sensor-anomaly-tfserving"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {
        naming.LABEL_PIPELINE: "sensor-anomaly",
        naming.LABEL_COMPONENT: naming.COMPONENT_TFSERVING,
    }
    assert [(port["name"], port["port"], port["targetPort"]) for port in service["spec"]["ports"]] == [
        ("grpc", 9000, "grpc"),
        ("http", 9001, "http"),
    ]
    assert service["spec"]["ports"][0]["appProtocol"] == "grpc"
    assert p.tfserving_address == "sensor-anomaly-tfserving.ns1.svc:9000"


def test_tfserving_config_and_deployment() -> None:
    p = pipeline(SENSOR)
    models = models_config_text(p)
    assert 'name: "sensor-anomaly"' in models and 'base_path: "/mnt/models/sensor-anomaly"' in models
    assert "specific { versions: 1 }" in models
    latest = pipeline(SENSOR, model={"versionPolicy": "Latest", "version": None})
    assert "latest { num_versions: 1 }" in models_config_text(latest)
    batching = batching_config_text(p)
    assert "max_batch_size { value: 512 }" in batching and "batch_timeout_micros { value: 2000 }" in batching
    deployment = build_tfserving_deployment(p, owner(p), 2, "h")
    container = _container(deployment)
    assert deployment["spec"]["replicas"] == 2
    assert "--enable_batching=true" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/sensor-anomaly/versions/1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    no_batching = pipeline(SENSOR, serving={"tfserving": {"batching": {"enabled": False}}})
    assert not any(
        "batching" in a for a in _container(build_tfserving_deployment(no_batching, owner(p), 1, "h"))["args"]
    )


def test_spec_hash_is_stable_and_sensitive() -> None:
    p = pipeline(FRAUD)
    first = desired_children(p, owner(p), 2, None)
    again = desired_children(pipeline(FRAUD), owner(p), 2, None)
    assert [spec_hash_of(c) for c in first] == [spec_hash_of(c) for c in again]
    bigger_batch = pipeline(FRAUD, consumer={"maxBatchSize": 512})
    changed = desired_children(bigger_batch, owner(p), 2, None)
    assert spec_hash_of(changed[0]) != spec_hash_of(first[0])  # the ConfigMap
    assert spec_hash_of(changed[1]) != spec_hash_of(first[1])  # the Deployment rolls (config-hash)
    assert spec_hash_of(changed[2]) == spec_hash_of(first[2])  # the Service is untouched


def test_autoscaler_owned_replicas_are_not_in_the_manifest_or_hash() -> None:
    p = pipeline(FRAUD)
    a = build_consumer_deployment(p, owner(p), None, "h")
    assert "replicas" not in a["spec"]
    assert spec_hash_of(a) == spec_hash_of(build_consumer_deployment(p, owner(p), None, "h"))


def test_metrics_service_selects_consumers() -> None:
    p = pipeline(FRAUD)
    service = build_metrics_service(p, owner(p))
    assert service["spec"]["selector"] == {naming.LABEL_PIPELINE: "fraud", naming.LABEL_COMPONENT: "consumer"}
    assert service["spec"]["ports"][0]["port"] == 9400


def test_plugin_manifests_are_adopted() -> None:
    p = pipeline(FRAUD)
    hpa: dict[str, Any] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "fraud-consumer", "labels": {"extra": "yes"}},
        "spec": {"maxReplicas": 4},
    }
    adopted = adopt(hpa, owner(p))
    assert adopted["metadata"]["namespace"] == "ns1"
    assert adopted["metadata"]["ownerReferences"][0]["name"] == "fraud"
    assert adopted["metadata"]["labels"]["extra"] == "yes"
    assert adopted["metadata"]["labels"][naming.LABEL_PIPELINE] == "fraud"
    assert spec_hash_of(adopted)
    hpa["spec"]["maxReplicas"] = 5
    assert spec_hash_of(adopt(hpa, owner(p))) != spec_hash_of(adopted)
    children = desired_children(p, owner(p), None, None, extra=[hpa])
    assert children[-1]["kind"] == "HorizontalPodAutoscaler"


def test_only_runtime_relevant_changes_roll_the_consumers() -> None:
    p = pipeline(FRAUD)

    def template_hash(q: Any) -> str:
        deployment = desired_children(q, owner(q), 2, None)[1]
        annotations: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
        return annotations[naming.ANNOTATION_CONFIG_HASH]

    base = template_hash(p)
    assert template_hash(pipeline(FRAUD, consumer={"replicas": 5})) == base
    assert template_hash(pipeline(FRAUD, topics={"input": {"partitions": 12}})) == base
    assert template_hash(pipeline(FRAUD, autoscaling={"enabled": True})) == base
    assert template_hash(pipeline(FRAUD, model={"versionPolicy": "Pinned", "version": 2})) != base
    assert template_hash(pipeline(FRAUD, topics={"output": {"name": "elsewhere"}})) != base


def test_the_consumers_run_the_installed_runtime_image_unless_the_pipeline_names_one() -> None:
    p = pipeline(FRAUD)
    assert p.spec.consumer.image is None
    installed = "registry.example.com/kinfer/runtime:1.2.3"
    deployment = desired_children(p, owner(p), 1, None, runtime_image=installed)[1]
    assert _container(deployment)["image"] == installed
    assert _container(build_consumer_deployment(p, owner(p), 1, "h"))["image"] == DEFAULT_RUNTIME_IMAGE
    named = pipeline(FRAUD, consumer={"image": "mine/runtime:9"})
    assert _container(desired_children(named, owner(named), 1, None, runtime_image=installed)[1])["image"] == (
        "mine/runtime:9"
    )


def test_consumer_pods_go_where_the_placement_says() -> None:
    p = pipeline(
        FRAUD,
        consumer={
            "placement": {
                "nodeSelector": {"pool": "scoring"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kinfer", "effect": "NoSchedule"}],
            }
        },
    )
    pod = build_consumer_deployment(p, owner(p), 1, "h")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "scoring"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "kinfer", "effect": "NoSchedule"}]
    plain = build_consumer_deployment(pipeline(FRAUD), owner(p), 1, "h")["spec"]["template"]["spec"]
    assert "nodeSelector" not in plain and "tolerations" not in plain


def test_tfserving_pods_go_where_their_placement_says() -> None:
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    p = pipeline(SENSOR, serving={"tfserving": {"placement": {"nodeSelector": {"pool": "gpu"}, "tolerations": [gpu]}}})
    pod = build_tfserving_deployment(p, owner(p), 1, "h")["spec"]["template"]["spec"]
    assert (pod["nodeSelector"], pod["tolerations"]) == ({"pool": "gpu"}, [gpu])
    consumers = build_consumer_deployment(p, owner(p), 1, "h")["spec"]["template"]["spec"]
    assert "nodeSelector" not in consumers, "the consumers' placement is their own"


def test_a_changed_secret_version_rolls_the_consumers_and_no_value_is_hashed() -> None:
    p = pipeline(FRAUD)

    def template_hash(versions: dict[str, str] | None) -> str:
        children = desired_children(p, owner(p), 1, 1, secret_versions=versions)
        consumer = next(c for c in children if c["metadata"]["name"] == naming.consumer_name(p.metadata.name))
        return str(consumer["spec"]["template"]["metadata"]["annotations"][naming.ANNOTATION_CONFIG_HASH])

    assert template_hash({"kafka-login": "41"}) == template_hash({"kafka-login": "41"})
    assert template_hash({"kafka-login": "41"}) != template_hash({"kafka-login": "42"})
    assert template_hash(None) == template_hash({}), "no Secret mounted: the hash of the spec alone"
