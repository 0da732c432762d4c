"""A real Prometheus (Debian's, on loopback) scrapes a running `kinfer run` and `kinfer operator` while records flow
through a pipeline, with the chart's alert rules loaded: every query of the Grafana dashboard returns data, every
alert expression evaluates and selects exported series, and every metric name of docs/runtime.md and
docs/operator.md is exported.
No query of ours names a metric nobody exports.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from kinfer_runtime.tools.synthetic import fraud_transactions
from tests.helm.chart import CHART, OPERATOR_METRICS, RUNTIME_METRICS, alert_rules, metric_names, render
from tests.helm.release import running, wait_for
from tests.runtime.integration.harness import KINFER, RuntimeProcess, create_topics, manifest, produce
from tests.testbed import TestBed, free_port

pytestmark = pytest.mark.testbed

SCRAPE_SECONDS = 1


class Prometheus:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}"

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    def up(self, job: str) -> bool:
        return any(sample["value"][1] == "1" for sample in self.query(f'up{{job="{job}"}}'))


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel, PromQL) with Grafana's variables as Grafana would expand them for "All" and a short range."""
    dashboard = json.loads((CHART / "files" / "dashboards" / "kinfer-pipelines.json").read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "30s")
            expr = expr.replace("$namespace", ".*").replace("$pipeline", ".*")
            queries.append((panel["title"], expr))
    for variable in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.*), \w+\)", variable.get("definition", ""))
        if match:  # label_values(selector, label) is Grafana's; Prometheus answers the selector
            queries.append((f"variable {variable['name']}", match.group(1).replace("$namespace", ".*")))
    return queries


