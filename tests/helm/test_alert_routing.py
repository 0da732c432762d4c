"""The Alertmanager example (docs/alertmanager.yml) under Debian's amtool, and the runbooks behind the alerts: the file
is a valid configuration, each kind of alert reaches the receiver docs/alerts.md says, its inhibit rules name real
alerts, and every alert's runbook_url points at a section of docs/alerts.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helm.chart import REPO_ROOT, alert_rules, render

EXAMPLE = REPO_ROOT / "docs" / "alertmanager.yml"
RUNBOOKS = REPO_ROOT / "docs" / "alerts.md"
RULES_ON = {"monitoring.prometheusRule.enabled": True, "externalMetrics.enabled": True}


def amtool_run(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


def test_the_example_is_a_valid_alertmanager_configuration(amtool: str) -> None:
    result = amtool_run(amtool, "check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "2 inhibit rules" in result.stdout and "5 receivers" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({"severity": "critical", "namespace": "payments"}, "payments-pager"),
        ({"severity": "critical", "namespace": "payments-eu"}, "payments-pager"),
        ({"severity": "warning", "namespace": "payments-eu"}, "payments-chat"),
        ({"severity": "info", "namespace": "payments"}, "payments-chat"),
        ({"severity": "critical", "namespace": "fraud"}, "platform-pager"),
        ({"severity": "warning", "namespace": "fraud"}, "platform-chat"),
        ({"severity": "info", "namespace": "fraud"}, "platform-tickets"),
        ({"severity": "critical", "namespace": "paymentsx"}, "platform-pager"),  # not a payments namespace
        ({"severity": "critical"}, "platform-pager"),  # KinferOperatorDown has no namespace label
    ],
)
def test_each_alert_reaches_the_receiver_the_docs_name(amtool: str, labels: dict[str, str], receiver: str) -> None:
    matchers = [f"{key}={value}" for key, value in {"alertname": "KinferAny", **labels}.items()]
    result = amtool_run(amtool, "config", "routes", "test", f"--config.file={EXAMPLE}",
                        f"--verify.receivers={receiver}", *matchers)  # fmt: skip
    assert result.returncode == 0, f"{labels}: routed to {result.stdout.strip()}, not {receiver}"


def test_inhibit_rules_name_alerts_the_chart_defines() -> None:
    defined = {rule["alert"] for rule in alert_rules(render(RULES_ON))}
    rules = yaml.safe_load(EXAMPLE.read_text())["inhibit_rules"]
    for rule in rules:
        assert rule["equal"] == ["namespace", "pipeline"], "only the same pipeline's alerts may be held back"
        named = {re.fullmatch(r'alertname="(\w+)"', m).group(1) for m in rule["source_matchers"]}  # type: ignore[union-attr]
        (target,) = rule["target_matchers"]
        targets = set(re.fullmatch(r'alertname=~"([\w|]+)"', target).group(1).split("|"))  # type: ignore[union-attr]
        assert named <= defined and targets <= defined, (named | targets) - defined
        assert "KinferDeadLetterRateHigh" not in targets, "failing records are their own problem, never inhibited"


def heading_anchors(markdown: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (lower case, spaces to dashes, punctuation dropped)."""
    anchors = set()
    for line in markdown.read_text().splitlines():
        match = re.match(r"#+ (.+)", line)
        if match:
            anchors.add(re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-"))
    return anchors


def test_every_alert_links_its_runbook_section() -> None:
    anchors = heading_anchors(RUNBOOKS)
    rules = alert_rules(render(RULES_ON))
    runbooks = {anchor for anchor in anchors if anchor.startswith("kinfer")}
    assert runbooks == {rule["alert"].lower() for rule in rules}, "a runbook per alert, none for an alert that is gone"
    base = "https://github.com/kinfer/kinfer/blob/main/docs/alerts.md"
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        assert url == f"{base}#{rule['alert'].lower()}", url
        assert rule["alert"].lower() in anchors, f"docs/alerts.md has no section {rule['alert']}"
    mine = alert_rules(render({**RULES_ON, "monitoring.prometheusRule.runbookUrl": "https://wiki.example/kinfer"}))
    assert {rule["annotations"]["runbook_url"] for rule in mine} == {
        f"https://wiki.example/kinfer#{rule['alert'].lower()}" for rule in rules
    }
