"""End to end on the bed: Kafka lag → LagMonitor → external metrics API (via the aggregator) → the real HPA.

Figures (lag jump → HPA desired change, replicas vs partitions, scale changes) are printed with ``-s`` and
merged into ``.bench/autoscaling.json``.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Any

import pytest

from kinfer_operator.autoscaling.monitor import LagMonitor
from kinfer_operator.autoscaling.scalers import build_consumer_hpa
from kinfer_operator.builders import naming
from kinfer_operator.k8s.client import Kube, object_path
from kinfer_runtime.spec import InferencePipelineSpec
from tests.autoscaling.bed import Watcher, apply, metrics_api_on_bed, wait_for
from tests.autoscaling.kafka_helpers import commit_offsets, create_topic, end_offsets, produce_spread
from tests.autoscaling.pipelines import make_spec, spec_dict
from tests.autoscaling.report import record

pytestmark = pytest.mark.testbed
PARTITIONS = 4
THRESHOLD = 100


def consumer_deployment(name: str, replicas: int) -> dict[str, Any]:
    """A stand-in consumer Deployment (kwok runs no containers; the HPA only needs the scale subresource)."""
    labels = naming.selector_labels(name, naming.COMPONENT_CONSUMER)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": naming.consumer_name(name), "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "consumer", "image": "ghcr.io/kinfer/runtime:0.1.0"}],
                    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
                },
            },
        },
    }


def hpa_reads_metric(kube: Kube, namespace: str, name: str) -> bool:
    hpa = kube.request("GET", object_path("autoscaling/v2", "HorizontalPodAutoscaler", namespace, name)) or {}
    conditions = (hpa.get("status") or {}).get("conditions") or []
    return any(c["type"] == "ScalingActive" and c["status"] == "True" for c in conditions)


@pytest.mark.timing
def test_hpa_follows_lag_capped_at_partitions_and_scales_back(
    kube_api: Any, kafka_bootstrap: str, namespace: str, tmp_path: Path
) -> None:
    kube = Kube(kube_api)
    name = "lagged"
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    spec = make_spec(
        bootstrap=kafka_bootstrap,
        topic=topic,
        partitions=PARTITIONS,
        lagThreshold=THRESHOLD,
        minReplicas=1,
        maxReplicas=10,
        scaleDownStabilizationSeconds=5,
    )
    deployment = consumer_deployment(name, 1)
    apply(kube, object_path("apps/v1", "Deployment", namespace, naming.consumer_name(name)), deployment)
    hpa = build_consumer_hpa(name, spec)
    apply(kube, object_path("autoscaling/v2", "HorizontalPodAutoscaler", namespace, hpa["metadata"]["name"]), hpa)
    consumer = naming.consumer_name(name)
    with metrics_api_on_bed(kube, namespace, tmp_path) as monitor:
        monitor.track(namespace, name, spec)
        wait_for(lambda: hpa_reads_metric(kube, namespace, consumer), 90, "the HPA to read the external metric")
        with Watcher(kube, namespace, consumer) as watcher:
            phases: dict[str, dict[str, Any]] = {}
            # (phase, records to add or None to commit everything, expected replicas)
            for phase, records, expected in (
                ("lag_250_to_3", 250, 3),
                ("lag_1000_capped_at_4", 750, PARTITIONS),
                ("lag_consumed_back_to_1", None, 1),
            ):
                jumped = time.monotonic()  # before producing: the figure includes the produce itself
                if records is not None:
                    produce_spread(kafka_bootstrap, topic, PARTITIONS, records)
                else:
                    commit_offsets(
                        kafka_bootstrap, spec.consumer_group(name), topic, end_offsets(kafka_bootstrap, topic, 4)
                    )
                try:
                    wait_for(
                        lambda expected=expected: (s := watcher.latest()) and s.deployment_replicas == expected,
                        120,
                        f"{phase}: the consumer Deployment at {expected} replicas",
                    )
                except AssertionError as error:
                    if watcher.disturbed_since(jumped):
                        raise AssertionError(f"{error} (another test replaced the APIService meanwhile)") from None
                    raise
                settled = time.monotonic() - jumped
                time.sleep(10)  # a few more HPA syncs: it must stay there (the cap is not partitions + 1)
                reaction = watcher.first_change_after(jumped)
                phases[phase] = {
                    "hpa_reaction_seconds": None if reaction is None else round(reaction, 2),
                    "deployment_settled_seconds": round(settled, 2),
                    "replicas": watcher.latest().deployment_replicas,  # type: ignore[union-attr]
                    # a concurrent test took the APIService over: this phase's timing is not ours to report
                    "disturbed": watcher.disturbed_since(jumped),
                }
                assert watcher.latest().deployment_replicas == expected  # type: ignore[union-attr]
            tracked = monitor.latest(namespace, name)
            assert tracked is not None and tracked.decision is not None
        # scale-up phases: the lag jumps (the scale-down phase waits out its 5 s window on purpose)
        reactions = [
            p["hpa_reaction_seconds"]
            for name, p in phases.items()
            if name.startswith("lag_")
            and "back_to" not in name
            and p["hpa_reaction_seconds"] is not None
            and not p["disturbed"]
        ]
        record(
            "e2e_hpa",
            {
                "partitions": PARTITIONS,
                "lag_threshold": THRESHOLD,
                "phases": phases,
                "max_replicas_seen": watcher.max_replicas(),
                "deployment_scale_changes": watcher.changes(),
                "max_lag_jump_to_hpa_desired_change_seconds": max(reactions) if reactions else None,
                "scale_down_window_seconds": 5,
                "hpa_sync_period_seconds": 3,
                "lag_poll_seconds": 1.0,
            },
        )
        assert watcher.max_replicas() <= PARTITIONS
        assert all(p["hpa_reaction_seconds"] is not None for p in phases.values())


@pytest.mark.timing
def test_scale_to_zero_after_cooldown_and_wake_on_first_records(
    kube_api: Any, kafka_bootstrap: str, namespace: str, tmp_path: Path
) -> None:
    kube = Kube(kube_api)
    name = "sleepy"
    topic = create_topic(kafka_bootstrap, 2)
    spec = make_spec(
        bootstrap=kafka_bootstrap,
        topic=topic,
        partitions=2,
        lagThreshold=THRESHOLD,
        minReplicas=0,
        maxReplicas=4,
        cooldownSeconds=5,
        scaleDownStabilizationSeconds=5,
    )
    consumer = naming.consumer_name(name)
    apply(kube, object_path("apps/v1", "Deployment", namespace, consumer), consumer_deployment(name, 1))
    hpa = build_consumer_hpa(name, spec)
    apply(kube, object_path("autoscaling/v2", "HorizontalPodAutoscaler", namespace, consumer), hpa)
    with metrics_api_on_bed(kube, namespace, tmp_path) as monitor, Watcher(kube, namespace, consumer) as watcher:
        monitor.track(namespace, name, spec)
        started = time.monotonic()
        wait_for(lambda: (s := watcher.latest()) and s.deployment_replicas == 0, 90, "scale to zero when idle")
        idle_to_zero = time.monotonic() - started
        produced = time.monotonic()
        produce_spread(kafka_bootstrap, topic, 2, 30)
        wait_for(lambda: (s := watcher.latest()) and s.deployment_replicas == 1, 60, "wake on the first records")
        wake = time.monotonic() - produced
        time.sleep(8)  # longer than the cooldown: lag keeps it awake
        assert watcher.latest().deployment_replicas == 1  # type: ignore[union-attr]
        commit_offsets(kafka_bootstrap, spec.consumer_group(name), topic, end_offsets(kafka_bootstrap, topic, 2))
        consumed = time.monotonic()
        wait_for(lambda: (s := watcher.latest()) and s.deployment_replicas == 0, 90, "back to zero once consumed")
        back_to_zero = time.monotonic() - consumed
        assert (namespace, name, 0) in monitor.scale_actions and (namespace, name, 1) in monitor.scale_actions
    record(
        "e2e_scale_to_zero",
        {
            "cooldown_seconds": 5,
            "idle_to_zero_seconds": round(idle_to_zero, 2),
            "first_records_to_one_replica_seconds": round(wake, 2),
            "consumed_to_zero_seconds": round(back_to_zero, 2),
        },
    )


def test_consumer_scale_out_held_while_model_server_not_ready(
    kube_api: Any, kafka_bootstrap: str, namespace: str
) -> None:

    kube = Kube(kube_api)
    name = "served"
    topic = create_topic(kafka_bootstrap, 3)
    raw = spec_dict(bootstrap=kafka_bootstrap, topic=topic, partitions=3, lagThreshold=THRESHOLD)
    raw["serving"] = {"mode": "tfserving"}
    spec = InferencePipelineSpec.model_validate(raw)
    apply(
        kube, object_path("apps/v1", "Deployment", namespace, naming.consumer_name(name)), consumer_deployment(name, 1)
    )
    server = consumer_deployment(name, 1)
    server["metadata"]["name"] = naming.tfserving_name(name)
    labels = naming.selector_labels(name, naming.COMPONENT_TFSERVING)
    server["metadata"]["labels"] = server["spec"]["selector"]["matchLabels"] = labels
    server["spec"]["template"]["metadata"]["labels"] = labels
    server["spec"]["template"]["spec"]["nodeSelector"] = {"kinfer.io/no-such-node": "true"}  # stays Pending
    server_path = object_path("apps/v1", "Deployment", namespace, naming.tfserving_name(name))
    apply(kube, server_path, server)
    monitor = LagMonitor(kube, poll_seconds=1)
    monitor.track(namespace, name, spec)
    produce_spread(kafka_bootstrap, topic, 3, 300)

    def decision() -> Any:
        monitor.poll_once()
        tracked = monitor.latest(namespace, name)
        assert tracked is not None and tracked.error is None, tracked and tracked.error
        return tracked.decision

    held = decision()
    assert held.held_by_serving and held.desired_replicas == 1 and held.metric_value == THRESHOLD
    assert held.serving_demand_value == 3 * THRESHOLD  # TF Serving's HPA still sees the demand
    kube.request(
        "PATCH",
        server_path,
        body={"spec": {"template": {"spec": {"nodeSelector": None}}}},
        content_type="application/merge-patch+json",
    )
    released = wait_for(
        lambda: (d := decision()) and not d.held_by_serving and d, 180, "TF Serving Ready (kwok makes its pod Ready)"
    )
    assert released.desired_replicas == 3
    monitor.stop()


def test_poller_credentials_come_from_the_named_secrets(kube_api: Any, namespace: str) -> None:
    from kinfer_operator.k8s.client import kafka_secrets

    kube = Kube(kube_api)
    data = {"username": "YWxpY2U=", "password": "czNjcjN0", "ca.crt": "Q0E="}  # alice / s3cr3t / CA
    kube.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body={"metadata": {"name": "kafka"}, "data": data})
    raw = spec_dict()
    raw["kafka"] |= {
        "securityProtocol": "SASL_SSL",
        "sasl": {"mechanism": "SCRAM-SHA-512", "secretName": "kafka"},
        "tls": {"secretName": "kafka"},
    }
    secrets = kafka_secrets(kube, namespace, InferencePipelineSpec.model_validate(raw).kafka)
    assert secrets == {"kafka": {"username": "alice", "password": "s3cr3t", "ca.crt": "CA"}}


@pytest.mark.timing
def test_real_hpa_does_not_flap_on_oscillating_lag(
    kube_api: Any, kafka_bootstrap: str, namespace: str, tmp_path: Path
) -> None:
    """Lag (2 ± 20 %) x threshold with a 20 s period for 2 minutes, through the real HPA (time compressed)."""
    kube = Kube(kube_api)
    name = "wobbly"
    partitions, base, period, duration = 4, 2, 20.0, 120.0
    topic = create_topic(kafka_bootstrap, partitions)
    spec = make_spec(
        bootstrap=kafka_bootstrap,
        topic=topic,
        partitions=partitions,
        lagThreshold=THRESHOLD,
        maxReplicas=10,
        scaleDownStabilizationSeconds=30,  # longer than the period, as the 300 s default is for minutes-long waves
    )
    consumer = naming.consumer_name(name)
    apply(kube, object_path("apps/v1", "Deployment", namespace, consumer), consumer_deployment(name, base))
    hpa = build_consumer_hpa(name, spec)
    apply(kube, object_path("autoscaling/v2", "HorizontalPodAutoscaler", namespace, consumer), hpa)
    group = spec.consumer_group(name)
    with metrics_api_on_bed(kube, namespace, tmp_path) as monitor:
        monitor.track(namespace, name, spec)
        wait_for(lambda: hpa_reads_metric(kube, namespace, consumer), 90, "the HPA to read the external metric")
        with Watcher(kube, namespace, consumer) as watcher:
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < duration:
                lag = base * THRESHOLD * (1 + 0.2 * math.sin(2 * math.pi * elapsed / period))
                produce_spread(kafka_bootstrap, topic, partitions, 40)  # records keep arriving...
                ends = end_offsets(kafka_bootstrap, topic, partitions)
                per_partition = round(lag / partitions)
                # ...and a consumer keeps committing so that exactly `lag` records stay behind
                commit_offsets(kafka_bootstrap, group, topic, {p: max(0, e - per_partition) for p, e in ends.items()})
                time.sleep(1.0)
        # the first period settles the size from where the HPA stood before any lag; then nothing may move
        settled = [s.deployment_replicas for s in watcher.samples if s.time >= started + period]
        history = [r for r in settled if r is not None]
        steps = [b - a for a, b in itertools.pairwise(history) if a != b]
        reversals = sum(1 for a, b in itertools.pairwise(steps) if a * b < 0)
        record(
            "e2e_flapping_real_hpa",
            {
                "seconds_counted": duration - period,
                "period_seconds": period,
                "lag_band": [round(base * THRESHOLD * 0.8), round(base * THRESHOLD * 1.2)],
                "scale_changes_after_first_period": len(steps),
                "direction_reversals": reversals,
                "replicas_seen": sorted(set(history)),
                "disturbed": watcher.disturbed_since(started),
            },
        )
        assert reversals == 0, history
        assert len(steps) <= 1, history
