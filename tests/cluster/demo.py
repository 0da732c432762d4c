"""``make demo-cluster``: kinfer on a real node, from ``helm install`` to a backlog scaled out and back.

Starts a test bed of its own with the real node (tests/testbed/README.md), installs the chart with the images built
from this tree, applies the fraud sample (model baked into the runtime image, autoscaling 1..3 on lag), sends a
backlog into its input topic and prints, every two seconds, the records scored per second, the consumer group's
lag and the consumer pods (wanted/ready) while the HPA scales out, drains the backlog and scales back in. Then it
tears everything down, also on Ctrl-C.

    python -m tests.cluster.demo [--records N] [--seconds S]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from kubernetes import config

from tests.cluster.cluster import ClusterBed, chart_values, fraud_records, helm_install, produce
from tests.helm.release import Release
from tests.testbed import TestBed

ROOT = Path(__file__).resolve().parents[2] / ".testbed-demo-cluster"
PARTITIONS = 3


def lag_and_end(bootstrap: str, topic: str, group: str) -> tuple[int, int]:
    """(records not yet committed by ``group``, records in ``topic``)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = consumer.committed(partitions, timeout=10)
        lag = end = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            end += high - low
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag, end
    finally:
        consumer.close()


def output_count(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{uuid.uuid4().hex[:6]}"})
    try:
        marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(PARTITIONS)]
        return sum(high - low for low, high in marks)
    finally:
        consumer.close()


def watch(cluster: ClusterBed, name: str, manifest: dict, seconds: float) -> None:
    spec = manifest["spec"]
    bootstrap, deployment = cluster.bootstrap, f"{name}-consumer"
    group = spec["consumer"].get("group") or f"kinfer-{name}"  # the spec's default group
    source, sink = spec["topics"]["input"]["name"], spec["topics"]["output"]["name"]
    print(f"{'time':>6} {'scored/s':>9} {'lag':>8} {'pods wanted/ready':>18}")
    started, last_out, last_at, drained_at = time.monotonic(), output_count(bootstrap, sink), time.monotonic(), None
    most = 1
    while time.monotonic() - started < seconds:
        time.sleep(2)
        out, now = output_count(bootstrap, sink), time.monotonic()
        lag, _ = lag_and_end(bootstrap, source, group)
        wanted, ready = cluster.deployment_replicas(deployment)
        most = max(most, ready)
        rate = (out - last_out) / (now - last_at)
        last_out, last_at = out, now
        print(f"{now - started:5.0f}s {rate:9.0f} {lag:8d} {wanted:>9}/{ready}", flush=True)
        if lag == 0 and drained_at is None:
            drained_at = now
            print(f"backlog drained after {now - started:.0f} s; waiting for the scale-in (cooldown)", flush=True)
        if drained_at is not None and wanted == 1 and ready == 1 and now - drained_at > 5:
            print(f"back to one pod after {now - started:.0f} s (at most {most} ready pods)", flush=True)
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--seconds", type=float, default=300)
    args = parser.parse_args()
    bed = TestBed(ROOT, real_node=True)
    print("starting the test bed with a real node ...", flush=True)
    bed.start()
    try:
        assert bed.real_node is not None
        release = Release("kinfer", "kinfer-system")
        bed.kubectl("create", "namespace", release.namespace)
        print("helm install kinfer (images built from this tree) ...", flush=True)
        helm_install(bed, release, chart_values(bed.real_node, "kinfer", 1))
        bed.kubectl("create", "namespace", "demo")
        cluster = ClusterBed(bed, config.new_client_from_config(str(bed.kubeconfig)), bed.bootstrap_servers, "demo",
                             bed.real_node)  # fmt: skip
        autoscaling = {
            "enabled": True,
            "minReplicas": 1,
            "maxReplicas": PARTITIONS,
            "lagThreshold": 2000,
            "cooldownSeconds": 20,
            "scaleUpStabilizationSeconds": 0,
            "scaleDownStabilizationSeconds": 10,
        }
        manifest = cluster.pipeline("fraud", partitions=PARTITIONS, autoscaling=autoscaling)
        print("kubectl apply the fraud pipeline ...", flush=True)
        cluster.apply(manifest)
        cluster.wait_ready("fraud", timeout=240)
        print(f"Ready. Sending a backlog of {args.records} transactions ...", flush=True)
        produce(bed.bootstrap_servers, manifest["spec"]["topics"]["input"]["name"], fraud_records(args.records, 7))
        watch(cluster, "fraud", manifest, args.seconds)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        print("tearing down ...", flush=True)
        bed.stop()


if __name__ == "__main__":
    sys.exit(main())
