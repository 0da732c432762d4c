"""Applying a pipeline's children and pruning the ones it no longer wants: the reconcile's writes.

Every child is applied on its own: a child the API refuses (e.g. a ScaledObject without KEDA installed) doesn't
stop the others, and becomes a condition rather than an exception (kopf would otherwise retry the whole pass in a
loop). Only children that carry this pipeline's owner reference are ever pruned.
"""

from __future__ import annotations

import logging
from typing import Any

from kinfer_operator.builders import naming
from kinfer_operator.builders.manifests import spec_hash_of
from kinfer_operator.k8s.client import Kube, KubeError, apply_child, get_child, object_path, path_of
from kinfer_operator.status.document import Event
from kinfer_operator.status.reasons import ConditionType

logger = logging.getLogger(__name__)


PRUNABLE_KINDS = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("batch/v1", "Job"),
)
# Deleting a Job through the API orphans its pods unless the propagation policy says otherwise.
_DELETE_DEPENDENTS = [("propagationPolicy", "Background")]
# Kinds the operator may lack access to unless it makes them: the chart grants ScaledObjects only with rbac.keda,
# NetworkPolicies only with networkPolicy.enabled (the operator's --network-policies).
OPT_IN_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("networking.k8s.io/v1", "NetworkPolicy")}


def prune_children(
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
            # child would stay. An opt-in kind this pipeline doesn't use is refused by design (OPT_IN_KINDS).
            optional = (api_version, kind) in OPT_IN_KINDS and (api_version, kind) not in wanted_kinds
            if error.status != 404:
                log = logger.debug if optional and error.status == 403 else logger.warning
                log("cannot list %s in %s to prune pipeline %s's old children: %s", kind, namespace, name, error)
            continue
        for item in (listed or {}).get("items", []):
            item_name = item["metadata"]["name"]
            owned = any(ref.get("uid") == uid for ref in item["metadata"].get("ownerReferences") or [])
            if owned and (api_version, kind, item_name) not in wanted:
                kube.request("DELETE", object_path(api_version, kind, namespace, item_name), query=_DELETE_DEPENDENTS)
                pruned[f"{kind}/{item_name}"] = "deleted"
    if pruned:
        events.append(Event("Normal", "Pruned", f"deleted {', '.join(sorted(pruned))} (no longer in the spec)"))
    return pruned


_AUTOSCALER_KINDS = {"HorizontalPodAutoscaler", "ScaledObject"}


BATCH_RUNS = "BatchRuns"  # not a condition: a Job that cannot be applied is reported in its run's status entry


def condition_for(child: dict[str, Any]) -> str:
    """Which part condition reports a failure to apply this child (a batch Job: its run's status entry)."""
    if child["kind"] == "Job":
        return f"{BATCH_RUNS}/{child['metadata']['name']}"
    if child["kind"] in _AUTOSCALER_KINDS:
        return ConditionType.AUTOSCALING_READY
    component = (child["metadata"].get("labels") or {}).get(naming.LABEL_COMPONENT)
    return ConditionType.SERVING_READY if component == naming.COMPONENT_TFSERVING else ConditionType.CONSUMERS_READY


_IMMUTABLE_FIELD = "may not change once set"


def must_recreate(error: KubeError, desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """Whether a refused apply is a Service field that is fixed once set (``clusterIP``: a Service made by an
    earlier version with a cluster IP, now wanted headless) on a Service this pipeline owns.

    Only deleting and creating it again makes the change; anything not owned by the pipeline is never deleted.
    """
    if error.status != 422 or _IMMUTABLE_FIELD not in str(error) or desired["kind"] != "Service" or live is None:
        return False
    owners = {ref.get("uid") for ref in desired["metadata"].get("ownerReferences") or []}
    live_owners = {ref.get("uid") for ref in live["metadata"].get("ownerReferences") or []}
    return bool(owners & live_owners - {None})


def keep_or_replace_job(kube: Kube, desired: dict[str, Any], live: dict[str, Any]) -> str:
    """A Job is never patched (its template is fixed, and a finished run must stay finished): one with the desired
    spec-hash is left alone; one of a changed entry is deleted with its pods, and the next pass creates it anew.
    A Job with this name that the pipeline does not own is left alone (the apply fails and says so)."""
    if spec_hash_of(live) == spec_hash_of(desired):
        return "unchanged"
    owners = {ref.get("uid") for ref in desired["metadata"].get("ownerReferences") or []}
    if not owners & {ref.get("uid") for ref in live["metadata"].get("ownerReferences") or []}:
        raise KubeError(409, "a Job of that name exists and is not this pipeline's; rename the batch run")
    if not live["metadata"].get("deletionTimestamp"):
        kube.request("DELETE", path_of(desired), query=_DELETE_DEPENDENTS)
    return "replaced"


def apply_children(
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
            if desired["kind"] == "Job" and live is not None:
                result = keep_or_replace_job(kube, desired, live)
                if result != "unchanged":
                    applied[f"Job/{name}"] = result
                continue
            try:
                result = apply_child(kube, desired, live, replicas=initial.get(name))
            except KubeError as error:
                if not must_recreate(error, desired, live):
                    raise
                kube.request("DELETE", path_of(desired))
                apply_child(kube, desired, None, replicas=initial.get(name))
                result = "recreated"
        except KubeError as error:
            kind = condition_for(desired)
            reason = str(error)
            if error.status == 404:
                reason = f"{desired['apiVersion']} is not served by this cluster (is its CRD installed?)"
            failed[kind] = "; ".join(filter(None, [failed.get(kind), f"{desired['kind']} {name}: {reason}"]))
            continue
        if result == "updated" and spec_hash_of(live or {}) == spec_hash_of(desired):
            result = "restored"  # same spec-hash, different fields: edited by hand
        if result != "unchanged":
            applied[f"{desired['kind']}/{name}"] = result
    created = sorted(key for key, result in applied.items() if result in ("created", "recreated"))
    restored = sorted(key for key, result in applied.items() if result == "restored")
    replaced = sorted(key for key, result in applied.items() if result == "replaced")
    updated = sorted(key for key, result in applied.items() if result == "updated")
    if created:
        events.append(Event("Normal", "Created", f"created {', '.join(created)}"))
    if updated:
        events.append(Event("Normal", "Updated", f"updated {', '.join(updated)}"))
    if replaced:
        events.append(Event("Normal", "Replaced", f"deleted {', '.join(replaced)} to run its changed entry again"))
    if restored:
        events.append(Event("Warning", "DriftCorrected", f"restored {', '.join(restored)} (changed outside kinfer)"))
    return applied, failed
