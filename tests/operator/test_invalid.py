"""Specs that can't work: refused at the door by the CRD, or InvalidSpec from the operator with no children,
no topics, one Event and no retry storm; fixing the cause makes the pipeline converge."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.operator.bed import RECONCILE_SECONDS, Bed
from tests.operator.conftest import OperatorProcess
from tests.polling import wait_until

pytestmark = pytest.mark.testbed


def _invalid_cases(bed: Bed) -> dict[str, tuple[dict[str, Any], str]]:
    return {
        "no-secret": (
            bed.manifest(
                "no-secret",
                kafka={
                    "securityProtocol": "SASL_PLAINTEXT",
                    "sasl": {"mechanism": "PLAIN", "secretName": "kafka-user"},
                },
            ),
            "Secret 'kafka-user' does not exist",
        ),
        "small-adopted": (
            bed.manifest("small-adopted", topics={"input": {"mode": "Adopt", "partitions": 8}}),
            "fewer than the 8 asked",
        ),
        "bad-scheme": (bed.manifest("bad-scheme", model={"uri": "hdfs://models/fraud"}), "unknown scheme 'hdfs'"),
        "eos-acks": (
            bed.manifest("eos-acks", consumer={"delivery": "exactlyOnce"}, kafka={"config": {"acks": "1"}}),
            "acks=1 breaks consumer.delivery exactlyOnce",
        ),
        "eos-idempotence": (
            bed.manifest(
                "eos-idempotence",
                consumer={"delivery": "exactlyOnce"},
                kafka={"config": {"enable.idempotence": "false"}},
            ),
            "exactlyOnce needs enable.idempotence",
        ),
    }


def test_invalid_specs_make_nothing_and_say_what_to_fix(bed: Bed, operator: OperatorProcess) -> None:
    cases = _invalid_cases(bed)
    adopted = cases["small-adopted"][0]["spec"]["topics"]["input"]["name"]
    from confluent_kafka.admin import NewTopic

    for future in bed.admin.create_topics([NewTopic(adopted, num_partitions=2, replication_factor=1)]).values():
        future.result()
    bed.apply(*(manifest for manifest, _ in cases.values()))
    for name, (manifest, expected) in cases.items():
        ready = bed.wait_reason(name, "Ready", "InvalidSpec")
        assert expected in ready["message"], (name, ready["message"])
        assert bed.children(name) == {}, name
        topics = [t for t in bed.topic_names(manifest) if t != adopted]
        assert bed.topic_partitions(*topics) == {}, f"{name} created topics"
    passes_before = operator.metric("kinfer_operator_reconcile_total", 'result="invalid"')
    time.sleep(RECONCILE_SECONDS * 4)
    passes = operator.metric("kinfer_operator_reconcile_total", 'result="invalid"') - passes_before
    # No retry storm: each invalid pipeline is looked at once per timer period, not in a tight retry loop.
    assert passes <= len(cases) * 6, passes
    for name in cases:
        events = [e for e in bed.events(name) if e.reason == "InvalidSpec"]
        assert len(events) == 1 and (events[0].count or 1) == 1, (name, [(e.reason, e.count) for e in events])
        assert "password" not in events[0].message.lower()


def test_fixing_an_invalid_spec_converges(bed: Bed, operator: OperatorProcess) -> None:
    manifest = bed.manifest(
        "later-secret",
        kafka={"securityProtocol": "SASL_PLAINTEXT", "sasl": {"mechanism": "PLAIN", "secretName": "kafka-user"}},
    )
    bed.apply(manifest)
    bed.wait_reason("later-secret", "Ready", "InvalidSpec")
    bed.core.create_namespaced_secret(
        bed.namespace, {"metadata": {"name": "kafka-user"}, "stringData": {"username": "u", "password": "s3cr3t-pw"}}
    )
    # The broker speaks PLAINTEXT, so topics can't be reached with SASL: the spec is now valid, children appear,
    # and the failure is honest (TopicsReady False, KafkaError) rather than InvalidSpec.
    wait_until(lambda: "Deployment/later-secret-consumer" in bed.children("later-secret"), 60, "children created")
    topics = bed.wait_reason("later-secret", "TopicsReady", "KafkaError", timeout=90)
    everything = str(bed.get("later-secret")) + str([e.message for e in bed.events("later-secret")])
    everything += str(bed.children("later-secret")) + operator.log_tail(400)
    assert "s3cr3t-pw" not in everything and "s3cr3t-pw" not in topics["message"]
    deployment = bed.children("later-secret")["Deployment/later-secret-consumer"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-sasl"]["secret"]["secretName"] == "kafka-user"


def test_unknown_serving_mode_and_broken_ranges_are_refused_at_apply(bed: Bed, pipeline_crd: None) -> None:
    refused = {
        "triton": (bed.manifest("bad-mode", serving={"mode": "triton"}), "spec.serving.mode"),
        "pinned": (bed.manifest("no-version", model={"versionPolicy": "Pinned"}), "set model.version"),
        "range": (
            bed.manifest("bad-range", autoscaling={"minReplicas": 5, "maxReplicas": 2}),
            "minReplicas must not be above",
        ),
        "same topics": (
            bed.manifest("same", topics={"output": {"name": "x"}, "deadLetter": {"name": "x"}}),
            "three different topics",
        ),
        "shadow topic": (
            bed.manifest("same-shadow", topics={"shadow": {"name": "x"}, "output": {"name": "x"}}),
            "topics.shadow must differ",
        ),
    }
    for label, (manifest, expected) in refused.items():
        result = bed.apply_result(manifest)
        assert result.returncode != 0, label
        assert expected in result.stderr, (label, result.stderr)
