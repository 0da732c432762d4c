"""The periodic resync: every pipeline reconciled again every ``--reconcile-seconds``, so drift is corrected
(a child deleted or edited by hand, a topic changed behind kinfer's back) even when nothing about the pipeline
itself changed.

kopf's own timers cannot do this without a finalizer on every pipeline (kopf keeps one while a timer runs), and
a finalizer would let a stopped operator block the deletion of pipelines and of their namespaces. So this is a
thread of its own: it lists the pipelines it watches, runs the same reconcile as the kopf handlers, and writes
the status patch and Events itself. Only the active replica resyncs (:class:`kinfer_operator.k8s.peering.
ActiveReplica`), as kopf lets only that one handle events; a standby replica registers the pipelines with its
lag monitor only, so that its external metrics API answers too (the API's Service routes to every replica).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kinfer_operator.builders import naming
from kinfer_operator.k8s.client import KubeError
from kinfer_operator.k8s.peering import ActiveReplica
from kinfer_operator.reconcile import Outcome, Services
from kinfer_operator.status.document import Event
from kinfer_operator.status.preflight import access_problems, parse_or_problems

log = logging.getLogger(__name__)

Reconciler = Callable[[dict[str, Any]], Outcome]


def pipelines_path(namespace: str | None) -> str:
    base = f"/apis/{naming.GROUP}/{naming.VERSION}"
    return (
        f"{base}/namespaces/{namespace}/{naming.PIPELINE_PLURAL}" if namespace else f"{base}/{naming.PIPELINE_PLURAL}"
    )


def event_body(pipeline: dict[str, Any], event: Event, now: str) -> dict[str, Any]:
    """A core/v1 Event about ``pipeline``, as kopf posts them (pure)."""
    meta = pipeline["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": f"{naming.GROUP}/{naming.VERSION}",
            "kind": naming.PIPELINE_KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": event.type,
        "reason": str(event.reason),
        "message": event.message[:1024],
        "source": {"component": "kinfer-operator"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class Resync:
    """Runs ``reconcile(body)`` for every watched pipeline each ``period_s``, while this replica is active."""

    def __init__(
        self,
        services: Services,
        reconcile: Reconciler,
        active: ActiveReplica,
        namespaces: list[str],
        period_s: float,
        track_s: float = 5.0,
    ) -> None:
        self.services, self.reconcile, self.active = services, reconcile, active
        self.namespaces: list[str | None] = list(namespaces) or [None]
        self.period_s = period_s
        # A standby lists the pipelines every track_s (one LIST call): a pipeline created a moment ago must get
        # values from this replica's metrics API as soon as the active one has them, not a resync period later.
        self.tick_s = min(period_s, track_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kinfer-resync", daemon=True)

    def start(self) -> Resync:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        # At once: the lag monitor learns of every pipeline (the active replica's kopf handlers reconcile them all
        # on start anyway), so that every replica's external metrics API answers from its first poll on.
        self.track_once()
        last_pass = time.monotonic()
        while not self._stop.wait(self.tick_s):
            if not self.active.active():
                self.track_once()
            elif time.monotonic() - last_pass >= self.period_s:
                self.pass_once()
                last_pass = time.monotonic()

    def track_once(self) -> int:
        """On a standby replica: register every pipeline with the lag monitor (nothing is reconciled or written),
        so that the external metrics API answers on every replica, whichever one the HPA's request reaches."""
        monitor, tracked = self.services.monitor, 0
        if monitor is None:
            return 0
        for body in self._list():
            meta = body.get("metadata") or {}
            pipeline, problems = parse_or_problems(
                meta.get("name", ""), meta.get("namespace", ""), body.get("spec") or {}
            )
            if pipeline is None or problems or access_problems(pipeline, self.services.access):
                continue  # the active replica reports what is wrong; nothing is polled meanwhile
            monitor.observe(pipeline.metadata.namespace, pipeline.metadata.name, pipeline.spec)
            tracked += 1
        return tracked

    def _list(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for namespace in self.namespaces:
            try:
                listed = self.services.kube.request("GET", pipelines_path(namespace)) or {}
            except KubeError as error:
                log.warning("resync: cannot list pipelines in %s: %s", namespace or "the cluster", error)
                continue
            items += [
                item for item in listed.get("items") or [] if not (item.get("metadata") or {}).get("deletionTimestamp")
            ]
        return items

    def pass_once(self) -> int:
        """One resync of every pipeline; returns how many were reconciled. Failures are logged per pipeline."""
        done = 0
        for body in self._list():
            if self._stop.is_set():
                break
            try:
                self.write(body, self.reconcile(body))
                done += 1
            except Exception:  # one broken pipeline must not stop the others
                meta = body.get("metadata") or {}
                log.exception("resync of %s/%s failed", meta.get("namespace"), meta.get("name"))
        return done

    def write(self, body: dict[str, Any], outcome: Outcome) -> None:
        kube, meta = self.services.kube, body["metadata"]
        if outcome.status_patch:
            path = f"{pipelines_path(meta['namespace'])}/{meta['name']}/status"
            kube.request("PATCH", path, body={"status": outcome.status_patch},
                         content_type="application/merge-patch+json")  # fmt: skip
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for event in outcome.events:
            kube.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event_body(body, event, now))
