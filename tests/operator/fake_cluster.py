"""In-memory stand-ins for the two things a reconcile pass talks to: the Kubernetes API (``Kube.request``) and
Kafka's topics (``TopicAdmin``), for unit tests of ``kinfer_operator.reconcile``.

``FakeKube`` keeps objects by path: GET of an object or of a collection (with ``labelSelector``), server-side
apply as PATCH (the body replaces what the operator sets; status is kept), DELETE. Every request is counted by
verb, as the real ``Kube`` counts them. The behaviour against a real API server is tested on the bed.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from typing import Any

from kinfer_operator.kafka.topic_plan import TopicPlan, TopicState


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []
        self.events: list[dict[str, Any]] = []
        self._versions = itertools.count(1)

    @property
    def writes(self) -> int:
        return sum(count for verb, count in self.requests.items() if verb != "GET")

    def put(self, path: str, obj: dict[str, Any]) -> None:
        """Create or replace an object directly (what a user or another controller does)."""
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        self.objects[path] = obj

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any] | None:
        self.requests[method] += 1
        self.log.append((method, path))
        if method == "GET":
            if path in self.objects:
                return copy.deepcopy(self.objects[path])
            items = [o for p, o in self.objects.items() if p.rsplit("/", 1)[0] == path]
            if items or self._is_collection(path):
                selector = dict(query or []).get("labelSelector")
                return {"items": [copy.deepcopy(o) for o in items if _matches(o, selector)]}
            return None
        if method == "DELETE":
            return self.objects.pop(path, None)
        if method == "PATCH" and content_type == "application/apply-patch+yaml":
            live = self.objects.get(path)
            applied = copy.deepcopy(body)
            if live is not None and "status" in live:
                applied["status"] = live["status"]
            if live is not None and _stripped(live) == _stripped(applied):
                return copy.deepcopy(live)  # nothing changed: same resourceVersion, as the API server answers
            self.put(path, applied)
            return copy.deepcopy(self.objects[path])
        if method == "PATCH" and content_type == "application/merge-patch+json" and path.endswith("/status"):
            live = self.objects[path.removesuffix("/status")]
            status = live.setdefault("status", {})
            for key, value in (body.get("status") or {}).items():
                if value is None:
                    status.pop(key, None)
                else:
                    status[key] = value
            return copy.deepcopy(live)
        if method == "POST" and path.endswith("/events"):
            self.events.append(body)
            return body
        raise AssertionError(f"FakeKube: unexpected {method} {path}")

    @staticmethod
    def _is_collection(path: str) -> bool:
        # /api/v1/namespaces/<ns>/<plural> or /apis/<group>/<version>/namespaces/<ns>/<plural>
        parts = path.strip("/").split("/")
        return parts[-2] == "namespaces" or (len(parts) >= 2 and parts[-3] == "namespaces")


def _stripped(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj.get("metadata", {}).pop("resourceVersion", None)
    return obj


def _matches(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(key) == value for key, value in (term.split("=", 1) for term in selector.split(",")))


class FakeTopics:
    """Topics as Kafka would hold them (``execute`` carries a plan out), and batch runs' progress."""

    def __init__(self) -> None:
        self.topics: dict[str, TopicState] = {}
        self.executed: list[TopicPlan] = []
        self.progress: dict[str, tuple[int, int]] = {}  # batch runs' progress, by group

    def describe(self, names: list[str]) -> dict[str, TopicState]:
        return {name: self.topics[name] for name in names if name in self.topics}

    def run_progress(self, group: str) -> tuple[int, int] | None:
        return self.progress.get(group)

    def execute(self, plan: TopicPlan) -> set[str]:
        self.executed.append(plan)
        created = {topic.name for topic in plan.create if topic.name not in self.topics}
        for topic in plan.create:
            self.topics[topic.name] = TopicState(topic.name, topic.partitions, topic.replication_factor,
                                                 dict(topic.config))  # fmt: skip
        for name, count in plan.increase.items():
            state = self.topics[name]
            self.topics[name] = TopicState(name, count, state.replication_factor, state.configs)
        for name, configs in plan.set_configs.items():
            self.topics[name].configs.update(configs)
        for name, keys in plan.delete_configs.items():
            for key in keys:
                self.topics[name].configs.pop(key, None)
        return created
