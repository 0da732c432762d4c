"""Nothing secret lands where ``view`` can read it: a Kafka password from a Secret, used by a pipeline whose
login fails (so the operator reports errors about it), appears in no ConfigMap, Deployment, status, Event or
operator log line; connector credentials are config-provider references, never values."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.operator.bed import Bed
from tests.operator.conftest import OperatorProcess
from tests.polling import wait_until

PASSWORD = "Pw-9f1e-Sensitive-7c2d"


def test_a_kafka_password_appears_in_no_configmap_status_event_or_log(bed: Bed, operator: OperatorProcess) -> None:
    data = {
        key: base64.b64encode(value.encode()).decode()
        for key, value in {"username": "alice", "password": PASSWORD}.items()
    }
    bed.core.create_namespaced_secret(bed.namespace, {"metadata": {"name": "kafka-login"}, "data": data})
    manifest = bed.manifest(
        "secretive",
        kafka={"securityProtocol": "SASL_PLAINTEXT", "sasl": {"mechanism": "PLAIN", "secretName": "kafka-login"}},
        ingestion={
            "connectUrl": f"http://connect.{bed.namespace}.svc:8083",
            "connectors": [
                {
                    "name": "jdbc",
                    "connectorClass": "io.confluent.connect.jdbc.JdbcSourceConnector",
                    "config": {"connection.password": f"${{secrets:{bed.namespace}/kafka-login:password}}"},
                }
            ],
        },
    )
    literal = bed.manifest("literal")
    literal["spec"]["ingestion"] = {
        "connectUrl": f"http://connect.{bed.namespace}.svc:8083",
        "connectors": [{"name": "jdbc", "connectorClass": "Jdbc", "config": {"connection.password": PASSWORD}}],
    }
    bed.apply(manifest, literal)
    message = bed.wait_reason("literal", "Ready", "InvalidSpec")["message"]
    assert "connection.password" in message and "config provider" in message
    # The bed's broker speaks PLAINTEXT: the operator's SASL login fails and it reports Kafka errors, pass after pass.
    wait_until(lambda: bed.condition("secretive", "TopicsReady").get("reason") == "KafkaError", 90, "a Kafka error")
    wait_until(lambda: len(bed.events("secretive")) >= 1, 30, "Events about the pipeline")

    places: dict[str, Any] = {
        "configmaps": [cm.data for cm in bed.core.list_namespaced_config_map(bed.namespace).items],
        "deployments": [
            bed.api.sanitize_for_serialization(d) for d in bed.apps.list_namespaced_deployment(bed.namespace).items
        ],
        "status": (bed.get("secretive") or {}).get("status"),
        "events": [f"{e.reason}: {e.message}" for e in bed.core.list_namespaced_event(bed.namespace).items],
    }
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    for place, content in places.items():
        text = json.dumps(content)
        assert PASSWORD not in text and encoded not in text, f"the password is in the {place}"
    log = operator.log_path.read_text()
    assert "kafka-login" in log or "secretive" in log, "the operator log is the one of this pipeline's operator"
    assert PASSWORD not in log and encoded not in log, "the password is in the operator's log"
    runtime_config = next(cm for cm in places["configmaps"] if cm and "pipeline.yaml" in cm)
    assert "ingestion" not in runtime_config["pipeline.yaml"], "connector configs stay in the pipeline object"
