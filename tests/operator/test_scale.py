"""Many pipelines and a crashing operator: convergence without duplicates, and idle reconciles that write nothing.

Prints ``MEASURE`` lines for the closing note (apply → children, idle API writes, operator RSS). The idle window
is ``KINFER_IDLE_SECONDS`` (default 30 s; the closing note's figure used 300 s).
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.operator.bed import Bed
from tests.operator.conftest import OperatorProcess
from tests.polling import wait_until

pytestmark = pytest.mark.testbed

CHILDREN = ("ConfigMap/{n}-runtime", "Deployment/{n}-consumer", "Service/{n}-metrics")


def _expected(name: str) -> set[str]:
    return {entry.format(n=name) for entry in CHILDREN}


def _all_children_exist(bed: Bed, names: list[str]) -> bool:
    selector = "app.kubernetes.io/managed-by=kinfer"
    present = {
        f"ConfigMap/{i.metadata.name}"
        for i in bed.core.list_namespaced_config_map(bed.namespace, label_selector=selector).items
    }
    present |= {
        f"Service/{i.metadata.name}"
        for i in bed.core.list_namespaced_service(bed.namespace, label_selector=selector).items
    }
    present |= {
        f"Deployment/{i.metadata.name}"
        for i in bed.apps.list_namespaced_deployment(bed.namespace, label_selector=selector).items
    }
    return all(_expected(name) <= present for name in names)


def _all_ready(bed: Bed, names: list[str]) -> bool:
    ready = set()
    for obj in bed.pipelines():
        status = obj.get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        if conditions.get("Ready") == "True" and status.get("observedGeneration") == obj["metadata"]["generation"]:
            ready.add(obj["metadata"]["name"])
    return ready >= set(names)


def creation_lags(bed: Bed, names: list[str]) -> list[int]:
    """Per pipeline: seconds from its creation (the API server's clock) to its last child's creation."""
    created = {o["metadata"]["name"]: o["metadata"]["creationTimestamp"] for o in bed.pipelines()}
    lags = []
    for name in names:
        stamps = [c["metadata"]["creationTimestamp"] for c in bed.children(name).values()]
        start = datetime.datetime.fromisoformat(created[name])
        lags.append(int(max((datetime.datetime.fromisoformat(s) - start).total_seconds() for s in stamps)))
    return sorted(lags)


def _resource_versions(bed: Bed) -> dict[str, str]:
    versions = {f"ipl/{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in bed.pipelines()}
    selector = "app.kubernetes.io/managed-by=kinfer"
    for kind, listing in (
        ("cm", bed.core.list_namespaced_config_map(bed.namespace, label_selector=selector)),
        ("svc", bed.core.list_namespaced_service(bed.namespace, label_selector=selector)),
        ("deploy", bed.apps.list_namespaced_deployment(bed.namespace, label_selector=selector)),
    ):
        versions |= {f"{kind}/{i.metadata.name}": i.metadata.resource_version for i in listing.items}
    return versions


def test_fifty_pipelines_converge_and_idle_reconciles_write_nothing(bed: Bed, tmp_path: Path) -> None:
    operator = OperatorProcess(
        bed.testbed, bed.namespace, tmp_path / "operator.log", extra_args=["--reconcile-seconds", "10"]
    ).start()
    try:
        names = [f"p{i:03d}" for i in range(50)]
        # Half of them ask for resources as people write them; the API server stores "0.5" as "500m" and "1024Mi"
        # as "1Gi", which must not look like drift (a patch per pipeline per pass that changes nothing).
        resources = {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"memory": "1536Mi"}}
        manifests = [
            bed.manifest(name, partitions=1, consumer={"replicas": 1, **({"resources": resources} if i % 2 else {})})
            for i, name in enumerate(names)
        ]
        started = time.monotonic()
        bed.apply(*manifests)
        wait_until(lambda: _all_children_exist(bed, names), 300, "children of 50 pipelines", interval=1)
        children_seconds = time.monotonic() - started
        wait_until(lambda: _all_ready(bed, names), 300, "50 pipelines Ready", interval=2)
        ready_seconds = time.monotonic() - started
        for name in names[:5]:
            assert set(bed.children(name)) == _expected(name)
        # Settle: the last status writes (Ready flips) and Events land, then measure an idle window.
        time.sleep(12)
        idle_seconds = float(os.environ.get("KINFER_IDLE_SECONDS", "30"))
        versions = _resource_versions(bed)
        events = len(bed.core.list_namespaced_event(bed.namespace).items)
        changed = operator.metric("kinfer_operator_reconcile_total", 'result="changed"')
        idle = operator.metric("kinfer_operator_reconcile_total", 'result="idle"')
        patches = operator.metric("kinfer_operator_api_requests_total", 'verb="PATCH"')
        time.sleep(idle_seconds)
        patches = operator.metric("kinfer_operator_api_requests_total", 'verb="PATCH"') - patches
        after = _resource_versions(bed)
        writes = sum(1 for key, version in after.items() if versions.get(key) != version)
        new_events = len(bed.core.list_namespaced_event(bed.namespace).items) - events
        idle_passes = operator.metric("kinfer_operator_reconcile_total", 'result="idle"') - idle
        changed_passes = operator.metric("kinfer_operator_reconcile_total", 'result="changed"') - changed
        rss = operator.rss_bytes()
        lags = creation_lags(bed, names)
        print(f"\nMEASURE pipeline created→its children created: median {lags[len(lags) // 2]}s, max {lags[-1]}s")
        print(
            f"\nMEASURE 50 pipelines: apply→all children {children_seconds:.1f}s, apply→all Ready {ready_seconds:.1f}s"
        )
        print(
            f"MEASURE idle {idle_seconds:.0f}s, 50 pipelines: {idle_passes:.0f} idle passes, "
            f"{changed_passes:.0f} changing passes, objects rewritten {writes}, new Events {new_events}, "
            f"PATCH requests {patches:.0f}"
        )
        print(f"MEASURE operator RSS with 50 pipelines: {rss / 2**20:.0f} MiB")
        assert idle_passes >= 50  # the timer did run over every pipeline during the window
        assert (writes, new_events, changed_passes, patches) == (0, 0, 0, 0)
    finally:
        bed.delete_all_pipelines(timeout=120)
        operator.stop()


def test_operator_killed_mid_reconcile_converges_without_duplicates(bed: Bed, operator: OperatorProcess) -> None:
    names = [f"crash{i}" for i in range(10)]
    manifests = [bed.manifest(name, partitions=2, deletionPolicy="Delete") for name in names]
    bed.apply(*manifests)
    # Kill as soon as the first child appears: most pipelines are half done, some not started.
    wait_until(lambda: any(bed.children(name) for name in names), 60, "the first child", interval=0.1)
    operator.kill()
    half_done = sum(1 for name in names if set(bed.children(name)) != _expected(name))
    operator.start()
    wait_until(lambda: _all_ready(bed, names), 180, "all pipelines Ready after the restart", interval=1)
    print(f"\nMEASURE killed with {half_done}/10 pipelines incomplete; converged after restart")
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        assert set(bed.children(name)) == _expected(name)
        assert len(bed.replica_sets(f"{name}-consumer")) == 1, f"{name}: the consumer was rolled needlessly"
        partitions = bed.topic_partitions(*bed.topic_names(manifest))
        assert list(partitions.values()) == [2, 2, 1]
    children: list[Any] = bed.apps.list_namespaced_deployment(bed.namespace).items
    assert len(children) == len(names)
