"""The operator runs ``spec.ingestion.connectors``: ``kubectl apply`` a pipeline with a file source, and the
records of a JSONL file reach the input topic through a real Kafka Connect worker; the status says so.

Uses the operator tests' helpers (``tests.operator``): the real ``kinfer operator`` process watching the test's
namespace on the bed's API server, with a 3-second reconcile timer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kinfer_operator.connect.rest import ConnectClient
from tests.ingestion.connect_worker import ConnectWorker
from tests.ingestion.kafka_helpers import read_topic
from tests.operator.bed import GROUP, PLURAL, VERSION, Bed
from tests.operator.conftest import CRD, OperatorProcess
from tests.polling import wait_until

FILE_SOURCE = "org.apache.kafka.connect.file.FileStreamSourceConnector"


def test_pipeline_connectors_are_created_reported_and_removed_by_the_operator(
    testbed: Any, kube_api: Any, kafka_bootstrap: str, namespace: str, connect_worker: ConnectWorker, tmp_path: Path
) -> None:
    testbed.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    testbed.wait_established("inferencepipelines.kinfer.io")
    bed = Bed(testbed, kube_api, kafka_bootstrap, namespace)
    lines = [f'{{"transaction_id": "op-{i}", "amount": {i}}}' for i in range(30)]
    source = tmp_path / "transactions.jsonl"
    source.write_text("\n".join(lines) + "\n")
    files = {"name": "files", "connectorClass": FILE_SOURCE, "config": {"file": str(source)}}
    manifest = bed.manifest("ingest", ingestion={"connectUrl": connect_worker.url, "connectors": [files]})
    connect = ConnectClient(connect_worker.url)
    connector = f"kinfer.{namespace}.ingest.files"

    # The worker listens on loopback, outside the default policy (a Service in the pipeline's namespace).
    allowed = ["--allowed-connect-url", connect_worker.url]
    operator = OperatorProcess(testbed, namespace, tmp_path / "operator.log", extra_args=allowed).start()
    try:
        bed.apply(manifest)
        running = bed.wait_reason("ingest", "ConnectorsReady", "ConnectorsRunning", timeout=120)
        assert running["status"] == "True" and running["message"] == "running: files (1 tasks)"
        assert connect.connectors()[connector]["info"]["config"]["topic"] == manifest["spec"]["topics"]["input"]["name"]
        messages = read_topic(kafka_bootstrap, manifest["spec"]["topics"]["input"]["name"], expected=30)
        assert sorted(m.value().decode() for m in messages) == sorted(lines)

        # Dropped from the spec: the operator deletes it from Connect.
        bed.patch_spec("ingest", {"ingestion": {"connectors": []}})
        bed.wait_reason("ingest", "ConnectorsReady", "NoConnectors", timeout=60)
        assert connector not in connect.connectors()

        # Strimzi asked for on a cluster without Strimzi: a condition that says so, the rest keeps working.
        strimzi = {"useStrimzi": True, "strimziCluster": "my-connect", "connectors": [files]}
        bed.patch_spec("ingest", {"ingestion": strimzi})
        condition = bed.wait_reason("ingest", "ConnectorsReady", "StrimziNotInstalled", timeout=60)
        assert condition["status"] == "False" and "KafkaConnector CRD" in condition["message"]
        assert bed.condition("ingest", "TopicsReady").get("status") == "True"

        # Back to the Connect cluster, then delete the pipeline: its connector goes with it (no finalizer).
        bed.patch_spec("ingest", {"ingestion": {"useStrimzi": False, "connectors": [files]}})
        bed.wait_reason("ingest", "ConnectorsReady", "ConnectorsRunning", timeout=120)
        bed.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "ingest")
        wait_until(lambda: connector not in connect.connectors(), 60, f"{connector} deleted with its pipeline")
    finally:
        bed.delete_all_pipelines(timeout=90)
        operator.stop()
