"""What the external metrics API answers (pure): metric values of one pipeline, and label-selector matching."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kinfer_operator.autoscaling.engine import Decision
from kinfer_operator.autoscaling.scalers import METRIC_LAG, METRIC_SCALING_LAG, METRIC_SERVING_DEMAND
from kinfer_operator.builders import naming


def metric_number(metric: str, decision: Decision) -> int:
    if metric == METRIC_LAG:
        return decision.total_lag
    if metric == METRIC_SCALING_LAG:
        return decision.metric_value
    if metric == METRIC_SERVING_DEMAND:
        return decision.serving_demand_value  # so TF Serving grows while consumers wait for it
    raise KeyError(metric)


def metric_values(metric: str, pipeline: str, decision: Decision, now: datetime) -> list[dict[str, Any]]:
    """One ExternalMetricValue for the pipeline (the HPA sums the items it gets; a selector picks one)."""
    return [
        {
            "metricName": metric,
            "metricLabels": {naming.LABEL_PIPELINE: pipeline, "topic": decision.topic},
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": str(metric_number(metric, decision)),
        }
    ]


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector syntax: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``, ``k notin (a)``."""
    for term in split_terms(selector):
        if " notin " in term or " in " in term:
            negate = " notin " in term
            key, _, rest = term.partition(" notin " if negate else " in ")
            values = {v.strip() for v in rest.strip().strip("()").split(",") if v.strip()}
            present = labels.get(key.strip()) in values
            if present == negate:
                return False
        elif "!=" in term:
            key, value = (part.strip() for part in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (part.strip() for part in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def split_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in label selector {selector!r}")
    if current.strip():
        terms.append(current.strip())
    return terms
