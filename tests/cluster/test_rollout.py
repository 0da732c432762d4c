"""Rollouts on real pods: two consumer pods each load versions 1 and 2 of the fraud model baked into the runtime
image.

Canary: 10 % of keys are scored by version 2, the same keys after a pod is deleted and replaced; promoting
(version 2 pinned, the rollout removed, a spec change the operator rolls out) scores every later record with
version 2, and no record goes unscored across the change. The status shows the rollout while it is in the spec.

Shadow: version 2 scores every record beside version 1, exactly-once: the output topic gets one prediction of
version 1 per input and the shadow topic (created by the operator) one of version 2, none lost or published
twice; the status counts both versions' records from the pods' commits.
"""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from kinfer_runtime.records.output import MODEL_VERSION
from tests.autoscaling.report import record
from tests.cluster.cluster import ClusterBed, Received, TopicReader, fraud_records, produce, topic
from tests.polling import wait_until

pytestmark = pytest.mark.realnode
KEYS = 3000


def versions_by_key(received: list[Received]) -> dict[bytes, set[bytes]]:
    seen: dict[bytes, set[bytes]] = {}
    for output in received:
        seen.setdefault(output.key, set()).add(output.headers[MODEL_VERSION])
    return seen


def test_a_canary_scores_a_tenth_of_keys_on_real_pods_and_promotion_leaves_no_gap(
    cluster: ClusterBed, kafka_bootstrap: str
) -> None:
    name = "canary"
    model = {"versionPolicy": "Pinned", "version": 1, "rollout": {"candidateVersion": 2, "share": 0.1}}
    manifest = cluster.pipeline(name, partitions=3, consumer={"replicas": 2}, model=model)
    first = fraud_records(KEYS, seed=31)
    output = TopicReader(kafka_bootstrap, topic(manifest, "output"))
    try:
        cluster.apply(manifest)
        wait_until(lambda: cluster.topic_partitions(topic(manifest, "input")), 120, "the input topic")
        produce(kafka_bootstrap, topic(manifest, "input"), first)
        keys = {key for key, _ in first}
        got = output.until(lambda got: {r.key for r in got} >= keys, 300, "every record scored")
        before = versions_by_key(got)
        assert all(len(v) == 1 for v in before.values()), "a key scored by both versions"
        share = sum(v == {b"2"} for v in before.values()) / len(before)
        assert 0.09 <= share <= 0.11, f"candidate's share of keys {share:.3f}"
        rollout = (cluster.get(name) or {}).get("status", {}).get("rollout", {})
        assert rollout.get("summary") == "Canary 2 at 10%, live 1"

        # The same keys again after a pod is replaced: each lands on the version it had.
        (victim, _) = cluster.wait_ready_pods(name, 2)
        cluster.core.delete_namespaced_pod(victim.metadata.name, cluster.namespace)
        cluster.wait_ready_pods(name, 2, timeout=180)
        produce(kafka_bootstrap, topic(manifest, "input"), first)
        got = output.until(lambda got: len(got) >= 2 * KEYS, 300, "the same keys scored again")
        after = versions_by_key(got)
        changed = [key for key, versions in after.items() if len(versions) != 1]
        assert not changed, f"{len(changed)} keys changed version across the pod's replacement"

        # Promote, with records flowing across the change: every record scored, and version 2 only afterwards.
        promoted_at = time.monotonic()
        cluster.patch_spec(name, {"model": {"version": 2, "rollout": None}})
        during = fraud_records(KEYS, seed=32)
        produce(kafka_bootstrap, topic(manifest, "input"), during)
        wait_until(lambda: "rollout" not in (cluster.get(name) or {}).get("status", {}), 60, "the rollout status gone")
        wait_until(lambda: pods_run_version(cluster, name), 240, "every consumer pod on the promoted spec")
        rolled_s = time.monotonic() - promoted_at
        later = fraud_records(1000, seed=33)
        produce(kafka_bootstrap, topic(manifest, "input"), later)
        wanted = {key for key, _ in during} | {key for key, _ in later}
        got = output.until(lambda got: {r.key for r in got} >= wanted, 300, "every record across the promotion")
    finally:
        output.close()
    last = versions_by_key([r for r in got if r.key in {key for key, _ in later}])
    assert all(v == {b"2"} for v in last.values()), "a record after the promotion scored by version 1"
    record("canary on real pods", {"candidate_share_of_keys": round(share, 4), "keys": KEYS,
                                   "promotion_rolled_out_s": round(rolled_s, 1)}, "cluster")  # fmt: skip


