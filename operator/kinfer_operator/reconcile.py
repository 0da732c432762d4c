"""The one level-based reconcile of an InferencePipeline, used by create, update, resume and the timer.

Each pass looks at the world, not at what changed: parse and preflight the spec (any problem → InvalidSpec,
nothing created or changed), bring the topics in line, ask the autoscaler and connector plug-ins for their
children, apply every child whose spec-hash or fields differ, and compute the status. A pass that finds
everything in place sends only GETs. It returns the status patch and Events; the kopf handler applies them.

Plug-ins (engineers A and I) — see ``kinfer_operator.hooks``: the pass calls
``kinfer_operator.autoscaling.plan.desired_autoscaler(AutoscalerContext) -> AutoscalerPlan`` and
``kinfer_operator.connect.sync.desired_connectors(ConnectorContext) -> ConnectorPlan`` when those modules exist;
their manifests are applied here (owner reference and spec-hash added), their conditions go into status.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Any

from kinfer_operator.builders import naming
from kinfer_operator.builders.consumer import tfserving_endpoint
from kinfer_operator.builders.desired import deploys_tfserving, desired_children
from kinfer_operator.builders.manifests import Owner, spec_hash_of
from kinfer_operator.builders.volumes import referenced_secrets, split_model_uri
from kinfer_operator.hooks import AutoscalerContext, ConnectorContext, autoscaler_hook, connector_hook
from kinfer_operator.k8s.client import Kube, KubeError, apply_child, get_child, object_path, secret_keys
from kinfer_operator.kafka.topic_sync import apply_topics, read_topics
from kinfer_operator.status import conditions
from kinfer_operator.status.conditions import Condition, deployment_state, workload_condition
from kinfer_operator.status.document import Event, Observed, build_status, condition_events, status_patch
from kinfer_operator.status.preflight import parse_or_problems, secret_problems, static_problems
from kinfer_runtime.spec import InferencePipeline, ServingMode

logger = logging.getLogger(__name__)
APPLY_FAILED = "ApplyFailed"


@dataclass
class Outcome:
    status_patch: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    applied: dict[str, str] = field(default_factory=dict)  # "Kind/name" → created | updated | restored
    invalid: bool = False


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reconcile(kube: Kube, body: dict[str, Any]) -> Outcome:
    meta, spec, previous = body["metadata"], body.get("spec") or {}, dict(body.get("status") or {})
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    generation = int(meta.get("generation") or 0)
    pipeline, problems = parse_or_problems(name, namespace, spec)
    if pipeline is not None:
        problems += static_problems(pipeline)
        needed = referenced_secrets(pipeline.spec.kafka, pipeline.spec.model)
        found = {secret: secret_keys(kube, namespace, secret) for secret in needed}
        problems += secret_problems(needed, found)

    topic_plan, topic_condition = None, None
    if pipeline is not None and not problems:
        topic_plan, topic_condition = read_topics(kube, pipeline, previous)
        if topic_plan is not None:
            problems += topic_plan.invalid
    if pipeline is None or problems:
        return _invalid(kube, body, pipeline, problems, previous, generation)

    events: list[Event] = []
    if topic_plan is not None:
        topic_condition = apply_topics(kube, pipeline, topic_plan, events)
    assert topic_condition is not None
    owner = Owner(name, namespace, uid)
    live_consumer = kube.request("GET", object_path("apps/v1", "Deployment", namespace, naming.consumer_name(name)))
    live_tfserving = None
    if deploys_tfserving(pipeline):
        path = object_path("apps/v1", "Deployment", namespace, naming.tfserving_name(name))
        live_tfserving = kube.request("GET", path)
    consumer_state, tfserving_state = deployment_state(live_consumer), deployment_state(live_tfserving)
    consumers = workload_condition(conditions.CONSUMERS_READY, naming.consumer_name(name), consumer_state)
    serving = _serving_condition(pipeline, tfserving_state)
    mounting = [consumers, serving] if deploys_tfserving(pipeline) else [consumers]
    if not all(c.is_true for c in mounting):  # an available workload needs no look at its claim (a GET a pass)
        missing_claim = _missing_model_claim(kube, pipeline)
        consumers = conditions.with_model_claim(consumers, missing_claim, namespace)
        if deploys_tfserving(pipeline):
            serving = conditions.with_model_claim(serving, missing_claim, namespace)
    partitions = (topic_plan.partitions if topic_plan else {}) or dict(previous.get("topics") or {})
    autoscaler = autoscaler_hook()(
        AutoscalerContext(
            pipeline=pipeline,
            uid=uid,
            partitions=partitions.get(pipeline.spec.topics.input.name),
            consumer_replicas=consumer_state.desired if consumer_state.exists else None,
            consumer_ready_replicas=consumer_state.available,
            serving_ready=serving.is_true,
            status=previous,
        )
    )
    connectors = connector_hook()(ConnectorContext(pipeline=pipeline, uid=uid, kube=kube))
    children = desired_children(
        pipeline,
        owner,
        autoscaler.consumer_replicas,
        autoscaler.tfserving_replicas,
        extra=autoscaler.manifests + connectors.manifests,
    )
    initial = {
        naming.consumer_name(name): pipeline.spec.autoscaling.min_replicas,
        naming.tfserving_name(name): pipeline.spec.serving.tfserving.replicas,
    }
    applied, failed = _apply_children(kube, children, initial, events)
    if generation != previous.get("observedGeneration"):  # only a spec change can make a child unwanted
        applied |= _prune(kube, namespace, name, uid, children, events)
    events += [Event(kind, reason, message) for kind, reason, message in autoscaler.events]

    parts = [
        topic_condition,
        consumers,
        serving,
        autoscaler.condition,
    ]
    if connectors.condition is not None:
        parts.append(connectors.condition)
    parts = [Condition(c.type, "False", APPLY_FAILED, failed[c.type]) if c.type in failed else c for c in parts]
    before = {c.get("type"): c.get("reason") for c in previous.get("conditions") or []}
    events += [
        Event("Warning", APPLY_FAILED, message) for kind, message in failed.items() if before.get(kind) != APPLY_FAILED
    ]  # once, not on every pass
    current = conditions.overall_conditions(parts, conditions.was_ready(previous.get("conditions") or []))
    observed = Observed(
        generation=generation,
        conditions=current,
        replicas=int((live_consumer or {}).get("status", {}).get("replicas") or 0),
        ready_replicas=consumer_state.available,
        partitions=partitions,
        input_topic=pipeline.spec.topics.input.name,
        lag=autoscaler.lag,
        serving_endpoint=tfserving_endpoint(pipeline) if pipeline.spec.serving.mode is ServingMode.TFSERVING else None,
        autoscaling=autoscaler.status or None,
    )
    status = build_status(previous, observed, pipeline, name, _now())
    events += condition_events(previous.get("conditions") or [], current)
    return Outcome(status_patch(previous, status), events, applied)


def _invalid(
    kube: Kube,
    body: dict[str, Any],
    pipeline: InferencePipeline | None,
    problems: list[str],
    previous: dict[str, Any],
    generation: int,
) -> Outcome:
    """InvalidSpec: create and change nothing; existing children keep running the last valid spec."""
    meta = body["metadata"]
    current = conditions.invalid_spec_conditions(problems)
    live = kube.request(
        "GET", object_path("apps/v1", "Deployment", meta["namespace"], naming.consumer_name(meta["name"]))
    )
    if live is not None:
        message = "the last valid spec keeps running until the spec is fixed"
        current = [
            c if c.type != conditions.DEGRADED else Condition(c.type, "True", conditions.INVALID_SPEC, message)
            for c in current
        ]
    observed = Observed(generation=generation, conditions=current)
    status = build_status(previous, observed, pipeline, meta["name"], _now())
    events = condition_events(previous.get("conditions") or [], current)
    return Outcome(status_patch(previous, status), events, invalid=True)


def _missing_model_claim(kube: Kube, pipeline: InferencePipeline) -> str | None:
    """The claim of a ``pvc://`` model when it does not exist; None when it does, or cannot be checked (an
    install without ``get`` on claims: the pods' events still tell)."""
    scheme, claim, _ = split_model_uri(pipeline.spec.model.uri)
    if scheme != "pvc":
        return None
    try:
        found = kube.request("GET", object_path("v1", "PersistentVolumeClaim", pipeline.metadata.namespace, claim))
    except KubeError as error:
        logger.debug("cannot check claim %s: %s", claim, error)
        return None
    return claim if found is None else None


