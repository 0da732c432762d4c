"""Helpers of the chart tests: run helm (the test bed's pinned build) on charts/kinfer-operator and parse the output.

Pure helpers without a cluster: `render` is `helm template` with --set values, returning the manifests as dicts;
`render_error` returns helm's message for values that must be refused. The Kubernetes version is given explicitly
because a helm built from source reports a default of v1.20, below the chart's kubeVersion.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.testbed import component_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "kinfer-operator"
KUBE_VERSION = "1.36.3"
RELEASE = "kinfer"
NAMESPACE = "kinfer-system"

# Every metric name the runtime and the operator export (docs/runtime.md, docs/operator.md), histograms by base name.
RUNTIME_METRICS = {
    "kinfer_records_in_total", "kinfer_records_out_total", "kinfer_records_dead_lettered_total", "kinfer_batch_size",
    "kinfer_stage_seconds", "kinfer_end_to_end_seconds", "kinfer_partition_lag", "kinfer_model_version",
    "kinfer_rebalances_total", "kinfer_ready", "kinfer_predictor_unavailable_total", "kinfer_kafka_brokers_up",
    "kinfer_feature_drift_psi", "kinfer_drift_window_records", "kinfer_prediction_score", "kinfer_predictions_total",
    "kinfer_rollout_info", "kinfer_rollout_label_agreement_total", "kinfer_rollout_candidate_failures_total",
    "kinfer_rollout_score_difference",
}  # fmt: skip
OPERATOR_METRICS = {
    "kinfer_pipeline_ready", "kinfer_pipeline_lag", "kinfer_pipeline_partition_lag", "kinfer_pipeline_replicas",
    "kinfer_pipeline_desired_replicas", "kinfer_pipeline_partitions", "kinfer_pipeline_capped_by_partitions",
    "kinfer_pipeline_serving_ready", "kinfer_pipeline_drain_seconds", "kinfer_operator_reconcile_total",
    "kinfer_operator_reconcile_seconds", "kinfer_operator_info",
}  # fmt: skip


def helm_binary() -> Path:
    return component_dir("helm") / "helm"


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, timeout=120)


def template_args(sets: dict[str, Any] | None = None) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for key, value in (sets or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def render(sets: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The manifests `helm template` renders with these values (keys are helm --set paths)."""
    result = helm(*template_args(sets))
    assert result.returncode == 0, f"helm template failed: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_error(sets: dict[str, Any]) -> str:
    """helm's error message for values the chart must refuse (fails the test if helm accepts them)."""
    result = helm(*template_args(sets))
    assert result.returncode != 0, f"helm accepted values it should refuse: {sets}"
    return result.stderr


def find(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def one(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def metric_names(promql: str) -> set[str]:
    """kinfer metric names a PromQL expression selects, histogram series (_bucket/_sum/_count) by base name."""
    names = set(re.findall(r"\b(kinfer_[a-z_]+)\b", promql))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def alert_rules(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rule = one(manifests, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def monitoring_on() -> dict[str, Any]:
    return {
        "monitoring.serviceMonitor.enabled": True,
        "monitoring.podMonitor.enabled": True,
        "monitoring.prometheusRule.enabled": True,
        "monitoring.grafanaDashboard.enabled": True,
    }
