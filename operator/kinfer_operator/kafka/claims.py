"""Which pipelines name which topic of which Kafka cluster, so that two of them never fight over one topic (pure).

Pipelines may share a topic (two models scoring one stream read one input topic, each in its own consumer group).
What they may not do is ask different things of it: in mode Create each pass sets the configs its spec lists (and
the pipeline that created the topic removes the others), so two specs that list different configs for the same
topic would rewrite it back and forth on every pass. The operator keeps this registry in memory (filled by the
passes, so complete within one resync period after a restart); a topic whose claimants disagree is left as it is
by all of them, and each says so in ``TopicsReady`` with reason ``TopicConflict``.
"""

from __future__ import annotations

import threading

from kinfer_runtime.spec import InferencePipeline, TopicMode

PipelineKey = tuple[str, str]  # (namespace, name)
TopicKey = tuple[str, str]  # (Kafka cluster: its sorted bootstrap servers, topic name)


def cluster_of(bootstrap_servers: str) -> str:
    return ",".join(sorted(server.strip() for server in bootstrap_servers.split(",") if server.strip()))


class TopicClaims:
    """Thread-safe: kopf's handler threads and the resync claim at the same time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asks: dict[TopicKey, dict[PipelineKey, dict[str, str]]] = {}

    def claim(self, pipeline: InferencePipeline) -> dict[str, str]:
        """Record what this pipeline asks of its Create-mode topics; returns, per topic in conflict, a message
        naming the other pipeline and the settings the two specs disagree on."""
        me = (pipeline.metadata.namespace, pipeline.metadata.name)
        cluster = cluster_of(pipeline.spec.kafka.bootstrap_servers)
        mine = {
            (cluster, t.name): dict(t.config) for _, t in pipeline.spec.topics.roles() if t.mode is TopicMode.CREATE
        }
        conflicts: dict[str, str] = {}
        with self._lock:
            for asks in self._asks.values():
                asks.pop(me, None)  # a topic this pipeline no longer names is let go
            for key, config in mine.items():
                others = self._asks.setdefault(key, {})
                for (namespace, name), theirs in sorted(others.items()):
                    if theirs != config:
                        conflicts[key[1]] = (
                            f"topic {key[1]!r} is also named in mode Create by pipeline {namespace}/{name}, whose "
                            f"spec lists configs {theirs or '{}'} where this one lists {config or '{}'}: make the "
                            "two lists the same, or set mode Adopt in one of them; kinfer changes the topic for "
                            "neither until then"
                        )
                        break
                others[me] = config
            for key in [k for k, asks in self._asks.items() if not asks]:
                del self._asks[key]
        return conflicts

    def release(self, namespace: str, name: str) -> None:
        """The pipeline is gone."""
        with self._lock:
            for asks in self._asks.values():
                asks.pop((namespace, name), None)


class CreatedTopics:
    """The topics each pipeline created, as this process's passes learnt them, merged into ``status.createdTopics``.

    The status is the record that survives a restart, but a pass can begin with a status read before an earlier
    pass's write landed: the resync lists pipelines before it takes a pipeline's lock, and kopf patches the status
    after its handler returns. Such a pass found the topics existing and, trusting the stale status alone, would
    have written that the pipeline created none, and ``deletionPolicy: Delete`` would then keep them. Keyed by uid:
    a pipeline deleted and created again under its name starts afresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._created: dict[tuple[str, str, str], frozenset[str]] = {}

    def merged(self, namespace: str, name: str, uid: str, recorded: list[str] | None) -> list[str]:
        with self._lock:
            known = self._created.get((namespace, name, uid), frozenset())
        return sorted(set(recorded or []) | known)

    def record(self, namespace: str, name: str, uid: str, topics: list[str]) -> None:
        with self._lock:
            self._created[(namespace, name, uid)] = frozenset(topics)

    def release(self, namespace: str, name: str) -> None:
        with self._lock:
            for key in [k for k in self._created if k[:2] == (namespace, name)]:
                del self._created[key]
