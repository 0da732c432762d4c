"""Alerts reach a person: Debian's Prometheus evaluates the chart's rules against live `kinfer run` processes made
to misbehave, Debian's Alertmanager routes what fires with docs/alertmanager.yml, and a webhook receiver of the test
gets the notifications.

Three pipelines misbehave on purpose: one in a `payments-*` namespace is fed a stream that is half malformed
records (KinferDeadLetterRateHigh, a warning: the payments team's chat); its good half is drawn like the fraud
model's training data, so it must raise no drift alert. Another is fed transactions drawn from a shifted
distribution (amounts four times larger, every one online: KinferInputDrift on those two features, to the
platform chat). The third is pointed at a Kafka port nobody listens on (KinferKafkaUnreachable, critical: the
platform pager; its KinferRuntimeNotReady fires too and must be held back by the inhibit rule). Everything
listens on 127.0.0.1.

What the test changes, and only for time: each receiver's URL points at the test's receiver (a path per
receiver, so the routing is checked too), `group_wait`/`group_interval` are one second, and each rule's `for:`
becomes as many seconds as the chart has minutes (their order stays the chart's: KafkaUnreachable, 3, before
RuntimeNotReady, 10, as in a real outage).
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from kinfer_runtime.tools.synthetic import fraud_transactions
from tests.helm.chart import render
from tests.helm.release import running, wait_for
from tests.helm.test_alert_routing import EXAMPLE
from tests.helm.test_prometheus_scrape import Prometheus, reachable
from tests.runtime.integration.harness import RuntimeProcess, create_topics, manifest, produce
from tests.testbed import TestBed, free_port

pytestmark = pytest.mark.testbed

RUNBOOKS = "https://github.com/kinfer/kinfer/blob/main/docs/alerts.md"
DEAD_LETTERS, DRIFTING, NO_KAFKA = "dead-letters", "drifting", "no-kafka"  # half malformed, shifted, no Kafka


class Receiver:
    """A webhook receiver on loopback: every notification Alertmanager posts, with the path it was posted to."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        received, lock = self.received, self.lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    received.append((self.path.strip("/"), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def alerts(self, alertname: str) -> list[tuple[str, dict[str, Any]]]:
        """(receiver, alert) for every firing alert of that name notified so far."""
        with self.lock:
            return [(path, alert) for path, payload in self.received for alert in payload["alerts"]
                    if alert["labels"]["alertname"] == alertname and alert["status"] == "firing"]  # fmt: skip


def alertmanager_config(receiver_port: int) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    config["route"].update(group_wait="1s", group_interval="1s")
    for receiver in config["receivers"]:
        for webhook in receiver["webhook_configs"]:
            webhook["url"] = f"http://127.0.0.1:{receiver_port}/{receiver['name']}"
    return config


def fast_rules(directory: Path) -> Path:
    """The chart's rules, each ``for: Nm`` made ``Ns``."""
    spec = next(m for m in render({"monitoring.prometheusRule.enabled": True}) if m["kind"] == "PrometheusRule")["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule["for"] = re.sub(r"^(\d+)m$", r"\1s", rule["for"])
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@dataclass
class Stack:
    receiver: Receiver
    prometheus: Prometheus
    alertmanager_url: str
    dead_letters_namespace: str  # of the pipeline DEAD_LETTERS
    no_kafka_namespace: str  # of the pipeline NO_KAFKA
    drifting_namespace: str  # of the pipeline DRIFTING

    def alertmanager_alerts(self, alertname: str) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.alertmanager_url}/api/v2/alerts", timeout=10) as response:
            alerts: list[dict[str, Any]] = json.loads(response.read())
        return [alert for alert in alerts if alert["labels"]["alertname"] == alertname]


def training_like(count: int, batch: int, shifted: bool = False) -> list[tuple[bytes, bytes]]:
    """Transactions drawn as the fraud model's training data was (another seed per batch), or shifted."""
    records, _ = fraud_transactions(count, seed=1000 + batch)
    if shifted:
        records = [{**record, "amount": record["amount"] * 4, "channel": "online"} for record in records]
    return [(f"{batch}-{i}".encode(), orjson.dumps(record)) for i, record in enumerate(records)]


