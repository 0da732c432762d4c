"""A changed Kafka Secret reaches the consumer pods without a spec change: the runtime reads its credentials at
start, so the operator rolls the pods when a Secret they mount changes (on the bed's API server; the broker speaks
PLAINTEXT, so the SASL login itself fails, which does not keep the Deployment from being made and kept)."""

from __future__ import annotations

import base64

from tests.operator.bed import Bed
from tests.operator.conftest import OperatorProcess
from tests.polling import wait_until

CONFIG_HASH = "kinfer.io/config-hash"


def login(password: str) -> dict[str, str]:
    return {
        key: base64.b64encode(value.encode()).decode() for key, value in {"username": "u", "password": password}.items()
    }


def test_a_rotated_kafka_secret_rolls_the_consumer_pods(bed: Bed, operator: OperatorProcess) -> None:
    bed.core.create_namespaced_secret(bed.namespace, {"metadata": {"name": "kafka-login"}, "data": login("one")})
    manifest = bed.manifest(
        "rotated",
        kafka={"securityProtocol": "SASL_PLAINTEXT", "sasl": {"mechanism": "PLAIN", "secretName": "kafka-login"}},
    )
    bed.apply(manifest)

    def template_hash() -> str | None:
        deployments = bed.apps.list_namespaced_deployment(bed.namespace).items
        annotations = [
            d.spec.template.metadata.annotations or {} for d in deployments if d.metadata.name == "rotated-consumer"
        ]
        return annotations[0].get(CONFIG_HASH) if annotations else None

    first = wait_until(template_hash, 90, "the consumer Deployment")
    bed.core.patch_namespaced_secret("kafka-login", bed.namespace, {"data": login("two")})
    second = wait_until(lambda: template_hash() != first and template_hash(), 60, "the pods to roll")
    assert second != first
