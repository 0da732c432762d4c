"""The complete desired set of children for one pipeline, from the spec and the autoscaler's plan (pure).

Order matters: NetworkPolicies first, so no pod of the pipeline runs before the policy that selects it;
ConfigMaps before the Deployments and batch Jobs that mount them, Services after. A first reconcile that is
interrupted leaves a prefix of this list, never a Deployment whose config doesn't exist yet.
"""

from __future__ import annotations

from typing import Any

from kinfer_operator.builders import naming
from kinfer_operator.builders.batch_jobs import build_batch_job
from kinfer_operator.builders.consumer import (
    build_consumer_deployment,
    build_metrics_service,
    build_runtime_configmap,
    rollout_hash,
)
from kinfer_operator.builders.manifests import Owner, child, content_hash
from kinfer_operator.builders.network_policy import NetworkPolicies, build_network_policies
from kinfer_operator.builders.tfserving import (
    build_tfserving_configmap,
    build_tfserving_deployment,
    build_tfserving_service,
    tfserving_config_hash,
)
from kinfer_runtime.spec import InferencePipeline


def desired_children(
    pipeline: InferencePipeline,
    owner: Owner,
    consumer_replicas: int | None,
    tfserving_replicas: int | None,
    extra: list[dict[str, Any]] | None = None,
    runtime_image: str = naming.DEFAULT_RUNTIME_IMAGE,
    network_policies: NetworkPolicies | None = None,
    secret_versions: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every child manifest the pipeline should have, in apply order. ``runtime_image``: the consumers' image
    when the pipeline names none; ``network_policies``: None unless the installation wants them (both are the
    operator's installation's choice); ``secret_versions``: resourceVersions of the Secrets the consumers mount
    (a change rolls them)."""
    children: list[dict[str, Any]] = []
    if network_policies is not None:
        children += build_network_policies(pipeline, owner, network_policies)
    if pipeline.spec.serving.deploys_tfserving:
        tf_config = build_tfserving_configmap(pipeline, owner)
        children += [
            tf_config,
            build_tfserving_deployment(pipeline, owner, tfserving_replicas, tfserving_config_hash(tf_config)),
            build_tfserving_service(pipeline, owner),
        ]
    runtime_config = build_runtime_configmap(pipeline, owner)
    consumer_hash = rollout_hash(pipeline, secret_versions)
    children += [
        runtime_config,
        build_consumer_deployment(pipeline, owner, consumer_replicas, consumer_hash, runtime_image),
        build_metrics_service(pipeline, owner),
    ]
    children += [adopt(manifest, owner) for manifest in extra or []]
    children += [build_batch_job(pipeline, owner, run, runtime_image) for run in pipeline.spec.batch]
    return children


def adopt(manifest: dict[str, Any], owner: Owner) -> dict[str, Any]:
    """A child from a plug-in (HPA, ScaledObject, connector) with our namespace, labels, owner and hash added.

    A plug-in's manifest that already carries a spec-hash is taken as it is.
    """
    metadata = manifest.get("metadata") or {}
    if naming.ANNOTATION_SPEC_HASH in (metadata.get("annotations") or {}):
        return manifest
    component = (metadata.get("labels") or {}).get(naming.LABEL_COMPONENT, manifest["kind"].lower())
    body = {key: value for key, value in manifest.items() if key not in ("apiVersion", "kind", "metadata")}
    built = child(
        manifest["apiVersion"],
        manifest["kind"],
        metadata["name"],
        owner,
        component,
        body,
        annotations=metadata.get("annotations"),
    )
    built["metadata"]["labels"].update(metadata.get("labels") or {})
    built["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH] = content_hash(
        {key: value for key, value in built.items() if key != "metadata"} | {"labels": built["metadata"]["labels"]}
    )
    return built
