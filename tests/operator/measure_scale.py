"""Measure the operator at scale on a running test bed (``make testbed-up``): for the closing note, not a test.

    .venv/bin/python -m tests.operator.measure_scale --pipelines 200 --idle-seconds 300

Starts ``kinfer operator`` on a fresh namespace, applies N pipelines in one ``kubectl apply``, and prints the time
until every child exists and every pipeline is Ready, the objects rewritten and Events posted during an idle
window (goal 0), and the operator's RSS. Deletes everything (pipelines with ``deletionPolicy: Delete``) after.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kubernetes import client, config

from tests.operator.bed import Bed
from tests.operator.conftest import CRD, OperatorProcess
from tests.operator.test_scale import _all_children_exist, _all_ready, _resource_versions, creation_lags
from tests.polling import wait_until
from tests.testbed import DEFAULT_ROOT, TestBed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--reconcile-seconds", type=float, default=30)
    args = parser.parse_args(argv)
    testbed = TestBed.attach(DEFAULT_ROOT)
    if testbed is None:
        print("no running test bed: run `make testbed-up` first", file=sys.stderr)
        return 2
    api = config.new_client_from_config(str(testbed.kubeconfig))
    testbed.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    namespace = f"measure-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    bed = Bed(testbed, api, testbed.bootstrap_servers, namespace)
    log = Path(tempfile.mkdtemp()) / "operator.log"
    operator = OperatorProcess(
        testbed, namespace, log, extra_args=["--reconcile-seconds", str(args.reconcile_seconds)]
    ).start()
    results: dict[str, float] = {"pipelines": args.pipelines}
    try:
        rss_empty = operator.rss_bytes()
        names = [f"m{i:04d}" for i in range(args.pipelines)]
        started = time.monotonic()
        # One consumer each: the bed's three kwok nodes hold 330 pods.
        manifests = [
            bed.manifest(name, partitions=1, deletionPolicy="Delete", consumer={"replicas": 1}) for name in names
        ]
        bed.apply(*manifests)
        wait_until(lambda: _all_children_exist(bed, names), 1800, "all children", interval=2)
        results["apply_to_children_s"] = round(time.monotonic() - started, 1)
        wait_until(lambda: _all_ready(bed, names), 1800, "all Ready", interval=5)
        results["apply_to_ready_s"] = round(time.monotonic() - started, 1)
        lags = creation_lags(bed, names)
        results["created_to_children_median_s"] = lags[len(lags) // 2]
        results["created_to_children_max_s"] = lags[-1]
        time.sleep(args.reconcile_seconds + 5)  # let the last Ready flips land
        versions = _resource_versions(bed)
        events = len(core.list_namespaced_event(namespace).items)
        idle = operator.metric("kinfer_operator_reconcile_total", 'result="idle"')
        changed = operator.metric("kinfer_operator_reconcile_total", 'result="changed"')
        time.sleep(args.idle_seconds)
        after = _resource_versions(bed)
        results["idle_seconds"] = args.idle_seconds
        results["idle_passes"] = operator.metric("kinfer_operator_reconcile_total", 'result="idle"') - idle
        results["changing_passes"] = operator.metric("kinfer_operator_reconcile_total", 'result="changed"') - changed
        results["objects_rewritten"] = sum(1 for key, version in after.items() if versions.get(key) != version)
        results["new_events"] = len(core.list_namespaced_event(namespace).items) - events
        results["rss_mib_empty"] = round(rss_empty / 2**20, 1)
        results["rss_mib"] = round(operator.rss_bytes() / 2**20, 1)
        passes = operator.metric("kinfer_operator_reconcile_seconds_count")
        results["mean_pass_s"] = round(operator.metric("kinfer_operator_reconcile_seconds_sum") / max(passes, 1), 3)
        print(json.dumps(results, indent=2))
    finally:
        bed.delete_all_pipelines(timeout=600)
        operator.stop()
        core.delete_namespace(namespace)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