def test_a_shadow_scores_every_record_beside_the_live_version_on_real_pods(
    cluster: ClusterBed, kafka_bootstrap: str
) -> None:
    name = "shadow"
    model = {"versionPolicy": "Pinned", "version": 1,
             "rollout": {"candidateVersion": 2, "mode": "Shadow", "share": 1.0}}  # fmt: skip
    consumer = {"replicas": 2, "delivery": "exactlyOnce"}
    topics = {"shadow": {"name": f"{cluster.namespace}.{name}.shadow", "partitions": 3}}
    manifest = cluster.pipeline(name, partitions=3, consumer=consumer, model=model, topics=topics)
    records = fraud_records(KEYS, seed=34)
    keys = {key for key, _ in records}
    output = TopicReader(kafka_bootstrap, topic(manifest, "output"))
    shadow = TopicReader(kafka_bootstrap, topic(manifest, "shadow"))
    try:
        cluster.apply(manifest)
        cluster.wait_ready_pods(name, 2, timeout=240)
        produce(kafka_bootstrap, topic(manifest, "input"), records)
        live = output.until(lambda got: {r.key for r in got} >= keys, 300, "every record scored by the live version")
        candidate = shadow.until(lambda got: {r.key for r in got} >= keys, 120, "every record in the shadow topic")
        output.poll(5)  # anything published twice arrives now
        shadow.poll(2)

        def scored() -> dict[str, int]:
            return dict((cluster.get(name) or {}).get("status", {}).get("scoredByVersion") or {})

        try:
            wait_until(lambda: scored() == {"1": KEYS, "2": KEYS}, 120, "status.scoredByVersion to count both versions")
        except AssertionError as error:
            raise AssertionError(f"{error}; status {(cluster.get(name) or {}).get('status')}") from None
        rollout = (cluster.get(name) or {}).get("status", {}).get("rollout", {})
    finally:
        output.close()
        shadow.close()
    twice = [key for key, n in Counter(r.key for r in live).items() if n > 1]
    assert len(live) == KEYS and not twice, f"{len(live)} outputs for {KEYS} inputs; {len(twice)} keys twice"
    assert {r.headers[MODEL_VERSION] for r in live} == {b"1"}, "only the live version's predictions are published"
    places = [orjson.loads(r.value)["source"] for r in candidate]
    assert len(candidate) == KEYS and len({(p["partition"], p["offset"]) for p in places}) == KEYS
    assert {r.key for r in candidate} == keys
    assert {r.headers[MODEL_VERSION] for r in candidate} == {b"2"}
    assert rollout.get("summary") == "Shadow 2 at 100%, live 1", rollout
    record("shadow on real pods", {"records": KEYS, "outputs": len(live), "shadow_predictions": len(candidate),
                                   "scored_by_version": scored()}, "cluster")  # fmt: skip


def pods_run_version(cluster: ClusterBed, name: str) -> bool:
    """The consumer Deployment has rolled out its latest spec (the promoted one): every pod updated and Ready,
    and no pod of the old spec left."""
    deployment = cluster.apps.read_namespaced_deployment(f"{name}-consumer", cluster.namespace)
    status, wanted = deployment.status, deployment.spec.replicas or 0
    rolled = (status.observed_generation or 0) >= (deployment.metadata.generation or 0) and wanted > 0
    rolled = rolled and (status.updated_replicas or 0) == wanted == (status.ready_replicas or 0)
    return rolled and (status.replicas or 0) == wanted and len(cluster.pods(name)) == wanted
