"""The external metrics API server over real TLS on loopback: discovery, values, selectors, caller checks."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client import REGISTRY

from kinfer_operator.autoscaling.engine import PipelineAutoscaler
from kinfer_operator.autoscaling.metric_values import selector_matches
from kinfer_operator.autoscaling.metrics_api import MetricsApiServer
from kinfer_operator.autoscaling.monitor import LagMonitor, TrackedPipeline
from tests.autoscaling.pipelines import decision_for, make_spec
from tests.polling import wait_until
from tests.testbed import free_port
from tests.testbed.pki import CertificateAuthority, CertificateFiles

BASE = "/apis/external.metrics.k8s.io/v1beta1"


@dataclass
class Served:
    url: str
    server: MetricsApiServer
    monitor: LagMonitor
    server_ca: Path
    proxy_client: CertificateFiles
    stranger: CertificateFiles

    def get(self, path: str, client: CertificateFiles | None = None) -> tuple[int, dict]:
        context = ssl.create_default_context(cafile=str(self.server_ca))
        context.check_hostname = False  # the certificate names the Service, we dial 127.0.0.1
        chosen = client or self.proxy_client
        context.load_cert_chain(str(chosen.cert), str(chosen.key))
        try:
            with urllib.request.urlopen(self.url + path, context=context, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    serving_ca = CertificateAuthority(tmp_path / "serving", "metrics-ca")
    serving = serving_ca.issue("server", "kinfer-metrics", dns_names=("kinfer-metrics.kinfer.svc",), server=True)
    proxy_ca = CertificateAuthority(tmp_path / "proxy", "front-proxy-ca")
    proxy_client = proxy_ca.issue("proxy-client", "front-proxy-client", client=True)
    stranger = proxy_ca.issue("stranger", "someone-else", client=True)
    monitor = LagMonitor(None, poll_seconds=5)
    port = free_port()
    server = MetricsApiServer(
        monitor,
        "127.0.0.1",
        port,
        serving.cert,
        serving.key,
        client_ca_pem=proxy_ca.cert_path.read_text(),
        allowed_names=["front-proxy-client"],
    )
    server.start()
    try:
        yield Served(f"https://127.0.0.1:{port}", server, monitor, serving_ca.cert_path, proxy_client, stranger)
    finally:
        server.stop()


def put_decision(monitor: LagMonitor, name: str, lags: list[int], threshold: int = 100) -> None:
    spec = make_spec(lagThreshold=threshold)
    entry = TrackedPipeline("ns", name, spec, PipelineAutoscaler.for_spec(spec))
    entry.decision, entry.polled_at = decision_for(spec, lags), time.monotonic()
    monitor._pipelines[("ns", name)] = entry


def test_discovery_and_openapi(served: Served) -> None:
    status, body = served.get(BASE)
    assert status == 200 and body["kind"] == "APIResourceList"
    assert {r["name"] for r in body["resources"]} >= {"kinfer_pipeline_lag", "kinfer_pipeline_scaling_lag"}
    assert served.get("/apis/external.metrics.k8s.io")[1]["preferredVersion"]["version"] == "v1beta1"
    assert served.get("/openapi/v2")[1]["swagger"] == "2.0"
    assert served.get("/openapi/v3")[0] == 200


def test_values_by_selector(served: Served) -> None:
    put_decision(served.monitor, "a", [250, 0, 0])
    put_decision(served.monitor, "b", [999, 999, 999])
    status, body = served.get(f"{BASE}/namespaces/ns/kinfer_pipeline_scaling_lag?labelSelector=kinfer.io/pipeline%3Da")
    assert status == 200 and body["kind"] == "ExternalMetricValueList"
    [item] = body["items"]
    assert item["value"] == "300" and item["metricLabels"]["kinfer.io/pipeline"] == "a"  # ceil(250/100) * 100
    _, raw = served.get(f"{BASE}/namespaces/ns/kinfer_pipeline_lag?labelSelector=kinfer.io/pipeline%3Db")
    assert [i["value"] for i in raw["items"]] == ["2997"]
    _, other_ns = served.get(f"{BASE}/namespaces/elsewhere/kinfer_pipeline_lag?labelSelector=kinfer.io/pipeline%3Da")
    assert other_ns["items"] == []
    assert served.get(f"{BASE}/namespaces/ns/no_such_metric")[0] == 404


def test_answers_are_counted_by_kind(served: Served) -> None:
    """kinfer_operator_external_metric_answers_total says whether this replica gave the HPA values (the check
    of the HA install: every replica must answer with values, not only the active one)."""

    def answered(kind: str) -> float:
        sample = REGISTRY.get_sample_value("kinfer_operator_external_metric_answers_total", {"answer": kind})
        return sample or 0.0

    before = {kind: answered(kind) for kind in ("values", "empty", "refused", "error")}
    put_decision(served.monitor, "a", [100, 0, 0])
    served.get(f"{BASE}/namespaces/ns/kinfer_pipeline_lag?labelSelector=kinfer.io/pipeline%3Da")
    served.get(f"{BASE}/namespaces/ns/kinfer_pipeline_lag?labelSelector=kinfer.io/pipeline%3Dnone")
    served.get(f"{BASE}/namespaces/ns/kinfer_pipeline_lag", client=served.stranger)
    served.get(f"{BASE}/namespaces/ns/no_such_metric")
    after = {kind: answered(kind) - before[kind] for kind in before}
    assert after == {"values": 1, "empty": 1, "refused": 1, "error": 1}


def test_stale_decisions_are_not_served(served: Served) -> None:
    put_decision(served.monitor, "old", [500, 0, 0])
    served.monitor._pipelines[("ns", "old")].polled_at = time.monotonic() - 3600
    _, body = served.get(f"{BASE}/namespaces/ns/kinfer_pipeline_lag?labelSelector=kinfer.io/pipeline%3Dold")
    assert body["items"] == []


def test_only_the_front_proxy_may_ask(served: Served) -> None:
    put_decision(served.monitor, "a", [100, 0, 0])
    status, body = served.get(f"{BASE}/namespaces/ns/kinfer_pipeline_lag", client=served.stranger)
    assert status == 403 and body["reason"] == "Forbidden"
    context = ssl.create_default_context(cafile=str(served.server_ca))
    context.check_hostname = False
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        urllib.request.urlopen(f"{served.url}{BASE}", context=context, timeout=10).read()  # no client cert at all


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("kinfer.io/pipeline=a", True),
        ("kinfer.io/pipeline==a", True),
        ("kinfer.io/pipeline=b", False),
        ("kinfer.io/pipeline!=b", True),
        ("kinfer.io/pipeline in (a, b)", True),
        ("kinfer.io/pipeline notin (a)", False),
        ("kinfer.io/pipeline", True),
        ("!kinfer.io/pipeline", False),
        ("kinfer.io/pipeline=a,topic=x", False),
    ],
)
def test_selector(selector: str, matches: bool) -> None:
    assert selector_matches(selector, {"kinfer.io/pipeline": "a"}) is matches


def test_without_the_request_header_ca_no_caller_is_served(tmp_path: Path) -> None:
    serving_ca = CertificateAuthority(tmp_path / "serving", "metrics-ca")
    serving = serving_ca.issue("server", "kinfer-metrics", dns_names=("kinfer-metrics.kinfer.svc",), server=True)
    stranger = CertificateAuthority(tmp_path / "other", "other-ca").issue("x", "front-proxy-client", client=True)
    monitor = LagMonitor(None, poll_seconds=5)
    put_decision(monitor, "a", [100, 0, 0])
    port = free_port()
    server = MetricsApiServer(monitor, "127.0.0.1", port, serving.cert, serving.key)  # no CA known
    server.start()
    try:
        assert not server.ready, "a server that cannot tell the front proxy from anyone is not ready"
        served = Served(f"https://127.0.0.1:{port}", server, monitor, serving_ca.cert_path, stranger, stranger)
        status, body = served.get(f"{BASE}/namespaces/ns/kinfer_pipeline_lag")
        assert status == 401 and body["reason"] == "Unauthorized", "it fails closed, even for the right name"
    finally:
        server.stop()


def test_a_renewed_serving_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    serving_ca = CertificateAuthority(tmp_path / "serving", "metrics-ca")
    serving = serving_ca.issue("server", "kinfer-metrics", dns_names=("kinfer-metrics.kinfer.svc",), server=True)
    proxy_ca = CertificateAuthority(tmp_path / "proxy", "front-proxy-ca")
    proxy_client = proxy_ca.issue("proxy-client", "front-proxy-client", client=True)
    port = free_port()
    server = MetricsApiServer(LagMonitor(None), "127.0.0.1", port, serving.cert, serving.key,
                              client_ca_pem=proxy_ca.cert_path.read_text(), allowed_names=["front-proxy-client"],
                              reload_seconds=0.3)  # fmt: skip

    def serial() -> int:
        context = ssl.create_default_context(cafile=str(serving_ca.cert_path))
        context.check_hostname = False
        context.load_cert_chain(str(proxy_client.cert), str(proxy_client.key))
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="x") as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return int(x509.load_der_x509_certificate(der).serial_number)

    server.start()
    try:
        before = serial()
        time.sleep(0.05)  # a different modification time
        renewed = serving_ca.issue("server", "kinfer-metrics", dns_names=("kinfer-metrics.kinfer.svc",), server=True)
        assert renewed.cert == serving.cert, "written over the files the server was started with"
        wait_until(lambda: serial() != before, 30, "the renewed certificate on new connections")
    finally:
        server.stop()


def test_the_authorization_cache_is_bounded() -> None:
    from kinfer_operator.autoscaling.access_reviews import CACHE_ENTRIES, AccessReviews

    reviews = AccessReviews(None)  # type: ignore[arg-type]
    for index in range(CACHE_ENTRIES * 3):
        reviews.remember((f"user-{index}", (), "ns", "kinfer_pipeline_lag"), True)
    assert len(reviews) == CACHE_ENTRIES
