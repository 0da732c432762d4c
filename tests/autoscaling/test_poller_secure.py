"""The operator's Kafka side through SASL and TLS, on a broker of the module's own.

The admin settings the operator builds from the spec and its Secrets (credentials in memory, the CA as PEM text,
never a file) plan and create a pipeline's topics, and the lag poller reads lag and the group's position through
them, as ``test_poller.py`` does on the PLAINTEXT bed. A wrong password fails with a message that says the login
was refused (what the pipeline's status then shows), not only librdkafka's "Broker transport failure".
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kinfer_operator.autoscaling.lag import lag_by_partition
from kinfer_operator.autoscaling.poller import KafkaLagPoller
from kinfer_operator.kafka.admin import KafkaUnavailable, admin_client, admin_config, describe_topics, execute_plan
from kinfer_operator.kafka.topic_plan import plan_topics
from kinfer_runtime.spec import KafkaSpec, parse_pipeline
from tests.autoscaling.kafka_helpers import commit_offsets, produce_spread
from tests.conftest import SECURE_KAFKA_USERS

USER, PASSWORD = next(iter(SECURE_KAFKA_USERS.items()))


def secured(broker: Any, protocol: str, mechanism: str, password: str = PASSWORD) -> tuple[dict[str, Any], Any]:
    """A pipeline spec on the secured listener, and the admin settings built from it and its Secrets."""
    kafka: dict[str, Any] = {
        "bootstrapServers": broker.bootstrap(protocol),
        "securityProtocol": protocol,
        "sasl": {"mechanism": mechanism, "secretName": "kafka-user"},
    }
    if protocol == "SASL_SSL":
        kafka["tls"] = {"secretName": "kafka-ca"}
    tag = uuid.uuid4().hex[:8]
    pipeline = parse_pipeline({
        "apiVersion": "kinfer.io/v1alpha1", "kind": "InferencePipeline", "metadata": {"name": f"sec-{tag}"},
        "spec": {
            "kafka": kafka,
            "topics": {"input": {"name": f"sec-{tag}-in", "partitions": 3}, "output": {"name": f"sec-{tag}-out"},
                       "deadLetter": {"name": f"sec-{tag}-dlq", "partitions": 1}},
            "model": {"name": "fraud", "uri": "pvc://models/fraud"},
        },
    })  # fmt: skip
    secrets = {
        "kafka-user": {"username": USER, "password": password},
        "kafka-ca": {"ca.crt": broker.tls.ca_certificate.read_text()},
    }
    assert isinstance(pipeline.spec.kafka, KafkaSpec)
    return admin_config(pipeline.spec.kafka, secrets), pipeline.spec


@pytest.mark.parametrize(("protocol", "mechanism"), [("SASL_PLAINTEXT", "SCRAM-SHA-512"), ("SASL_SSL", "PLAIN")])
def test_operator_creates_topics_and_reads_lag_through_sasl(secure_kafka: Any, protocol: str, mechanism: str) -> None:
    config, spec = secured(secure_kafka, protocol, mechanism)
    assert "ssl.ca.location" not in config and (protocol != "SASL_SSL" or config["ssl.ca.pem"].startswith("-----"))
    client = admin_client(config)
    names = [spec.topics.input.name, spec.topics.output.name, spec.topics.dead_letter.name]
    plan = plan_topics(spec, describe_topics(client, names), created=set())
    assert sorted(topic.name for topic in plan.create) == sorted(names)
    assert execute_plan(client, plan) == set(names)
    observed = describe_topics(client, names)
    assert {name: state.partitions for name, state in observed.items()} == {names[0]: 3, names[1]: 3, names[2]: 1}

    topic, group = spec.topics.input.name, f"g-{uuid.uuid4().hex[:6]}"
    produce_spread(secure_kafka.plaintext_bootstrap, topic, 3, 30)  # traffic and commits need no SASL to set up
    commit_offsets(secure_kafka.plaintext_bootstrap, group, topic, {0: 10, 1: 4, 2: 0})
    poller = KafkaLagPoller(config)
    try:
        assert lag_by_partition(poller.read(topic, group), "earliest") == {0: 0, 1: 6, 2: 10}
    finally:
        poller.close()


def test_wrong_password_is_refused_with_a_clear_message(secure_kafka: Any) -> None:
    config, spec = secured(secure_kafka, "SASL_PLAINTEXT", "SCRAM-SHA-256", password="not-the-password")
    with pytest.raises(KafkaUnavailable) as refused:
        describe_topics(admin_client(config), [spec.topics.input.name])
    message = str(refused.value)
    assert message.startswith("cannot reach Kafka: ") and "Kafka refused access: " in message, message
    assert "SASL authentication error" in message and "not-the-password" not in message
