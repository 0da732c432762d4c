"""``python -m tests.testbed up|down|status``: what ``make testbed-up`` and ``make testbed-down`` run."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .bed import DEFAULT_ROOT, TestBed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--kafka-only", action="store_true", help="start only the Kafka broker")
    parser.add_argument(
        "--real-node",
        action="store_true",
        default=os.environ.get("KINFER_REAL_NODE") == "1",
        help="also a real node: containerd + kubelet running pods (default: $KINFER_REAL_NODE=1)",
    )
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where the bed keeps its state and logs")
    args = parser.parse_args(argv)
    root = args.root
    if args.action == "up":
        running = TestBed.attach(root)
        if running:
            print(f"test bed already running (Kafka {running.bootstrap_servers}); source .testbed/env.sh")
            return 0
        TestBed.down(root)  # leftovers of a bed that half-died
        started = time.monotonic()
        bed = TestBed(root, kubernetes=not args.kafka_only, real_node=args.real_node).start()
        print(f"test bed ready in {time.monotonic() - started:.1f} s")
        print(f"  Kafka:      {bed.bootstrap_servers}")
        if bed.state["kubeconfig"]:
            print(f"  API server: {bed.state['api_server']}  (KUBECONFIG={bed.kubeconfig})")
        if node := bed.real_node:
            print(f"  real node:  {node.name} at {node.ip}; Kafka for its pods {node.kafka_bootstrap}")
            print(f"  images:     {', '.join(node.images.values())}  (node start {bed.state['node_timings']})")
        print(f"  logs:       {bed.log_dir}/")
        print(f"  source {root / 'env.sh'}  # KUBECONFIG, KAFKA_BOOTSTRAP_SERVERS, PATH with kubectl and helm")
        return 0
    if args.action == "down":
        stopped = TestBed.down(root)
        print("test bed stopped" if stopped else "no test bed running")
        return 0
    attached = TestBed.attach(root)
    print(json.dumps(attached.state, indent=2) if attached else "no test bed running")
    return 0 if attached else 1


if __name__ == "__main__":
    sys.exit(main())
