"""Starting autoscaling inside ``kinfer operator``: the lag monitor thread and the external metrics API server.

``start(options, registry, kube)`` is called once by the operator's startup (``kinfer_operator.main``) and
registers a kopf cleanup handler that stops both; ``start_autoscaling`` is the same without kopf (tests). The
returned service's monitor is handed to the reconcile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient

from kinfer_operator.autoscaling.metrics_api import MetricsApiServer
from kinfer_operator.autoscaling.monitor import LagMonitor
from kinfer_operator.builders import naming
from kinfer_operator.k8s.client import Kube

log = logging.getLogger(__name__)


@dataclass
class AutoscalingService:
    monitor: LagMonitor
    server: MetricsApiServer | None
    serving_wanted: bool = False  # a port and a certificate were given: the APIService routes here

    def ready(self) -> tuple[bool, str]:
        """For the operator's /readyz: a replica whose external metrics API should serve but cannot is unready,
        so that the APIService's Service does not route the HPA's requests to it."""
        if not self.serving_wanted:
            return True, "ok"
        if self.server is None:
            return False, "the external metrics API did not start (see the log)"
        if not self.server.ready:
            return False, "the external metrics API does not know the request-header CA: it serves no caller"
        return True, "ok"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.monitor.stop()


def start_autoscaling(
    api: ApiClient | None,
    poll_seconds: float = 5.0,
    metrics_port: int | None = 6443,
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
    host: str = "0.0.0.0",
    active: Callable[[], bool] = lambda: True,
) -> AutoscalingService:
    """Start the monitor and (with a port and a certificate) the metrics API; returns a handle to stop them."""
    monitor = LagMonitor(Kube(api) if api is not None else None, poll_seconds, active)
    monitor.start()
    server = None
    if metrics_port is not None and tls_cert_file is not None and tls_key_file is not None:
        try:
            server = MetricsApiServer(monitor, host, metrics_port, tls_cert_file, tls_key_file, api=api)
            server.start()
        except Exception as error:  # fail closed: no metrics API rather than one that can't check its callers
            log.error("external metrics API not started: %s", error)
            server = None
    elif metrics_port is not None:
        log.warning("external metrics API not started: give --tls-cert-file and --tls-key-file")
    wanted = metrics_port is not None and tls_cert_file is not None and tls_key_file is not None
    return AutoscalingService(monitor, server, wanted)


def start(options: Any, registry: Any, kube: Kube, active: Callable[[], bool]) -> AutoscalingService:
    """The hook ``kinfer_operator.main`` calls with its ``OperatorOptions``, kopf registry and API client."""
    import kopf

    cert, key = options.tls_cert_file, options.tls_key_file
    service = start_autoscaling(
        kube.api,
        poll_seconds=options.lag_poll_seconds,
        metrics_port=options.external_metrics_port,
        tls_cert_file=Path(cert) if cert else None,
        tls_key_file=Path(key) if key else None,
        host=options.metrics_host,
        active=active,
    )

    @kopf.on.cleanup(registry=registry)
    def stop_autoscaling(**_: Any) -> None:
        service.stop()

    @kopf.on.event(naming.GROUP, naming.VERSION, naming.PIPELINE_PLURAL, registry=registry, id="autoscaling-forget")
    def forget_deleted(event: kopf.RawEvent, name: str, namespace: str, **_: Any) -> None:
        if event.get("type") == "DELETED":
            service.monitor.forget(namespace, name)  # stop polling the lag of a pipeline that is gone

    return service