def feed(bootstrap: str, topics: dict[str, str], stop: threading.Event) -> None:
    """Every half second: 50 training-like and 50 malformed records to the dead-letter pipeline, 200 shifted
    ones to the drifting pipeline."""
    batch = 0
    while not stop.is_set():
        bad = [(f"bad-{batch}-{i}".encode(), b"{not json") for i in range(50)]
        produce(bootstrap, topics[DEAD_LETTERS], training_like(50, batch) + bad)
        produce(bootstrap, topics[DRIFTING], training_like(200, batch, shifted=True))
        batch += 1
        stop.wait(0.5)


@pytest.fixture(scope="module")
def stack(testbed: TestBed, tmp_path_factory: pytest.TempPathFactory, prometheus_binary: str,
          alertmanager_binary: str) -> Iterator[Stack]:  # fmt: skip
    tmp_path = tmp_path_factory.mktemp("alerts")
    tag = uuid.uuid4().hex[:6]
    topics = create_topics(testbed.bootstrap_servers, partitions=1, prefix="alerts")
    dead_letters = manifest(DEAD_LETTERS, testbed.bootstrap_servers, topics)
    dead_letters["metadata"]["namespace"] = f"payments-{tag}"
    nobody = f"127.0.0.1:{free_port()}"  # a port of this run's block: nothing listens on it
    no_kafka = manifest(NO_KAFKA, nobody, create_topics(testbed.bootstrap_servers, partitions=1, prefix="nokafka"))
    no_kafka["metadata"]["namespace"] = f"t-alerts-{tag}"
    drifting_topics = create_topics(testbed.bootstrap_servers, partitions=1, prefix="drift")
    drifting = manifest(DRIFTING, testbed.bootstrap_servers, drifting_topics)
    drifting["metadata"]["namespace"] = f"t-drift-{tag}"
    runtimes = [RuntimeProcess(dead_letters, tmp_path, testbed.bootstrap_servers, pod_name=f"{DEAD_LETTERS}-0"),
                RuntimeProcess(no_kafka, tmp_path, nobody, pod_name=f"{NO_KAFKA}-0"),
                RuntimeProcess(drifting, tmp_path, testbed.bootstrap_servers, pod_name=f"{DRIFTING}-0")]  # fmt: skip

    receiver = Receiver()
    receiver.thread.start()
    alertmanager_port, prometheus_port = free_port(), free_port()
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(receiver.port)))
    alertmanager = [alertmanager_binary, f"--config.file={tmp_path / 'alertmanager.yml'}",
                    f"--storage.path={tmp_path / 'alertmanager'}",
                    f"--web.listen-address=127.0.0.1:{alertmanager_port}",
                    "--cluster.listen-address=",  # no gossip: a single Alertmanager that listens on loopback only
                    "--log.level=warn"]  # fmt: skip
    stop = threading.Event()
    inputs = {DEAD_LETTERS: topics.input, DRIFTING: drifting_topics.input}
    feeder = threading.Thread(target=feed, args=(testbed.bootstrap_servers, inputs, stop))
    try:
        for runtime in runtimes:
            runtime.start()
        runtimes[0].wait_ready(120)
        runtimes[2].wait_ready(120)
        wait_for(lambda: runtimes[1].get("/metrics")[0] == 200, 120, "the runtime without Kafka serving metrics")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(fast_rules(tmp_path))],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
            "scrape_configs": [{"job_name": "runtime", "honor_labels": True, "static_configs": [
                {"targets": [f"127.0.0.1:{runtime.port}" for runtime in runtimes]}]}],
        }  # fmt: skip
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus_command = [prometheus_binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                              f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                              f"--web.listen-address=127.0.0.1:{prometheus_port}", "--log.level=warn"]  # fmt: skip
        feeder.start()
        with (
            running(alertmanager, {}, tmp_path / "alertmanager.log"),
            running(prometheus_command, {}, tmp_path / "prometheus.log"),
        ):
            prometheus = Prometheus(prometheus_port)
            wait_for(lambda: reachable(prometheus), 60, "Prometheus answering")
            namespaces = (dead_letters["metadata"]["namespace"], no_kafka["metadata"]["namespace"],
                          drifting["metadata"]["namespace"])  # fmt: skip
            yield Stack(receiver, prometheus, f"http://127.0.0.1:{alertmanager_port}", *namespaces)
    finally:
        stop.set()
        if feeder.is_alive():
            feeder.join(60)
        for runtime in runtimes:
            runtime.terminate()
        receiver.server.shutdown()


