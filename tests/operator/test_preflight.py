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
