"""Fixtures of the chart and monitoring tests: Prometheus' binaries, installed from Debian on first use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

INSTALL_SCRIPT = Path(__file__).resolve().parent / "install-prometheus.sh"


def ensure_prometheus() -> tuple[str, str]:
    """(promtool, prometheus) paths; runs the idempotent install script when either is missing."""
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        result = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{INSTALL_SCRIPT.name} failed:\n{result.stdout}\n{result.stderr}"
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    assert promtool and prometheus, "promtool/prometheus still missing after tests/helm/install-prometheus.sh"
    return promtool, prometheus


@pytest.fixture(scope="session")
def promtool() -> str:
    return ensure_prometheus()[0]


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return ensure_prometheus()[1]