@pytest.fixture(scope="module")
def scraped(testbed: TestBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Runtime + operator + Prometheus, records flowing (some malformed, for dead letters)."""
    tmp_path = tmp_path_factory.mktemp("scrape")
    namespace = f"t-prom-{uuid.uuid4().hex[:6]}"
    # The CRD, whether or not a test before this one installed it (the module runs alone too).
    crd = CHART / "files" / "crds" / "kinfer.io_inferencepipelines.yaml"
    testbed.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    testbed.wait_established("inferencepipelines.kinfer.io")
    testbed.kubectl("create", "namespace", namespace)
    topics = create_topics(testbed.bootstrap_servers, partitions=3, prefix="prom")
    pipeline = manifest("scraped", testbed.bootstrap_servers, topics)
    pipeline["metadata"]["namespace"] = namespace
    pipeline["spec"]["autoscaling"] = {"enabled": True, "minReplicas": 1, "maxReplicas": 3, "lagThreshold": 50}
    # A shadow rollout (version 2 beside the live 1) gives the rollout's series their data too.
    pipeline["spec"]["model"] |= {"versionPolicy": "Pinned", "version": 1,
                                  "rollout": {"candidateVersion": 2, "mode": "Shadow", "share": 0.5}}  # fmt: skip
    testbed.kubectl("apply", "-f", "-", input=json.dumps(pipeline))

    operator_port, prometheus_port = free_port(), free_port()
    operator = [str(KINFER), "operator", f"--namespace={namespace}", "--standalone", "--metrics-host=127.0.0.1",
                f"--metrics-port={operator_port}", "--lag-poll-seconds=1"]  # fmt: skip
    runtime = RuntimeProcess(pipeline, tmp_path, testbed.bootstrap_servers, pod_name="scraped-0")

    rules = one_rule_file(tmp_path)
    config: dict[str, Any] = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            # honor_labels as in the chart's ServiceMonitor/PodMonitor: the series' own namespace label wins.
            {"job_name": "operator", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}]},
        ],
    }  # fmt: skip
    from tests.helm.conftest import ensure_prometheus

    _, prometheus_binary = ensure_prometheus()
    stop = threading.Event()
    with running(operator, testbed.env, tmp_path / "operator.log"):
        runtime.start()
        try:
            runtime.wait_ready(120)
            runtime_target = {"targets": [f"127.0.0.1:{runtime.port}"]}
            config["scrape_configs"].append(
                {"job_name": "runtime", "honor_labels": True, "static_configs": [runtime_target]}
            )
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
            prometheus_command = [
                prometheus_binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--log.level=warn",
            ]  # fmt: skip
            with running(prometheus_command, {}, tmp_path / "prometheus.log"):
                feeder = threading.Thread(target=feed, args=(testbed.bootstrap_servers, topics.input, stop))
                feeder.start()
                try:
                    prometheus = Prometheus(prometheus_port)
                    wait_for(lambda: reachable(prometheus), 60, "Prometheus answering")
                    wait_for(lambda: prometheus.up("operator") and prometheus.up("runtime"), 60, "both targets up")
                    yield prometheus
                finally:
                    stop.set()
                    feeder.join(60)
        finally:
            runtime.terminate()
            testbed.kubectl("delete", "inferencepipeline", "scraped", "-n", namespace, "--wait=false", check=False)
            testbed.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def one_rule_file(directory: Path) -> Path:
    rule = next(m for m in render({"monitoring.prometheusRule.enabled": True}) if m["kind"] == "PrometheusRule")
    path = directory / "kinfer-rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def reachable(prometheus: Prometheus) -> bool:
    try:
        prometheus.api("status/buildinfo")
        return True
    except OSError:
        return False


def feed(bootstrap: str, topic: str, stop: threading.Event) -> None:
    """About 100 records a second, 5 % of them malformed, until stopped (rates stay above zero). The good ones are
    drawn as the fraud model's training data was (about 3 % fraud), so the quality panels show an undisturbed
    stream: both labels, and no drift."""
    batch = 0
    while not stop.is_set():
        drawn, _ = fraud_transactions(95, seed=2000 + batch)
        good = [(f"k-{batch}-{i}".encode(), orjson.dumps(record)) for i, record in enumerate(drawn)]
        bad: list[tuple[bytes, bytes]] = [(f"bad-{batch}-{i}".encode(), b"{not json") for i in range(3)]
        bad += [(f"missing-{batch}-{i}".encode(), orjson.dumps({"amount": 1.0})) for i in range(2)]
        produce(bootstrap, topic, good + bad)
        batch += 1
        stop.wait(1.0)


def test_every_dashboard_query_and_alert_expression_returns_data(scraped: Prometheus) -> None:
    prometheus = scraped
    queries = dashboard_queries()
    assert len(queries) >= 20

    def empty_queries() -> list[str]:
        return [f"{panel}: {expr}" for panel, expr in queries if not prometheus.query(expr)]

    try:
        wait_for(lambda: not empty_queries(), 120, "every dashboard query to return data", interval=3)
    except AssertionError:
        raise AssertionError("dashboard queries without data:\n" + "\n".join(empty_queries())) from None

    for rule in alert_rules(render({"monitoring.prometheusRule.enabled": True})):
        prometheus.query(rule["expr"])  # evaluates (raises on a PromQL error)
        for name in metric_names(rule["expr"]):
            selector = f'{{__name__=~"{name}|{name}_bucket"}}'
            assert prometheus.query(selector), f"{rule['alert']}: no series of {name}"
    groups = prometheus.api("rules")["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {r["alert"] for r in alert_rules(render({"monitoring.prometheusRule.enabled": True}))}
    assert all(rule["health"] == "ok" for rule in loaded.values()), [r for r in loaded.values() if r["health"] != "ok"]


def test_every_interface_metric_is_exported(scraped: Prometheus) -> None:
    names = {sample["metric"]["__name__"] for sample in scraped.query('count by (__name__) ({__name__=~"kinfer_.*"})')}
    exported = {re.sub(r"_(bucket|sum|count|created)$", "", name) for name in names}
    missing = (RUNTIME_METRICS | OPERATOR_METRICS) - exported
    assert not missing, f"documented metrics nobody exports: {sorted(missing)}"
    # Both processes label their series with the pipeline's namespace and name.
    for name in ("kinfer_records_in_total", "kinfer_pipeline_ready"):
        (sample,) = scraped.query(name)
        assert sample["metric"]["pipeline"] == "scraped" and sample["metric"]["namespace"].startswith("t-")


def model_owner_panels() -> dict[str, list[tuple[str, str]]]:
    """Panel title → its (legend, query) pairs, for the dashboard's rows a model owner reads (quality, drift,
    rollout)."""
    dashboard = json.loads((CHART / "files" / "dashboards" / "kinfer-pipelines.json").read_text())
    panels: dict[str, list[tuple[str, str]]] = {}
    row = ""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
        elif row.startswith(("Model quality", "Rollout")):
            panels[panel["title"]] = [
                (
                    t["legendFormat"],
                    t["expr"].replace("$__rate_interval", "30s").replace("$namespace", ".*").replace("$pipeline", ".*"),
                )
                for t in panel["targets"]
            ]
    return panels


def test_what_a_model_owner_sees_for_a_shadow_rollout(scraped: Prometheus) -> None:
    """The quality and rollout rows, read as Grafana would, while version 2 shadows version 1 on half of the
    keys: both versions' scores and labels, the split, the agreement, the score differences. Printed (pytest -s)
    as a model owner would read the panels; the checks are what those panels must show for this traffic."""
    panels = model_owner_panels()
    assert len(panels) >= 7

    def read(expr: str) -> list[tuple[dict[str, str], float]]:
        return [(s["metric"], float(s["value"][1])) for s in scraped.query(expr)]

    def every_panel_read() -> dict[str, list[list[tuple[dict[str, str], float]]]]:
        return {title: [read(expr) for _, expr in targets] for title, targets in panels.items()}

    wait_for(lambda: all(all(v) for v in every_panel_read().values()), 120, "every model-owner panel", interval=3)
    seen = every_panel_read()
    for title, targets in seen.items():
        print(f"\n{title}")
        for (legend, _), samples in zip(panels[title], targets, strict=True):
            for labels, value in sorted(samples, key=lambda s: sorted(s[0].items())):
                line = legend
                for name, label in labels.items():
                    line = line.replace("{{" + name + "}}", label)
                print(f"  {line}: {value:.4g}")

    (per_version,) = seen["Records scored per model version (/s): a canary's split, a shadow's sample"]
    rates = {labels["model_version"]: value for labels, value in per_version}
    assert set(rates) == {"1", "2"} and 0.3 < rates["2"] / rates["1"] < 0.7, rates  # a shadow of half the keys
    (agreement,) = seen["Shadow: share of compared records with the same label"]
    assert all(0.0 <= value <= 1.0 for _, value in agreement)
    (label_shares,) = seen["Predicted labels, share of outputs per model version"]
    for version in ("1", "2"):
        total = sum(value for labels, value in label_shares if labels["model_version"] == version)
        assert abs(total - 1.0) < 1e-6, (version, total)  # the labels of one version add up to all its outputs
    info, _failures = seen["Rollout in use (0: the candidate could not be used) and candidate failures (/s)"]
    assert [value for _, value in info] == [1.0]
    (drift,) = seen["Input drift per feature (PSI against the training data; above 0.25: significant)"]
    assert {labels["feature"] for labels, _ in drift} >= {"amount", "channel"}
    assert all(value < 0.25 for _, value in drift), drift  # drawn like the training data: no significant drift
    (label_shares,) = seen["Predicted labels, share of outputs per model version"]
    assert {labels["label"] for labels, _ in label_shares} == {"legit", "fraud"}, label_shares


def test_prometheus_binary_is_debians() -> None:
    from tests.helm.conftest import ensure_prometheus

    version = subprocess.run([ensure_prometheus()[1], "--version"], capture_output=True, text=True, timeout=30)
    assert "prometheus, version 2." in version.stdout + version.stderr
