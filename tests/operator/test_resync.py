"""The periodic resync and the peering check it relies on (pure parts, and a pass against tests/operator/
fake_cluster.py). The resync against a real API server runs in test_lifecycle.py (drift corrected)."""

from __future__ import annotations

import datetime

from kinfer_operator.builders import naming
from kinfer_operator.k8s.client import object_path
from kinfer_operator.k8s.peering import ActiveReplica, is_active
from kinfer_operator.reconcile import Passes, Services
from kinfer_operator.resync import Resync, pipelines_path
from tests.operator.fake_cluster import FakeKube, FakeTopics
from tests.operator.test_reconcile_unit import NS, body
from tests.polling import wait_until

NOW = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)


def peer(priority: int, seconds_ago: int, lifetime: int = 60) -> dict[str, object]:
    seen = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def test_the_replica_with_the_highest_live_priority_is_active() -> None:
    status = {"me": peer(500, 5), "other": peer(100, 5)}
    assert is_active(status, 500, NOW)
    assert not is_active(status, 100, NOW)
    assert is_active({"me": peer(100, 5), "dead": peer(900, 120)}, 100, NOW), "an expired keep-alive is ignored"
    assert not is_active({"a": peer(7, 1), "b": peer(7, 1)}, 7, NOW), "kopf pauses both of two equal peers"
    assert is_active({}, 7, NOW), "alone, before kopf wrote its own entry"


def test_a_standalone_operator_is_always_active() -> None:
    assert ActiveReplica(FakeKube(), None, 0, []).active()  # type: ignore[arg-type]


def test_a_standby_replica_reads_the_peering_object_and_stands_by() -> None:
    kube = FakeKube()
    now = datetime.datetime.now(datetime.UTC)
    seen = now.isoformat()
    kube.put("/apis/kopf.dev/v1/clusterkopfpeerings/kinfer", {"status": {
        "a": {"priority": 10, "lifetime": 60, "lastseen": seen}, "b": {"priority": 20, "lifetime": 60, "lastseen": seen}
    }})  # fmt: skip
    assert not ActiveReplica(kube, "kinfer", 10, []).active()  # type: ignore[arg-type]
    assert ActiveReplica(kube, "kinfer", 20, []).active()  # type: ignore[arg-type]


def test_a_resync_pass_reconciles_every_pipeline_and_writes_status_and_events() -> None:
    kube, topics = FakeKube(), FakeTopics()
    pipeline = body()
    kube.put(f"{pipelines_path(NS)}/fraud", pipeline)
    services = Services(kube, topic_admin=lambda _kube, _pipeline: topics)  # type: ignore[arg-type]
    resync = Resync(services, Passes(services), ActiveReplica(None, None, 0, []), [NS], period_s=30)
    assert resync.pass_once() == 1
    stored = kube.objects[f"{pipelines_path(NS)}/fraud"]
    assert {c["type"] for c in stored["status"]["conditions"]} >= {"Ready", "TopicsReady", "ConsumersReady"}
    assert object_path("apps/v1", "Deployment", NS, naming.consumer_name("fraud")) in kube.objects
    assert any(e["reason"] == "Created" and e["involvedObject"]["name"] == "fraud" for e in kube.events)


def test_a_standby_replica_tracks_every_pipeline_for_its_metrics_api_and_writes_nothing() -> None:
    from kinfer_operator.autoscaling.monitor import LagMonitor

    kube, topics = FakeKube(), FakeTopics()
    kube.put(f"{pipelines_path(NS)}/fraud", body(autoscaling={"enabled": True}))
    fixed = body(autoscaling={"enabled": False})
    fixed["metadata"]["name"] = "fixed"
    kube.put(f"{pipelines_path(NS)}/fixed", fixed)
    monitor = LagMonitor(None)
    services = Services(kube, monitor=monitor, topic_admin=lambda _kube, _pipeline: topics)  # type: ignore[arg-type]
    resync = Resync(services, Passes(services), ActiveReplica(None, None, 0, []), [NS], period_s=30)
    writes = kube.writes
    assert resync.track_once() == 2
    assert monitor.latest(NS, "fraud") is not None, "the autoscaled pipeline is polled on this replica too"
    assert monitor.latest(NS, "fixed") is None
    assert kube.writes == writes and not topics.executed, "a standby reconciles nothing"


def test_a_standby_learns_of_a_new_pipeline_within_a_lag_poll_not_a_resync_period() -> None:
    """The HPA's calls reach either replica: a standby that learned of new pipelines only every resync period
    (30 s by default) answered them with no value meanwhile (seen with two operator pods on a real node)."""
    from kinfer_operator.autoscaling.monitor import LagMonitor

    kube, topics = FakeKube(), FakeTopics()
    monitor = LagMonitor(None)
    services = Services(kube, monitor=monitor, topic_admin=lambda _kube, _pipeline: topics)  # type: ignore[arg-type]
    seen = datetime.datetime.now(datetime.UTC).isoformat()
    kube.put("/apis/kopf.dev/v1/clusterkopfpeerings/kinfer", {"status": {
        "a": {"priority": 10, "lifetime": 60, "lastseen": seen}, "b": {"priority": 20, "lifetime": 60, "lastseen": seen}
    }})  # fmt: skip
    standby = ActiveReplica(kube, "kinfer", 10, [])  # type: ignore[arg-type]
    assert not standby.active()
    resync = Resync(services, Passes(services), standby, [NS], period_s=30, track_s=0.05).start()
    try:
        late = body(autoscaling={"enabled": True})
        late["metadata"]["name"] = "late"
        kube.put(f"{pipelines_path(NS)}/late", late)
        wait_until(lambda: monitor.latest(NS, "late") is not None, 5, "the standby to track the new pipeline")
    finally:
        resync.stop()
    assert not topics.executed, "a standby reconciles nothing"
