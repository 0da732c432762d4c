"""Fixtures of the chart and monitoring tests: Prometheus' and Alertmanager's binaries, installed from Debian on first
use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

INSTALL_SCRIPT = Path(__file__).resolve().parent / "install-prometheus.sh"


BINARIES = ("promtool", "prometheus", "prometheus-alertmanager", "amtool")


def ensure_binaries() -> dict[str, str]:
    """Path of each of :data:`BINARIES`; runs the idempotent install script when one is missing."""
    if not all(shutil.which(binary) for binary in BINARIES):
        result = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{INSTALL_SCRIPT.name} failed:\n{result.stdout}\n{result.stderr}"
    found = {binary: shutil.which(binary) for binary in BINARIES}
    missing = [binary for binary, path in found.items() if not path]
    assert not missing, f"{missing} still missing after tests/helm/install-prometheus.sh"
    return {binary: str(path) for binary, path in found.items()}


def ensure_prometheus() -> tuple[str, str]:
    """(promtool, prometheus) paths."""
    binaries = ensure_binaries()
    return binaries["promtool"], binaries["prometheus"]


@pytest.fixture(scope="session")
def promtool() -> str:
    return ensure_prometheus()[0]


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return ensure_prometheus()[1]


@pytest.fixture(scope="session")
def amtool() -> str:
    return ensure_binaries()["amtool"]


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    return ensure_binaries()["prometheus-alertmanager"]
