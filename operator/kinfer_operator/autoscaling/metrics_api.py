"""The external metrics API (``external.metrics.k8s.io/v1beta1``) the HPA reads through the aggregation layer.

Served by the operator over TLS from a thread of its own (aiohttp). Only the API server's front proxy may
call: the server requires a client certificate signed by the cluster's request-header CA, with a common name
among the allowed names, and asks the API server (SubjectAccessReview) whether the user named in
``X-Remote-User``/``X-Remote-Group`` may read the metric — the delegated authentication and authorization of
an aggregated API server. It fails closed: without the request-header CA it answers no metric to anyone (and
``ready`` is False, which the operator's ``/readyz`` reports). The serving certificate is re-read when its files
change (a renewal needs no restart), the CA every few minutes, and the authorization cache is bounded. Values come
from the ``LagMonitor``'s latest fresh decision per pipeline; a pipeline whose polls fail or stall serves no value,
so the HPA holds its size instead of acting on stale lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from kubernetes.client import ApiClient

from kinfer_operator import metrics
from kinfer_operator.autoscaling.access_reviews import AccessReviews
from kinfer_operator.autoscaling.metric_values import metric_values, selector_matches
from kinfer_operator.autoscaling.monitor import LagMonitor
from kinfer_operator.autoscaling.scalers import METRIC_NAMES, METRICS_GROUP, METRICS_VERSION
from kinfer_operator.builders import naming
from kinfer_operator.k8s.client import Kube

log = logging.getLogger(__name__)
GROUP_VERSION = f"{METRICS_GROUP}/{METRICS_VERSION}"
RELOAD_SECONDS = 30.0  # how often the certificate files are checked for a renewal
CA_REFRESH_SECONDS = 300.0


def discovery_resources() -> dict[str, Any]:
    resources = [
        {"name": name, "singularName": "", "namespaced": True, "kind": "ExternalMetricValueList", "verbs": ["get"]}
        for name in METRIC_NAMES
    ]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": resources}


def api_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": METRICS_VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": METRICS_GROUP,
        "versions": [version],
        "preferredVersion": version,
    }


class MetricsApiServer:
    def __init__(
        self,
        monitor: LagMonitor,
        host: str,
        port: int,
        cert_file: Path,
        key_file: Path,
        api: ApiClient | None = None,
        client_ca_pem: str | None = None,
        allowed_names: list[str] | None = None,
        reload_seconds: float = RELOAD_SECONDS,
    ):
        self.monitor, self.host, self.port = monitor, host, port
        self.reload_seconds = reload_seconds
        self.cert_file, self.key_file = cert_file, key_file
        self.kube = Kube(api) if api is not None else None
        if client_ca_pem is None and self.kube is not None:
            client_ca_pem, allowed_names = self._front_proxy_ca()
        self.client_ca_pem, self.allowed_names = client_ca_pem, allowed_names or []
        self.reviews = AccessReviews(self.kube) if self.kube is not None else None
        self._ssl: ssl.SSLContext | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._cert_stamp = self._stamp()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self.requests = 0

    def _front_proxy_ca(self) -> tuple[str | None, list[str]]:
        """The request-header CA and allowed names the API server publishes for aggregated servers."""
        import json

        assert self.kube is not None
        path = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
        data = (self.kube.request("GET", path) or {}).get("data") or {}
        names = json.loads(data.get("requestheader-allowed-names") or "[]")
        return data.get("requestheader-client-ca-file"), names

    @property
    def ready(self) -> bool:
        """Serving, and able to tell the front proxy from anyone else."""
        return self._ready.is_set() and bool(self.client_ca_pem and self.allowed_names)

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.client_ca_pem:
            context.load_verify_locations(cadata=self.client_ca_pem)
            context.verify_mode = ssl.CERT_REQUIRED
        else:
            log.error("external metrics API: the request-header CA is unknown; no metric is served to anyone")
        return context

    def _stamp(self) -> tuple[float, float]:
        try:
            return self.cert_file.stat().st_mtime, self.key_file.stat().st_mtime
        except OSError:
            return 0.0, 0.0

    async def _housekeeping(self) -> None:
        """Re-read a renewed certificate (new connections get it) and, now and then, the request-header CA."""
        ca_checked = time.monotonic()
        while True:
            await asyncio.sleep(self.reload_seconds)
            stamp = self._stamp()
            if stamp != self._cert_stamp and self._ssl is not None:
                try:
                    self._ssl.load_cert_chain(str(self.cert_file), str(self.key_file))
                    self._cert_stamp = stamp
                    log.info("external metrics API: serving certificate reloaded")
                except (OSError, ssl.SSLError) as error:  # half-written during a rotation: next round
                    log.warning("external metrics API: certificate not reloaded yet: %s", error)
            if self.kube is not None and time.monotonic() - ca_checked > CA_REFRESH_SECONDS:
                ca_checked = time.monotonic()
                loop = asyncio.get_running_loop()
                ca, names = await loop.run_in_executor(None, self._front_proxy_ca)
                if ca and self._ssl is not None:
                    self._ssl.load_verify_locations(cadata=ca)
                    if not self.client_ca_pem:
                        self._ssl.verify_mode = ssl.CERT_REQUIRED
                    self.client_ca_pem, self.allowed_names = ca, names

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/apis", self._apis)
        app.router.add_get(f"/apis/{METRICS_GROUP}", self._group)
        app.router.add_get(f"/apis/{GROUP_VERSION}", self._resources)
        app.router.add_get(f"/apis/{GROUP_VERSION}/namespaces/{{namespace}}/{{metric}}", self._values)
        app.router.add_get("/openapi/v2", self._openapi_v2)
        app.router.add_get("/openapi/v3", self._openapi_v3)
        for path in ("/healthz", "/readyz", "/livez"):
            app.router.add_get(path, self._ok)
        return app

    # --- handlers -------------------------------------------------------------------------------------------

    async def _apis(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]})

    async def _group(self, request: web.Request) -> web.Response:
        return web.json_response(api_group())

    async def _resources(self, request: web.Request) -> web.Response:
        return web.json_response(discovery_resources())

    async def _openapi_v2(self, request: web.Request) -> web.Response:
        info = {"title": "kinfer external metrics", "version": METRICS_VERSION}
        return web.json_response({"swagger": "2.0", "info": info, "paths": {}, "definitions": {}})

    async def _openapi_v3(self, request: web.Request) -> web.Response:
        return web.json_response({"paths": {}})

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _values(self, request: web.Request) -> web.Response:
        self.requests += 1
        response, answer = await self._answer(request)
        metrics.EXTERNAL_METRIC_ANSWERS.labels(answer).inc()
        return response

    async def _answer(self, request: web.Request) -> tuple[web.Response, str]:
        """The response, and how to count it: values, empty, refused or error."""
        namespace, metric = request.match_info["namespace"], request.match_info["metric"]
        refusal = self._check_caller(request)
        if refusal is not None:
            return refusal, "refused"
        if metric not in METRIC_NAMES:
            return status_response(404, "NotFound", f'external metric "{metric}" is not served by kinfer'), "error"
        if not await self._authorized(request, namespace, metric):
            return status_response(403, "Forbidden", f"may not get {metric} in namespace {namespace}"), "refused"
        try:
            items = [
                item
                for pipeline, decision in self.monitor.fresh_decisions(namespace)
                for item in metric_values(metric, pipeline, decision, datetime.now(UTC))
                if selector_matches(request.query.get("labelSelector", ""), {naming.LABEL_PIPELINE: pipeline})
            ]
        except ValueError as error:
            return status_response(400, "BadRequest", str(error)), "error"
        body = {"kind": "ExternalMetricValueList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}
        return web.json_response(body), "values" if items else "empty"

    def _check_caller(self, request: web.Request) -> web.Response | None:
        if not self.client_ca_pem or not self.allowed_names:
            return status_response(401, "Unauthorized", "the request-header CA is unknown: no caller is trusted")
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(item[0] for item in (peer or {}).get("subject", ()))
        if subject.get("commonName") not in self.allowed_names:
            return status_response(403, "Forbidden", "client certificate is not the API server's front proxy")
        return None

    async def _authorized(self, request: web.Request, namespace: str, metric: str) -> bool:
        user = request.headers.get("X-Remote-User")
        if self.reviews is None or user is None:
            return self.reviews is None  # without a cluster to ask (unit tests), there is nobody to refuse
        groups = tuple(request.headers.getall("X-Remote-Group", []))
        return await self.reviews.allowed(user, groups, namespace, metric)

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._serve, name="kinfer-metrics-api", daemon=True).start()
        if not self._ready.wait(30):
            raise RuntimeError("external metrics API did not start")

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        runner = self._runner = web.AppRunner(self.app(), access_log=None)
        loop.run_until_complete(runner.setup())
        self._ssl = self.ssl_context()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self._ssl)
        loop.run_until_complete(site.start())
        self._housekeeper = loop.create_task(self._housekeeping())
        log.info("external metrics API on https://%s:%d", self.host, self.port)
        self._ready.set()
        loop.run_forever()
        self._housekeeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(self._housekeeper)
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


def status_response(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason}
    return web.json_response({**body, "message": message}, status=code)
