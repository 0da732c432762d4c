"""Figures the bed tests measure, merged into ``.bench/<report>.json`` (autoscaling, cluster) for the closing note."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / ".bench"


def record(section: str, figures: dict[str, Any], report: str = "autoscaling") -> None:
    path = BENCH / f"{report}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    current[section] = figures
    path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    print(f"\n[{report}] {section}: {json.dumps(figures, sort_keys=True)}")
