"""Generates kinfer's Grafana dashboard (charts/kinfer-operator/files/dashboards/kinfer-pipelines.json).

The panels are data here, so every query sits in one readable list and the chart's JSON is never hand-edited:
`python monitoring/dashboard.py --write` regenerates it, and tests/helm fails when the committed JSON differs from
what this script produces. Queries use only the metric names of docs/runtime.md and docs/operator.md (runtime
kinfer_*, operator kinfer_pipeline_* and kinfer_operator_*); tests/helm runs each of them against a live Prometheus.

Usage: python monitoring/dashboard.py [--write | --check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent.parent / "charts/kinfer-operator/files/dashboards/kinfer-pipelines.json"
SEL = 'namespace=~"$namespace", pipeline=~"$pipeline"'
BY = "namespace, pipeline"
RATE = "$__rate_interval"


def quantile(q: float, metric: str, by: str = BY) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{SEL}}}[{RATE}])))"


# (title, unit, kind, [(expr, legend)], width); kind is "timeseries" or "stat".
Panel = tuple[str, str, str, list[tuple[str, str]], int]
ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Overview",
        [
            (
                "Pipelines Ready",
                "none",
                "stat",
                [(f"max by ({BY}) (kinfer_pipeline_ready{{{SEL}}})", "{{pipeline}}")],
                8,
            ),
            (
                "Model version",
                "none",
                "stat",
                [(f"max by ({BY}, model) (kinfer_model_version{{{SEL}}})", "{{pipeline}} {{model}}")],
                8,
            ),
            (
                "Estimated time to drain the lag",
                "s",
                "stat",
                [(f"max by ({BY}) (kinfer_pipeline_drain_seconds{{{SEL}}})", "{{pipeline}}")],
                8,
            ),
        ],
    ),
    (
        "Throughput and latency",
        [
            (
                "Throughput (records/s)",
                "ops",
                "timeseries",
                [
                    (f"sum by ({BY}) (rate(kinfer_records_in_total{{{SEL}}}[{RATE}]))", "in {{pipeline}}"),
                    (f"sum by ({BY}) (rate(kinfer_records_out_total{{{SEL}}}[{RATE}]))", "out {{pipeline}}"),
                ],
                12,
            ),
            (
                "End-to-end latency (record timestamp to output ack)",
                "s",
                "timeseries",
                [
                    (quantile(0.5, "kinfer_end_to_end_seconds"), "p50 {{pipeline}}"),
                    (quantile(0.95, "kinfer_end_to_end_seconds"), "p95 {{pipeline}}"),
                    (quantile(0.99, "kinfer_end_to_end_seconds"), "p99 {{pipeline}}"),
                ],
                12,
            ),
            (
                "Stage latency p95",
                "s",
                "timeseries",
                [(quantile(0.95, "kinfer_stage_seconds", f"{BY}, stage"), "{{pipeline}} {{stage}}")],
                12,
            ),
            (
                "Mean batch size",
                "none",
                "timeseries",
                [
                    (
                        f"sum by ({BY}) (rate(kinfer_batch_size_sum{{{SEL}}}[{RATE}]))"
                        f" / sum by ({BY}) (rate(kinfer_batch_size_count{{{SEL}}}[{RATE}]))",
                        "{{pipeline}}",
                    )
                ],
                12,
            ),
        ],
    ),
    (
        "Lag and scaling",
        [
            (
                "Lag per pipeline (records)",
                "short",
                "timeseries",
                [(f"max by ({BY}) (kinfer_pipeline_lag{{{SEL}}})", "{{pipeline}}")],
                12,
            ),
            (
                "Lag per partition (records)",
                "short",
                "timeseries",
                [(f"max by ({BY}, partition) (kinfer_pipeline_partition_lag{{{SEL}}})", "{{pipeline}} p{{partition}}")],
                12,
            ),
            (
                "Consumer replicas vs partitions",
                "none",
                "timeseries",
                [
                    (f"max by ({BY}) (kinfer_pipeline_replicas{{{SEL}}})", "replicas {{pipeline}}"),
                    (f"max by ({BY}) (kinfer_pipeline_desired_replicas{{{SEL}}})", "desired {{pipeline}}"),
                    (f"max by ({BY}) (kinfer_pipeline_partitions{{{SEL}}})", "partitions {{pipeline}}"),
                ],
                12,
            ),
            (
                "Capped by partitions / model server ready",
                "none",
                "timeseries",
                [
                    (f"max by ({BY}) (kinfer_pipeline_capped_by_partitions{{{SEL}}})", "capped {{pipeline}}"),
                    (f"max by ({BY}) (kinfer_pipeline_serving_ready{{{SEL}}})", "serving ready {{pipeline}}"),
                ],
                12,
            ),
            (
                "Consumer lag seen by the consumers, per partition",
                "short",
                "timeseries",
                [
                    (
                        f"max by ({BY}, topic, partition) (kinfer_partition_lag{{{SEL}}})",
                        "{{pipeline}} {{topic}}/{{partition}}",
                    )
                ],
                12,
            ),
            (
                "Rebalances",
                "short",
                "timeseries",
                [(f"sum by ({BY}) (increase(kinfer_rebalances_total{{{SEL}}}[{RATE}]))", "{{pipeline}}")],
                12,
            ),
        ],
    ),
    (
        "Errors",
        [
            (
                "Dead-lettered records by reason (records/s)",
                "ops",
                "timeseries",
                [
                    (
                        f"sum by ({BY}, reason) (rate(kinfer_records_dead_lettered_total{{{SEL}}}[{RATE}]))",
                        "{{pipeline}} {{reason}}",
                    )
                ],
                12,
            ),
            (
                "Model server unavailable (events/s) and consumers ready",
                "short",
                "timeseries",
                [
                    (
                        f"sum by ({BY}) (rate(kinfer_predictor_unavailable_total{{{SEL}}}[{RATE}]))",
                        "unavailable {{pipeline}}",
                    ),
                    (f"sum by ({BY}) (kinfer_ready{{{SEL}}})", "ready consumers {{pipeline}}"),
                ],
                12,
            ),
        ],
    ),
    (
        "Model quality: outputs per model version, input drift",
        [
            (
                "Score p50 / p90 per output and model version",
                "none",
                "timeseries",
                [
                    (
                        quantile(0.5, "kinfer_prediction_score", f"{BY}, output, model_version"),
                        "p50 {{pipeline}} {{output}} v{{model_version}}",
                    ),
                    (
                        quantile(0.9, "kinfer_prediction_score", f"{BY}, output, model_version"),
                        "p90 {{pipeline}} {{output}} v{{model_version}}",
                    ),
                ],
                12,
            ),
            (
                "Predicted labels, share of outputs per model version",
                "percentunit",
                "timeseries",
                [
                    (
                        f"sum by ({BY}, model_version, label) (rate(kinfer_predictions_total{{{SEL}}}[{RATE}]))"
                        f" / ignoring(label) group_left sum by ({BY}, model_version) "
                        f"(rate(kinfer_predictions_total{{{SEL}}}[{RATE}]))",
                        "{{pipeline}} v{{model_version}} {{label}}",
                    )
                ],
                12,
            ),
            (
                "Input drift per feature (PSI against the training data; above 0.25: significant)",
                "none",
                "timeseries",
                [(f"max by ({BY}, feature) (kinfer_feature_drift_psi{{{SEL}}})", "{{pipeline}} {{feature}}")],
                12,
            ),
            (
                "Records in the drift window, per consumer pod",
                "short",
                "timeseries",
                [(f"kinfer_drift_window_records{{{SEL}}}", "{{pipeline}} {{instance}}")],
                12,
            ),
        ],
    ),
    (
        "Rollout: candidate version beside the live one (spec.model.rollout)",
        [
            (
                "Records scored per model version (/s): a canary's split, a shadow's sample",
                "ops",
                "timeseries",
                [
                    (
                        f"sum by ({BY}, model_version) (rate(kinfer_predictions_total{{{SEL}}}[{RATE}]))",
                        "{{pipeline}} v{{model_version}}",
                    )
                ],
                8,
            ),
            (
                "Shadow: share of compared records with the same label",
                "percentunit",
                "timeseries",
                [
                    (
                        f"sum by ({BY}, live_version, candidate_version) (rate(kinfer_rollout_label_agreement_total"
                        f'{{{SEL}, agreement="agree"}}[{RATE}])) / sum by ({BY}, live_version, candidate_version) '
                        f"(rate(kinfer_rollout_label_agreement_total{{{SEL}}}[{RATE}]))",
                        "{{pipeline}} v{{candidate_version}} vs v{{live_version}}",
                    )
                ],
                8,
            ),
            (
                "Shadow: candidate minus live score, p10 / p50 / p90",
                "none",
                "timeseries",
                [
                    (
                        quantile(q, "kinfer_rollout_score_difference", f"{BY}, output, candidate_version"),
                        f"p{int(q * 100)} {{{{pipeline}}}} {{{{output}}}} v{{{{candidate_version}}}}",
                    )
                    for q in (0.1, 0.5, 0.9)
                ],
                8,
            ),
            (
                "Rollout in use (0: the candidate could not be used) and candidate failures (/s)",
                "none",
                "timeseries",
                [
                    (
                        f"max by ({BY}, mode, candidate_version, share) (kinfer_rollout_info{{{SEL}}})",
                        "{{pipeline}} {{mode}} v{{candidate_version}} share {{share}}",
                    ),
                    (
                        f"sum by ({BY}, candidate_version, reason) "
                        f"(rate(kinfer_rollout_candidate_failures_total{{{SEL}}}[{RATE}]))",
                        "{{pipeline}} v{{candidate_version}} failed: {{reason}}",
                    ),
                ],
                24,
            ),
        ],
    ),
    (
        "Operator",
        [
            (
                "Reconciles by result (/s)",
                "ops",
                "timeseries",
                [(f"sum by (result) (rate(kinfer_operator_reconcile_total[{RATE}]))", "{{result}}")],
                12,
            ),
            (
                "Reconcile duration p95",
                "s",
                "timeseries",
                [
                    (
                        "histogram_quantile(0.95, sum by (le) (rate(kinfer_operator_reconcile_seconds_bucket"
                        f"[{RATE}])))",
                        "p95",
                    )
                ],
                12,
            ),
        ],
    ),
]


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    title, unit, kind, targets, width = panel
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 4 if kind == "stat" else 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": {"uid": "${datasource}"}}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def variable(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "refresh": 2,
        "current": {"text": "All", "value": "$__all"},
    }


def build_dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row_title, row_panels in ROWS:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id, y, x = next_id + 1, y + 1, 0
        for panel in row_panels:
            width = panel[4]
            if x + width > 24:
                x, y = 0, y + 8
            panels.append(panel_json(panel, next_id, x, y))
            next_id, x = next_id + 1, x + width
        y += 8
    return {
        "uid": "kinfer-pipelines",
        "title": "kinfer / Inference pipelines",
        "description": "Throughput, latency, lag, scaling and dead letters of kinfer InferencePipelines.",
        "tags": ["kinfer", "kafka", "inference"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                variable("namespace", "label_values(kinfer_pipeline_ready, namespace)"),
                variable("pipeline", 'label_values(kinfer_pipeline_ready{namespace=~"$namespace"}, pipeline)'),
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build_dashboard(), indent=2, sort_keys=True) + "\n"


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query target in a dashboard."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help=f"write {OUTPUT.name} into the chart")
    parser.add_argument("--check", action="store_true", help="exit 1 if the chart's copy is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_text(text)
        return 0
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run python monitoring/dashboard.py --write", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
