"""The plug-in seams: fallbacks when a plug-in module is absent, and the installed plug-ins being found."""

from __future__ import annotations

from typing import Any

from kinfer_operator import hooks
from kinfer_operator.hooks import AutoscalerContext, ConnectorContext
from tests.operator.pipelines import FRAUD, pipeline


def _context(**changes: Any) -> AutoscalerContext:
    return AutoscalerContext(
        pipeline=pipeline(FRAUD, **changes),
        uid="u",
        partitions=6,
        consumer_replicas=2,
        consumer_ready_replicas=2,
        serving_ready=True,
        status={},
    )


def test_fixed_size_fallback() -> None:
    plan = hooks.fixed_size_autoscaler(_context())
    assert plan.manifests == [] and plan.consumer_replicas == 2 and plan.condition.is_true
    enabled = hooks.fixed_size_autoscaler(_context(autoscaling={"enabled": True}))
    assert (enabled.condition.status, enabled.condition.reason) == ("False", "NotAvailable")
    assert hooks.no_connectors(ConnectorContext(pipeline=pipeline(FRAUD), uid="u")).manifests == []


def test_missing_modules_fall_back_and_present_ones_load() -> None:
    assert hooks._load("kinfer_operator.no_such_plugin", "desired") is None
    assert hooks._load("kinfer_operator.hooks", "no_such_function") is None
    assert hooks._load("kinfer_operator.hooks", "fixed_size_autoscaler") is hooks.fixed_size_autoscaler
    # Both plug-ins are part of this repository, so the real ones must be picked, not the fallbacks.
    assert hooks.autoscaler_hook() is not hooks.fixed_size_autoscaler
    assert hooks.connector_hook() is not hooks.no_connectors
