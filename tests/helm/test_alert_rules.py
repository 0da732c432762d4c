"""The chart's alerts under promtool: the rendered PrometheusRule passes `promtool check rules`, and
alerts.test.yaml (every alert, firing and silent cases) passes `promtool test rules`. Also: every metric the
alerts and the dashboard query is one that the runtime or the operator exports (docs/runtime.md, docs/operator.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.helm.chart import (
    CHART,
    OPERATOR_METRICS,
    REPO_ROOT,
    RUNTIME_METRICS,
    alert_rules,
    metric_names,
    one,
    render,
)

HERE = Path(__file__).resolve().parent


def write_rules(directory: Path, sets: dict[str, Any] | None = None) -> Path:
    rule = one(render({"monitoring.prometheusRule.enabled": True, **(sets or {})}), "PrometheusRule")
    path = directory / "kinfer-rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    shutil.copy(HERE / "alerts.test.yaml", directory / "alerts.test.yaml")
    return path


def run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_check_rules(promtool: str, tmp_path: Path) -> None:
    rules = write_rules(tmp_path)
    result = run(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"SUCCESS: {len(alert_rules(render({'monitoring.prometheusRule.enabled': True})))} rules found" in result.stdout
    )


def test_promtool_unit_tests_cover_every_alert(promtool: str, tmp_path: Path) -> None:
    write_rules(tmp_path)
    result = run(promtool, "test", "rules", "alerts.test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {
        case["alertname"]
        for test in yaml.safe_load((HERE / "alerts.test.yaml").read_text())["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    defined = {r["alert"] for r in alert_rules(render({"monitoring.prometheusRule.enabled": True}))}
    assert tested == defined, f"alerts without a firing test case: {defined - tested}"


def test_promtool_tests_notice_a_changed_threshold(promtool: str, tmp_path: Path) -> None:
    # A lower lag floor makes the "small" pipeline of the lag case alert: the unit tests must then fail.
    write_rules(tmp_path, {"monitoring.prometheusRule.lagMinRecords": 10})
    result = run(promtool, "test", "rules", "alerts.test.yaml", cwd=tmp_path)
    assert result.returncode != 0 and "shop/small" in result.stdout + result.stderr


def test_thresholds_come_from_values() -> None:
    rules = {
        r["alert"]: r
        for r in alert_rules(
            render(
                {
                    "monitoring.prometheusRule.enabled": True,
                    "monitoring.prometheusRule.lagGrowingMinutes": 3,
                    "monitoring.prometheusRule.deadLetterRatio": 0.05,
                    "monitoring.prometheusRule.alertLabels": {"team": "ml"},
                }
            )
        )
    }
    assert rules["KinferConsumerLagGrowing"]["for"] == "3m"
    assert "> 0.05" in rules["KinferDeadLetterRateHigh"]["expr"]
    assert all(r["labels"]["team"] == "ml" for r in rules.values())


def test_alerts_and_dashboard_use_only_exported_metric_names() -> None:
    exported = RUNTIME_METRICS | OPERATOR_METRICS
    used: set[str] = set()
    # The one alert on a metric that is not kinfer's: the API server's own gauge of its aggregated APIs.
    apiserver = {"KinferMetricsApiUnavailable": "aggregator_unavailable_apiservice"}
    for rule in alert_rules(render({"monitoring.prometheusRule.enabled": True})):
        names = metric_names(rule["expr"])
        if rule["alert"] in apiserver:
            assert apiserver[rule["alert"]] in rule["expr"] and not names
            continue
        assert names, f"{rule['alert']} queries no kinfer metric"
        assert names <= exported, f"{rule['alert']} uses unknown metrics {names - exported}"
        used |= names
    dashboard = json.loads((CHART / "files" / "dashboards" / "kinfer-pipelines.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names = metric_names(target["expr"])
            assert names and names <= exported, f"panel {panel['title']!r}: {names - exported}"
            used |= names
    # The dashboard shows what the issue asks for: throughput, e2e latency, lag per pipeline and partition, DLQ by
    # reason, replicas vs partitions, model version.
    assert {
        "kinfer_records_in_total", "kinfer_end_to_end_seconds", "kinfer_pipeline_lag", "kinfer_pipeline_partition_lag",
        "kinfer_records_dead_lettered_total", "kinfer_pipeline_replicas", "kinfer_pipeline_partitions",
        "kinfer_model_version",
    } <= used  # fmt: skip


def test_dashboard_json_is_generated() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "monitoring" / "dashboard.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
