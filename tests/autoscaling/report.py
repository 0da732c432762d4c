"""Figures the autoscaling tests measure, merged into ``.bench/autoscaling.json`` for the lead's report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPORT = Path(__file__).resolve().parents[2] / ".bench" / "autoscaling.json"


def record(section: str, figures: dict[str, Any]) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    current[section] = figures
    REPORT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    print(f"\n[autoscaling] {section}: {json.dumps(figures, sort_keys=True)}")
