"""librdkafka settings built from the spec: delivery discipline, membership, security, pass-through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kinfer_runtime.kafka import settings as kafka_config
from kinfer_runtime.pipeline.batching import MIN_WAIT_FRACTION
from kinfer_runtime.spec import parse_pipeline


def pipeline(**spec_changes: Any) -> Any:
    spec: dict[str, Any] = {
        "kafka": {"bootstrapServers": "broker:9092"},
        "topics": {"input": {"name": "in"}, "output": {"name": "out"}, "deadLetter": {"name": "dlq"}},
        "model": {"name": "fraud", "uri": "pvc://models/fraud"},
    }
    for key, value in spec_changes.items():
        spec[key] = {**spec.get(key, {}), **value}
    return parse_pipeline({"apiVersion": "kinfer.io/v1alpha1", "kind": "InferencePipeline",
                           "metadata": {"name": "fraud", "namespace": "risk"}, "spec": spec})  # fmt: skip


def test_consumer_commits_only_explicitly_and_rebalances_incrementally() -> None:
    config = kafka_config.consumer_config(pipeline(), "b:1", kafka_config.Credentials())
    assert config["bootstrap.servers"] == "b:1"
    assert config["group.id"] == "kinfer-fraud"
    assert config["enable.auto.commit"] is False and config["enable.auto.offset.store"] is False
    assert config["partition.assignment.strategy"] == "cooperative-sticky"
    assert config["auto.offset.reset"] == "earliest"
    assert config["isolation.level"] == "read_committed"
    assert "group.instance.id" not in config
    # The broker must not hold a fetch longer than the batch wait (no one-second stalls at low rates).
    assert config["fetch.wait.max.ms"] <= 100


HELD = kafka_config.FETCH_MIN_BYTES


@pytest.mark.parametrize(
    ("max_batch_wait_ms", "min_bytes", "wait_ms"),
    [(20, HELD, 5), (100, HELD, 25), (4, HELD, 1), (3, 1, 10), (0, 1, 10), (1000, HELD, 100)],
)
def test_broker_holds_a_fetch_at_most_the_loops_shortest_batch_wait(
    max_batch_wait_ms: int, min_bytes: int, wait_ms: int
) -> None:
    settings = kafka_config.fetch_settings(max_batch_wait_ms)
    assert settings == {"fetch.min.bytes": min_bytes, "fetch.wait.max.ms": wait_ms}
    if min_bytes > 1:  # a held fetch never adds more than the batch window's own floor
        assert settings["fetch.wait.max.ms"] <= MIN_WAIT_FRACTION * max_batch_wait_ms


def test_consumer_config_uses_the_fetch_hold_of_its_batch_wait() -> None:
    config = kafka_config.consumer_config(pipeline(consumer={"maxBatchWaitMs": 40}), "b:1", kafka_config.Credentials())
    assert config["fetch.min.bytes"] == kafka_config.FETCH_MIN_BYTES and config["fetch.wait.max.ms"] == 10


def test_pod_name_gives_static_membership_and_spec_group_wins() -> None:
    p = pipeline(consumer={"group": "scorers", "autoOffsetReset": "latest"})
    config = kafka_config.consumer_config(p, "b:1", kafka_config.Credentials(), pod_name="fraud-consumer-0")
    assert config["group.instance.id"] == "fraud-consumer-0"
    assert config["group.id"] == "scorers" and config["auto.offset.reset"] == "latest"


def test_user_settings_pass_through_last_and_consumer_only_ones_stay_off_the_producer() -> None:
    p = pipeline(kafka={"config": {"session.timeout.ms": "6000", "linger.ms": "20", "fetch.wait.max.ms": "5"}})
    consumer = kafka_config.consumer_config(p, "b:1", kafka_config.Credentials())
    producer = kafka_config.producer_config(p, "b:1", kafka_config.Credentials())
    assert consumer["session.timeout.ms"] == "6000" and consumer["fetch.wait.max.ms"] == "5"
    assert producer["linger.ms"] == "20"
    assert "session.timeout.ms" not in producer and "fetch.wait.max.ms" not in producer
    assert producer["acks"] == "all" and producer["enable.idempotence"] is True


def test_exactly_once_producer_has_a_transactional_id_stable_per_member() -> None:
    p = pipeline(consumer={"delivery": "exactlyOnce"})
    first = kafka_config.transactional_producer_config(p, "b:1", kafka_config.Credentials(), "fraud-consumer-1")
    again = kafka_config.transactional_producer_config(p, "b:1", kafka_config.Credentials(), "fraud-consumer-1")
    other = kafka_config.transactional_producer_config(p, "b:1", kafka_config.Credentials(), "fraud-consumer-2")
    assert first["transactional.id"] == again["transactional.id"] == "kinfer-risk-fraud-fraud-consumer-1"
    assert other["transactional.id"] != first["transactional.id"]
    assert kafka_config.delivery_mode(p).value == "exactlyOnce"


def test_sasl_credentials_come_from_mounted_files_and_are_redacted(tmp_path: Path) -> None:
    (tmp_path / "user").write_text("scorer\n")
    (tmp_path / "pass").write_text("s3cret\n")
    sasl = {"mechanism": "SCRAM-SHA-256", "secretName": "kafka-user", "usernameKey": "user", "passwordKey": "pass"}
    p = pipeline(kafka={"securityProtocol": "SASL_SSL", "sasl": sasl, "tls": {"secretName": "kafka-ca"}})
    credentials = kafka_config.read_credentials(p, {"KINFER_SASL_DIR": str(tmp_path), "KINFER_TLS_DIR": "/tls"})
    config = kafka_config.consumer_config(p, "b:1", credentials)
    assert config["security.protocol"] == "SASL_SSL" and config["sasl.mechanism"] == "SCRAM-SHA-256"
    assert config["sasl.username"] == "scorer" and config["sasl.password"] == "s3cret"
    assert config["ssl.ca.location"] == "/tls/ca.crt" and "ssl.key.location" not in config
    shown = kafka_config.redacted(config)
    assert "s3cret" not in repr(shown) and "scorer" not in repr(shown)
    assert shown["bootstrap.servers"] == "b:1"


def test_sasl_falls_back_to_env_and_fails_clearly_without_credentials(tmp_path: Path) -> None:
    p = pipeline(kafka={"securityProtocol": "SASL_PLAINTEXT", "sasl": {"mechanism": "PLAIN", "secretName": "u"}})
    env = {"KINFER_SASL_DIR": str(tmp_path), "KINFER_SASL_USERNAME": "a", "KINFER_SASL_PASSWORD": "b"}
    assert kafka_config.read_credentials(p, env).sasl_password == "b"
    with pytest.raises(ValueError, match="mount Secret u"):
        kafka_config.read_credentials(p, {"KINFER_SASL_DIR": str(tmp_path)})


def test_mutual_tls_paths() -> None:
    p = pipeline(
        kafka={"securityProtocol": "SSL", "tls": {"secretName": "t", "certKey": "tls.crt", "keyKey": "tls.key"}}
    )
    config = kafka_config.producer_config(p, "b:1", kafka_config.read_credentials(p, {"KINFER_TLS_DIR": "/m"}))
    assert (config["ssl.certificate.location"], config["ssl.key.location"]) == ("/m/tls.crt", "/m/tls.key")
