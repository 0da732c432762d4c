"""Test-bed plumbing for the autoscaling end-to-end tests: the metrics API behind a real APIService, and a watcher.

The API server's aggregator reaches our server on loopback through a Service of type ExternalName
``localhost`` (kube-aggregator resolves ExternalName services itself when ``--enable-aggregator-routing`` is
off) and verifies it against the APIService's ``caBundle`` for the name ``<service>.<namespace>.svc``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from kinfer_operator.autoscaling.metrics_api import MetricsApiServer
from kinfer_operator.autoscaling.monitor import LagMonitor
from kinfer_operator.autoscaling.scalers import APISERVICE_NAME, build_apiservice, build_metrics_api_service
from kinfer_operator.k8s.client import Kube, object_path
from tests.polling import wait_until
from tests.testbed import free_port
from tests.testbed.pki import CertificateAuthority

SERVICE = "kinfer-metrics"
APISERVICE_PATH = f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE_NAME}"

# These tests report reaction times by when a wait returns: poll four times a second.
wait_for: Callable[..., Any] = partial(wait_until, interval=0.25)  # returns the truthy value, untyped


def apply(kube: Kube, path: str, manifest: dict[str, Any]) -> None:
    query = [("fieldManager", "kinfer-tests"), ("force", "true")]
    kube.request("PATCH", path, body=manifest, content_type="application/apply-patch+yaml", query=query)


@dataclass(frozen=True)
class ServingCert:
    cert: Path
    key: Path
    ca_pem: bytes


def serving_cert(tmp: Path, namespace: str) -> ServingCert:
    """A CA and a serving certificate for ``kinfer-metrics.<namespace>.svc`` (the name the aggregator checks)."""
    authority = CertificateAuthority(tmp / "metrics-pki", "metrics-ca")
    files = authority.issue("server", SERVICE, dns_names=(f"{SERVICE}.{namespace}.svc",), server=True)
    return ServingCert(files.cert, files.key, authority.cert_path.read_bytes())


@contextmanager
def apiservice_to_loopback(kube: Kube, namespace: str, port: int, ca_pem: bytes) -> Iterator[None]:
    """Register ``external.metrics.k8s.io`` to https://localhost:<port> for the test's length, then remove it."""
    try:
        service = build_metrics_api_service(SERVICE, namespace, port, external_name="localhost")
        apply(kube, object_path("v1", "Service", namespace, SERVICE), service)
        apply(kube, APISERVICE_PATH, build_apiservice(SERVICE, namespace, port, ca_pem))

        def available() -> bool:
            live = kube.request("GET", APISERVICE_PATH) or {}
            conditions = (live.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

        wait_for(available, 90, "the external metrics APIService to be Available")
        yield
    finally:
        kube.request("DELETE", APISERVICE_PATH)  # an unreachable APIService would break discovery for others


@contextmanager
def metrics_api_on_bed(kube: Kube, namespace: str, tmp: Path, poll_seconds: float = 1.0) -> Iterator[LagMonitor]:
    """A LagMonitor plus the external metrics API in this process, registered with the bed's aggregator."""
    cert = serving_cert(tmp, namespace)
    monitor = LagMonitor(kube, poll_seconds)
    port = free_port()
    server = MetricsApiServer(monitor, "127.0.0.1", port, cert.cert, cert.key, api=kube.api)
    monitor.start()
    server.start()
    try:
        with apiservice_to_loopback(kube, namespace, port, cert.ca_pem):
            yield monitor
    finally:
        server.stop()
        monitor.stop()


@dataclass
class Sample:
    time: float
    hpa_desired: int | None
    deployment_replicas: int | None
    apiservice_ours: bool  # the APIService is cluster-wide: another test on a shared bed may take it over


@dataclass
class Watcher:
    """Samples the HPA's desiredReplicas and the Deployment's replicas every ``interval`` seconds."""

    kube: Kube
    namespace: str
    name: str
    interval: float = 0.25
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Watcher:
        threading.Thread(target=self._run, daemon=True).start()
        wait_for(lambda: self.samples, 30, "the first sample")  # reactions are measured against it
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        hpa_path = object_path("autoscaling/v2", "HorizontalPodAutoscaler", self.namespace, self.name)
        deployment_path = object_path("apps/v1", "Deployment", self.namespace, self.name)
        while not self._stop.is_set():
            try:
                hpa = self.kube.request("GET", hpa_path) or {}
                deployment = self.kube.request("GET", deployment_path) or {}
                apiservice = self.kube.request("GET", APISERVICE_PATH) or {}
            except Exception as error:  # a slow API server under load: skip this sample, keep watching
                self.errors.append(str(error))
            else:
                desired = (hpa.get("status") or {}).get("desiredReplicas")
                replicas = (deployment.get("spec") or {}).get("replicas")
                service = (apiservice.get("spec") or {}).get("service") or {}
                ours = service.get("namespace") == self.namespace
                self.samples.append(Sample(time.monotonic(), desired, replicas, ours))
            self._stop.wait(self.interval)

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def desired_before(self, moment: float) -> int | None:
        """The HPA's desiredReplicas in the last sample taken before ``moment``."""
        earlier = [s.hpa_desired for s in self.samples if s.time < moment]
        return earlier[-1] if earlier else None

    def first_change_after(self, since: float, old: int | None = None) -> float | None:
        """Seconds from ``since`` to the first sample whose HPA desiredReplicas differs from ``old``
        (default: the value just before ``since``)."""
        old = self.desired_before(since) if old is None else old
        for sample in self.samples:
            if sample.time >= since and sample.hpa_desired is not None and sample.hpa_desired != old:
                return sample.time - since
        return None

    def disturbed_since(self, since: float) -> bool:
        """True when the APIService pointed elsewhere at some sample since ``since``."""
        return any(not s.apiservice_ours for s in self.samples if s.time >= since)

    def max_replicas(self) -> int:
        values = [v for s in self.samples for v in (s.hpa_desired, s.deployment_replicas) if v is not None]
        return max(values, default=0)

    def changes(self) -> int:
        seen = [s.deployment_replicas for s in self.samples if s.deployment_replicas is not None]
        return sum(1 for a, b in itertools.pairwise(seen) if a != b)