def _serving_condition(pipeline: InferencePipeline, state: conditions.DeploymentState) -> Condition:
    kind = conditions.SERVING_READY
    if pipeline.spec.serving.mode is ServingMode.EMBEDDED:
        return Condition(kind, "True", "Embedded", "the model runs inside the consumer pods")
    if not deploys_tfserving(pipeline):
        return Condition(kind, "True", "ExternalEndpoint", f"TF Serving at {tfserving_endpoint(pipeline)}")
    return workload_condition(kind, naming.tfserving_name(pipeline.metadata.name), state)


PRUNABLE_KINDS = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
)
OPT_IN_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}  # the operator may lack access unless a pipeline uses it


def _prune(
    kube: Kube, namespace: str, name: str, uid: str, children: list[dict[str, Any]], events: list[Event]
) -> dict[str, str]:
    """Delete children this pipeline owns but no longer wants (tfserving → embedded, autoscaling turned off)."""
    wanted = {(c["apiVersion"], c["kind"], c["metadata"]["name"]) for c in children}
    wanted_kinds = {(c["apiVersion"], c["kind"]) for c in children}
    kinds = set(PRUNABLE_KINDS) | wanted_kinds
    selector = [("labelSelector", f"{naming.LABEL_PIPELINE}={name},{naming.LABEL_MANAGED_BY}=kinfer")]
    pruned: dict[str, str] = {}
    for api_version, kind in sorted(kinds):
        try:
            listed = kube.request("GET", object_path(api_version, kind, namespace), query=selector)
        except KubeError as error:
            # Never fatal (the pass still reports status), but a refusal must not go unnoticed: the stale
            # child would stay. An opt-in kind this pipeline doesn't use is refused by design (chart's rbac.keda).
            optional = (api_version, kind) in OPT_IN_KINDS and (api_version, kind) not in wanted_kinds
            if error.status != 404:
                log = logger.debug if optional and error.status == 403 else logger.warning
                log("cannot list %s in %s to prune pipeline %s's old children: %s", kind, namespace, name, error)
            continue
        for item in (listed or {}).get("items", []):
            item_name = item["metadata"]["name"]
            owned = any(ref.get("uid") == uid for ref in item["metadata"].get("ownerReferences") or [])
            if owned and (api_version, kind, item_name) not in wanted:
                kube.request("DELETE", object_path(api_version, kind, namespace, item_name))
                pruned[f"{kind}/{item_name}"] = "deleted"
    if pruned:
        events.append(Event("Normal", "Pruned", f"deleted {', '.join(sorted(pruned))} (no longer in the spec)"))
    return pruned


