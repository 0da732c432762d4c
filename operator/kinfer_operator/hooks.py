"""The seams where autoscaling (engineer A) and ingestion (engineer I) plug into the one reconcile.

The reconcile (``kinfer_operator.reconcile``) calls, once per pass and after topics and Deployments are
settled, two *pure* functions if their modules exist:

* ``kinfer_operator.autoscaling.plan.desired_autoscaler(context: AutoscalerContext) -> AutoscalerPlan``
* ``kinfer_operator.connect.sync.desired_connectors(context: ConnectorContext) -> ConnectorPlan``

The plan's ``manifests`` are applied like every other child (owner reference and spec-hash added by the caller
when missing, written only on a change); the condition goes into status as it is. When a module is absent
the fallbacks below apply, so the operator works (without those features) before they land.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kinfer_operator.status.conditions import Condition
from kinfer_runtime.spec import InferencePipeline

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoscalerContext:
    """What the reconcile knows when it asks for the autoscaler's children."""

    pipeline: InferencePipeline
    uid: str
    partitions: int | None  # partitions of the input topic (None while topics are not ready)
    consumer_replicas: int | None  # live consumer Deployment's spec.replicas (None before it exists)
    consumer_ready_replicas: int
    serving_ready: bool  # TF Serving Ready (always True in embedded mode)
    status: dict[str, Any]  # the pipeline's current status (A's own ``status.autoscaling`` is in it)


@dataclass(frozen=True)
class AutoscalerPlan:
    """What the autoscaler wants.

    ``consumer_replicas``: None = the operator leaves the consumer Deployment's replicas alone (an HPA or KEDA
    owns them); an int = the operator sets it (fixed size, or 0 when scaled to zero).
    ``tfserving_replicas``: the same for the TF Serving Deployment.
    ``status``: merged into ``status.autoscaling``; ``lag``: total lag for ``status.lag`` (None = unknown).
    """

    manifests: list[dict[str, Any]]
    condition: Condition
    consumer_replicas: int | None
    tfserving_replicas: int | None = None
    status: dict[str, Any] = field(default_factory=dict)
    lag: int | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type Normal|Warning, reason, message)


@dataclass(frozen=True)
class ConnectorContext:
    pipeline: InferencePipeline
    uid: str
    kube: Any = None  # kinfer_operator.k8s.client.Kube: for plug-ins that must read live objects (Strimzi CRDs)


@dataclass(frozen=True)
class ConnectorPlan:
    manifests: list[dict[str, Any]]
    condition: Condition | None = None


def fixed_size_autoscaler(context: AutoscalerContext) -> AutoscalerPlan:
    """Fallback while no autoscaler module is installed: replicas from the spec, no HPA."""
    spec = context.pipeline.spec
    tfserving = spec.serving.tfserving.replicas
    if spec.autoscaling.enabled:
        condition = Condition("AutoscalingReady", "False", "NotAvailable", "this operator build has no autoscaler")
    else:
        condition = Condition("AutoscalingReady", "True", "Disabled", "fixed size: spec.consumer.replicas")
    return AutoscalerPlan(
        manifests=[], condition=condition, consumer_replicas=spec.consumer.replicas, tfserving_replicas=tfserving
    )


def no_connectors(context: ConnectorContext) -> ConnectorPlan:
    return ConnectorPlan(manifests=[])


def _load(module: str, attribute: str) -> Callable[..., Any] | None:
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is not None and module.startswith(error.name):
            return None
        raise
    hook = getattr(loaded, attribute, None)
    return hook if callable(hook) else None


def autoscaler_hook() -> Callable[[AutoscalerContext], AutoscalerPlan]:
    hook = _load("kinfer_operator.autoscaling.plan", "desired_autoscaler")
    return hook or fixed_size_autoscaler


def connector_hook() -> Callable[[ConnectorContext], ConnectorPlan]:
    hook = _load("kinfer_operator.connect.sync", "desired_connectors")
    return hook or no_connectors
