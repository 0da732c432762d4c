"""Whether the user the API server's front proxy names may read an external metric: a SubjectAccessReview, with
the answers kept for a short while in a bounded cache (a caller cannot grow the operator's memory by varying the
user, groups or namespace it asks for).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from kinfer_operator.autoscaling.scalers import METRICS_GROUP, METRICS_VERSION
from kinfer_operator.k8s.client import Kube

CACHE_SECONDS = 30.0
CACHE_ENTRIES = 1024  # (user, groups, namespace, metric) answers kept; the least recently used go first

Question = tuple[str, tuple[str, ...], str, str]


class AccessReviews:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._cache: OrderedDict[Question, tuple[float, bool]] = OrderedDict()

    async def allowed(self, user: str, groups: tuple[str, ...], namespace: str, metric: str) -> bool:
        key = (user, groups, namespace, metric)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            self._cache.move_to_end(key)
            return cached[1]
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": list(groups),
                "resourceAttributes": {
                    "group": METRICS_GROUP,
                    "version": METRICS_VERSION,
                    "resource": metric,
                    "namespace": namespace,
                    "verb": "get",
                },
            },
        }
        kube = self.kube
        answer = await asyncio.get_running_loop().run_in_executor(
            None, lambda: kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
        )
        allowed = bool(((answer or {}).get("status") or {}).get("allowed"))
        self.remember(key, allowed)
        return allowed

    def remember(self, key: Question, allowed: bool) -> None:
        self._cache[key] = (time.monotonic(), allowed)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)

    def __len__(self) -> int:
        return len(self._cache)
