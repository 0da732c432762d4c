"""Whether this operator replica is the active one among its peers, read from kopf's peering objects.

kopf pauses a replica that sees a live peer of higher (or equal) priority: only the active replica handles
events. What kopf does not pause is the operator's own work outside kopf's handlers, namely the periodic resync
(``kinfer_operator.resync``) and the lag monitor behind the external metrics API; both ask
:class:`ActiveReplica` instead. It reads the ``KopfPeering`` (or ``ClusterKopfPeering``) objects that kopf keeps
its peers' keep-alives in: each peer's ``status.<id>`` has ``priority``, ``lifetime`` (s) and ``lastseen``.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from kinfer_operator.k8s.client import Kube, KubeError

log = logging.getLogger(__name__)
PEERING_GROUP = "kopf.dev/v1"
RECHECK_S = 5.0


def live_priorities(status: Mapping[str, Any], now: datetime.datetime) -> list[int]:
    """Priorities of the peers whose keep-alive has not expired (pure)."""
    live = []
    for peer in status.values():
        if not isinstance(peer, Mapping):
            continue
        try:
            seen = datetime.datetime.fromisoformat(str(peer["lastseen"]))
            lifetime = datetime.timedelta(seconds=int(peer.get("lifetime", 60)))
        except (KeyError, ValueError):
            continue
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=datetime.UTC)
        if seen + lifetime > now:
            live.append(int(peer.get("priority", 0)))
    return live


def is_active(status: Mapping[str, Any], own_priority: int, now: datetime.datetime) -> bool:
    """Active as kopf decides it: no other live peer has a higher or the same priority. Our own entry is the one
    with our priority (priorities are drawn at random per replica, see ``kinfer_operator.main``), so a second
    entry with it is a peer kopf pauses us for. No entry at all (kopf has not written ours yet) counts as active
    only when nobody else is there either."""
    priorities = live_priorities(status, now)
    higher = [p for p in priorities if p > own_priority]
    same = [p for p in priorities if p == own_priority]
    return not higher and len(same) <= 1


class ActiveReplica:
    """Answers ``active()`` from the peering objects, re-read at most every few seconds."""

    def __init__(self, kube: Kube | None, peering: str | None, priority: int, namespaces: list[str]):
        """``peering`` None: standalone (always active). ``namespaces`` empty: a ClusterKopfPeering."""
        self.kube, self.peering, self.priority, self.namespaces = kube, peering, priority, namespaces
        self._lock = threading.Lock()
        self._checked = 0.0
        self._active = peering is None

    def active(self) -> bool:
        if self.peering is None or self.kube is None:
            return True
        with self._lock:
            if time.monotonic() - self._checked >= RECHECK_S:
                self._active = self._read()
                self._checked = time.monotonic()
            return self._active

    def _read(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        assert self.kube is not None
        paths = [f"/apis/{PEERING_GROUP}/clusterkopfpeerings/{self.peering}"] if not self.namespaces else [
            f"/apis/{PEERING_GROUP}/namespaces/{ns}/kopfpeerings/{self.peering}" for ns in self.namespaces
        ]  # fmt: skip
        try:
            bodies = [self.kube.request("GET", path) for path in paths]
        except KubeError as error:
            log.warning("cannot read the peering object: %s; acting as the active replica", error)
            return True
        return all(is_active((body or {}).get("status") or {}, self.priority, now) for body in bodies)