_AUTOSCALER_KINDS = {"HorizontalPodAutoscaler", "ScaledObject"}


def _condition_for(child: dict[str, Any]) -> str:
    """Which part condition reports a failure to apply this child."""
    if child["kind"] in _AUTOSCALER_KINDS:
        return conditions.AUTOSCALING_READY
    component = (child["metadata"].get("labels") or {}).get(naming.LABEL_COMPONENT)
    return conditions.SERVING_READY if component == naming.COMPONENT_TFSERVING else conditions.CONSUMERS_READY


def _apply_children(
    kube: Kube, children: list[dict[str, Any]], initial: dict[str, int], events: list[Event]
) -> tuple[dict[str, str], dict[str, str]]:
    """Apply every child; returns what changed, and failures by the condition that reports them.

    A child the API refuses (e.g. a ScaledObject without KEDA installed) doesn't stop the others, and it
    becomes a condition rather than an exception: kopf would otherwise retry the whole pass in a loop.
    """
    applied: dict[str, str] = {}
    failed: dict[str, str] = {}
    for desired in children:
        name = desired["metadata"]["name"]
        try:
            live = get_child(kube, desired)
            result = apply_child(kube, desired, live, replicas=initial.get(name))
        except KubeError as error:
            kind = _condition_for(desired)
            reason = str(error)
            if error.status == 404:
                reason = f"{desired['apiVersion']} is not served by this cluster (is its CRD installed?)"
            failed[kind] = "; ".join(filter(None, [failed.get(kind), f"{desired['kind']} {name}: {reason}"]))
            continue
        if result == "updated" and spec_hash_of(live or {}) == spec_hash_of(desired):
            result = "restored"  # same spec-hash, different fields: edited by hand
        if result != "unchanged":
            applied[f"{desired['kind']}/{name}"] = result
    created = sorted(key for key, result in applied.items() if result == "created")
    restored = sorted(key for key, result in applied.items() if result == "restored")
    updated = sorted(key for key, result in applied.items() if result == "updated")
    if created:
        events.append(Event("Normal", "Created", f"created {', '.join(created)}"))
    if updated:
        events.append(Event("Normal", "Updated", f"updated {', '.join(updated)}"))
    if restored:
        events.append(Event("Warning", "DriftCorrected", f"restored {', '.join(restored)} (changed outside kinfer)"))
    return applied, failed
