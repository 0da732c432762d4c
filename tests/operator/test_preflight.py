"""Specs that can't work: each gives a message saying what to fix."""

from __future__ import annotations

from typing import Any

from kinfer_operator.builders.volumes import referenced_secrets
from kinfer_operator.status.preflight import parse_or_problems, secret_problems, static_problems
from tests.operator.pipelines import FRAUD, deep_update, pipeline, sample_manifest


def _spec(**changes: Any) -> dict[str, Any]:
    return deep_update(sample_manifest(FRAUD)["spec"], changes)


def test_valid_sample_parses() -> None:
    p, problems = parse_or_problems("fraud", "ns", _spec())
    assert p is not None and problems == []
    assert static_problems(p) == []


def test_model_invalid_specs_are_explained() -> None:
    cases = {
        "serving.mode": (_spec(serving={"mode": "triton"}), "spec.serving.mode"),
        "uri scheme": (_spec(model={"uri": "hdfs://x/y"}), "unknown scheme 'hdfs'"),
        "exactly once": (
            _spec(consumer={"delivery": "exactlyOnce"}, kafka={"config": {"enable.idempotence": "false"}}),
            "exactlyOnce needs enable.idempotence",
        ),
        "pinned": (_spec(model={"versionPolicy": "Pinned"}), "set model.version"),
    }
    for label, (spec, expected) in cases.items():
        p, problems = parse_or_problems("fraud", "ns", spec)
        assert p is None, label
        assert any(expected in problem for problem in problems), (label, problems)


def test_exactly_once_producer_overrides() -> None:
    p = pipeline(consumer={"delivery": "exactlyOnce"}, kafka={"config": {"acks": "1"}})
    assert any("acks=1 breaks consumer.delivery exactlyOnce" in problem for problem in static_problems(p))
    fine = pipeline(consumer={"delivery": "exactlyOnce"}, kafka={"config": {"acks": "all"}})
    assert static_problems(fine) == []


def test_long_names_are_refused_before_children_fail() -> None:
    p, _ = parse_or_problems("a" * 60, "ns", _spec())
    assert p is not None
    assert any("too long" in problem for problem in static_problems(p))


def test_secret_checks() -> None:
    p = pipeline(
        kafka={
            "securityProtocol": "SASL_SSL",
            "sasl": {"secretName": "user"},
            "tls": {"secretName": "ca", "certKey": "tls.crt", "keyKey": "tls.key"},
        }
    )
    needed = referenced_secrets(p.spec.kafka, p.spec.model)
    assert needed == {"user": ["username", "password"], "ca": ["ca.crt", "tls.crt", "tls.key"]}
    assert secret_problems(needed, {"user": {"username", "password"}, "ca": {"ca.crt", "tls.crt", "tls.key"}}) == []
    problems = secret_problems(needed, {"user": None, "ca": {"ca.crt"}})
    assert problems == [
        "Secret 'ca' has no key(s) tls.crt, tls.key; add them or change the key names",
        "Secret 'user' does not exist in the pipeline's namespace; create it or fix the reference",
    ]


def test_access_policy_bounds_what_a_pipeline_can_make_the_operator_reach() -> None:
    from kinfer_operator.status.preflight import AccessPolicy, access_problems, secret_label_problems

    p = pipeline(FRAUD, kafka={"bootstrapServers": "kafka-1.prod:9092,evil.example:9092"})
    policy = AccessPolicy(bootstrap=("kafka-*.prod:9092",))
    problems = access_problems(p, policy)
    assert len(problems) == 1 and "evil.example:9092" in problems[0]
    assert access_problems(p, AccessPolicy()) == [], "no allowlist: any Kafka cluster"
    own = pipeline(FRAUD, ingestion={"connectUrl": "http://connect.ns1.svc:8083"})
    other = pipeline(FRAUD, ingestion={"connectUrl": "http://connect.other.svc:8083"})
    outside = pipeline(FRAUD, ingestion={"connectUrl": "http://169.254.169.254/latest"})
    assert access_problems(own, AccessPolicy()) == []
    assert access_problems(other, AccessPolicy()) and access_problems(outside, AccessPolicy())
    assert access_problems(outside, AccessPolicy(connect_urls=("http://169.254.169.254/",))) == []
    labels = {"ok": {"kinfer.io/use": "true"}, "wrong": {"kinfer.io/use": "no"}, "bare": {}}
    assert [m.split("'")[1] for m in secret_label_problems(list(labels), labels, "kinfer.io/use=true")] == [
        "bare",
        "wrong",
    ]
    assert secret_label_problems(list(labels), labels, "kinfer.io/use") == [
        secret_label_problems(["bare"], labels, "kinfer.io/use")[0]
    ]
    assert secret_label_problems(list(labels), labels, "") == []


def test_kafka_settings_are_checked_by_librdkafka_and_the_operator_takes_an_allowlist() -> None:
    from kinfer_operator.kafka.client_keys import client_config_problems, operator_client_settings

    config = {"linger.ms": "x", "no.such.key": "1", "plugin.library.paths": "/tmp/evil", "ssl.ca.location": "/pod/ca"}
    problems = client_config_problems(config)
    assert any("plugin.library.paths is not allowed" in p for p in problems)
    assert any("no.such.key" in p for p in problems) and any("linger.ms=x" in p for p in problems)
    assert not any("ssl.ca.location" in p for p in problems), "a path in the pod is not opened here"
    assert client_config_problems({"linger.ms": "5", "session.timeout.ms": "45000"}) == []
    assert operator_client_settings({"socket.timeout.ms": "5000", "plugin.library.paths": "x", "linger.ms": "5"}) == {
        "socket.timeout.ms": "5000"
    }
