"""Chaos on real pods while records flow: a consumer pod deleted, another killed outright (grace period 0), and
the active operator pod killed. Every input still has its output; at-least-once may repeat a bounded number of
records (those processed but not committed when a pod died), exactly-once repeats none (read_committed) and the
active operator fences the killed pod's transactional id once its object is gone; the consumer Deployment is back
to its size and another operator replica took over.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.autoscaling.report import record
from tests.cluster.cluster import ClusterBed, TopicReader, fraud_records, pod_log, topic
from tests.cluster.conftest import Installed
from tests.helm.release import kubectl_json
from tests.polling import wait_until

pytestmark = pytest.mark.realnode
RATE, SECONDS, REPLICAS = 500, 36, 3


def active_operator_pod(cluster: ClusterBed, installed: Installed) -> str:
    """The operator pod kopf's peering names as active: the live peer with the highest priority (kopf's peer ids
    start with ``user@hostname``, and a pod's hostname is its name)."""
    peering_name = installed.values["peering"]["name"]  # namespaced mode: a KopfPeering in the watched namespace
    peering = kubectl_json(cluster.testbed, "get", "kopfpeering", peering_name, "-n", installed.pipelines_namespace)
    peers = ((peering or {}).get("status") or {}).items()
    names = [pod["metadata"]["name"] for pod in installed.operator_pods(cluster.testbed)]
    ranked = sorted(((int(p.get("priority", 0)), pid) for pid, p in peers if isinstance(p, dict)), reverse=True)
    for _, peer_id in ranked:
        for name in names:
            if f"@{name}/" in peer_id or peer_id.startswith(f"{name}/") or f"@{name}" in peer_id:
                return name
    raise AssertionError(f"no operator pod among the peers {[pid for _, pid in ranked]} (pods: {names})")


def paced_produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], done: threading.Event) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    started = time.monotonic()
    for i, (key, value) in enumerate(records):
        ahead = i / RATE - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    assert producer.flush(60) == 0
    done.set()


def kill(cluster: ClusterBed, namespace: str, pod: str, grace: int | None) -> None:
    args = ["delete", "pod", pod, "-n", namespace, "--wait=false"]
    if grace == 0:
        args += ["--grace-period=0", "--force"]
    cluster.testbed.kubectl(*args)


@pytest.mark.parametrize("delivery", ["atLeastOnce", "exactlyOnce"])
def test_no_record_is_lost_when_pods_and_the_operator_die(
    cluster: ClusterBed, installed: Installed, kafka_bootstrap: str, delivery: str
) -> None:
    name = "fraud-chaos" if delivery == "atLeastOnce" else "fraud-chaos-eos"
    manifest = cluster.pipeline(name, partitions=REPLICAS, consumer={"replicas": REPLICAS, "delivery": delivery})
    cluster.apply(manifest)
    cluster.wait_ready(name, timeout=240)
    wait_until(lambda: len(cluster.ready_pods(name)) == REPLICAS, 240, "every consumer pod Ready")
    records = fraud_records(RATE * SECONDS, seed=31 if delivery == "atLeastOnce" else 32)
    keys = {key for key, _ in records}
    output = TopicReader(kafka_bootstrap, topic(manifest, "output"))
    done = threading.Event()
    sender = threading.Thread(target=paced_produce, args=(kafka_bootstrap, topic(manifest, "input"), records, done))
    events: list[tuple[float, str]] = []
    started = time.monotonic()
    sender.start()
    try:
        output.poll(6)
        first, second, *_ = [pod.metadata.name for pod in cluster.ready_pods(name)]
        kill(cluster, cluster.namespace, first, grace=None)
        events.append((time.monotonic() - started, f"deleted consumer {first}"))
        output.poll(6)
        kill(cluster, cluster.namespace, second, grace=0)
        killed = time.monotonic()
        events.append((killed - started, f"killed consumer {second}"))
        operator = active_operator_pod(cluster, installed)
        if delivery == "exactlyOnce":
            # The killed pod's open transaction is ended by the active operator, not by transaction.timeout.ms.
            fenced = f"fenced kinfer-{cluster.namespace}-{name}-{second}"

            def logged() -> bool:
                return fenced in pod_log(cluster.core, installed.release.namespace, operator)

            wait_until(logged, 30, f"the active operator to log '{fenced}'")
            events.append((time.monotonic() - started, f"fenced {second} {time.monotonic() - killed:.1f} s after"))
        output.poll(6)
        kill(cluster, installed.release.namespace, operator, grace=0)
        events.append((time.monotonic() - started, f"killed active operator {operator}"))
        received = output.until(lambda got: done.is_set() and {r.key for r in got} >= keys, 600, "every output")
        output.poll(5)  # late duplicates, if any, are counted too
    finally:
        sender.join(120)
        output.close()
    received = output.received
    counts = Counter(r.key for r in received)
    lost = keys - set(counts)
    duplicated = sum(n - 1 for n in counts.values())
    assert not lost
    if delivery == "exactlyOnce":
        assert duplicated == 0, f"{duplicated} duplicates under exactly-once"
    else:
        # docs/runtime.md: per crash at most (4 in-flight batches + the acknowledged ones whose commit had not
        # landed, about one more) x maxBatchSize; two consumer pods die here (the deleted one drains first).
        bound = 2 * (4 + 1) * manifest["spec"]["consumer"].get("maxBatchSize", 256)
        assert duplicated <= bound, f"{duplicated} duplicates, more than two crashes can explain ({bound})"
    wait_until(lambda: len(cluster.ready_pods(name)) == REPLICAS, 240, "the Deployment back to its size")
    wait_until(lambda: len(installed.operator_pods(cluster.testbed)) == 2, 240, "the operator back to two pods")
    # Another replica took over: a change made now is reconciled (observedGeneration catches up).
    cluster.patch_spec(name, {"consumer": {"maxBatchWaitMs": 15}})
    took_over = time.monotonic()
    cluster.wait_ready(name, timeout=240)
    figures: dict[str, Any] = {
        "records": len(records),
        "lost": len(lost),
        "duplicated": duplicated,
        "events": [f"{t:.0f}s {what}" for t, what in events],
        "change_reconciled_after_s": round(time.monotonic() - took_over, 1),
    }
    record(f"chaos {delivery}", figures, "cluster")