def test_a_dead_letter_storm_reaches_the_owning_teams_chat_with_its_runbook(stack: Stack) -> None:
    wait_for(lambda: stack.receiver.alerts("KinferDeadLetterRateHigh"), 120, "the dead-letter alert's notification")
    (path, alert), *_ = stack.receiver.alerts("KinferDeadLetterRateHigh")
    assert path == "payments-chat", f"routed to {path}"
    labels = alert["labels"]
    assert (labels["namespace"], labels["pipeline"]) == (stack.dead_letters_namespace, DEAD_LETTERS)
    assert labels["severity"] == "warning"
    assert alert["annotations"]["runbook_url"] == f"{RUNBOOKS}#kinferdeadletterratehigh"
    assert DEAD_LETTERS in alert["annotations"]["summary"]


def test_kafka_unreachable_pages_the_platform_and_holds_back_what_follows_from_it(stack: Stack) -> None:
    wait_for(lambda: stack.receiver.alerts("KinferKafkaUnreachable"), 120, "the Kafka-unreachable notification")
    (path, alert), *_ = stack.receiver.alerts("KinferKafkaUnreachable")
    assert path == "platform-pager", f"routed to {path}"
    assert (alert["labels"]["namespace"], alert["labels"]["pipeline"]) == (stack.no_kafka_namespace, NO_KAFKA)
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook_url"] == f"{RUNBOOKS}#kinferkafkaunreachable"
    # The same pipeline's consumer is not ready: Prometheus fires that alert, Alertmanager holds it back.

    def not_ready_suppressed() -> bool:
        held = [a for a in stack.alertmanager_alerts("KinferRuntimeNotReady") if a["labels"]["pipeline"] == NO_KAFKA]
        return bool(held) and held[0]["status"]["state"] == "suppressed" and bool(held[0]["status"]["inhibitedBy"])

    wait_for(not_ready_suppressed, 60, "KinferRuntimeNotReady of no-kafka to reach Alertmanager and be inhibited")
    firing = stack.prometheus.query('ALERTS{alertname="KinferRuntimeNotReady", alertstate="firing"}')
    assert [a["metric"]["pipeline"] for a in firing] == [NO_KAFKA], firing
    threading.Event().wait(5)  # five group intervals, in which Alertmanager would have sent it
    sent = [alert for _, alert in stack.receiver.alerts("KinferRuntimeNotReady")]
    assert not sent, f"inhibited alert notified: {orjson.dumps(sent)[:500]!r}"


def test_drifted_inputs_reach_the_model_owners_and_training_like_ones_do_not(stack: Stack) -> None:
    wait_for(lambda: {alert["labels"]["feature"] for _, alert in stack.receiver.alerts("KinferInputDrift")}
             >= {"amount", "channel"}, 180, "drift notifications for amount and channel")  # fmt: skip
    drifted = stack.receiver.alerts("KinferInputDrift")
    assert {path for path, _ in drifted} == {"platform-chat"}
    assert {(a["labels"]["namespace"], a["labels"]["pipeline"]) for _, a in drifted} == {
        (stack.drifting_namespace, DRIFTING)
    }, "only the drifting pipeline; the training-like stream of dead-letters raised none"
    assert {a["labels"]["feature"] for _, a in drifted} == {"amount", "channel"}, "the other features did not move"
    assert all(a["annotations"]["runbook_url"] == f"{RUNBOOKS}#kinferinputdrift" for _, a in drifted)
    calm = stack.prometheus.query(f'kinfer_feature_drift_psi{{pipeline="{DEAD_LETTERS}"}}')
    assert len(calm) == 7 and max(float(sample["value"][1]) for sample in calm) < 0.1, calm
