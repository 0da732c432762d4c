"""A rotated SASL password reaches the operator's lag poller without a spec change.

On a SASL broker of the module's own that makes every connection log in again every few seconds
(``connections.max.reauth.ms``, what a platform sets so that a changed or revoked password takes effect), and
the bed's API server holding the pipeline's Secret: the password is changed on the broker and in the Secret, and
the lag monitor must go on polling with the new one (it used to keep the Secret it read first, for good).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from kinfer_operator.autoscaling.monitor import LagMonitor
from kinfer_operator.k8s.client import Kube
from kinfer_runtime.spec import InferencePipelineSpec
from tests.autoscaling.kafka_helpers import commit_offsets, produce_spread
from tests.conftest import PRIVATE
from tests.polling import wait_until
from tests.testbed import DEFAULT_ROOT, component_dir

USER, OLD_PASSWORD, NEW_PASSWORD = "rotating", "old-Kinfer-pw-1", "new-Kinfer-pw-2"
REAUTH_MS = 3000


@pytest.fixture(scope="module")
def reauthenticating_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.testbed.secure_kafka import SecureKafka

    broker = SecureKafka(
        component_dir("kafka") / "libs",
        tmp_path_factory.mktemp("reauth-kafka"),
        DEFAULT_ROOT / "logs" / "reauth-kafka",
        {USER: OLD_PASSWORD},
        on_spawn=lambda pid: PRIVATE.process("reauth-kafka", pid),
        extra_properties=f"connections.max.reauth.ms={REAUTH_MS}\n",
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_rotated_password_is_picked_up_by_the_poller(
    reauthenticating_kafka: Any, kube_api: Any, namespace: str
) -> None:
    broker, kube = reauthenticating_kafka, Kube(kube_api)
    secret_path = f"/api/v1/namespaces/{namespace}/secrets"
    secret = {
        "metadata": {"name": "kafka-user"},
        "data": {"username": encoded(USER), "password": encoded(OLD_PASSWORD)},
    }
    kube.request("POST", secret_path, body=secret)
    topic, group = f"rot-{uuid.uuid4().hex[:8]}", "kinfer-rot"
    plain = AdminClient({"bootstrap.servers": broker.plaintext_bootstrap})
    plain.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    produce_spread(broker.plaintext_bootstrap, topic, 2, 20)
    commit_offsets(broker.plaintext_bootstrap, group, topic, {0: 3, 1: 0})
    spec = InferencePipelineSpec.model_validate({
        "kafka": {"bootstrapServers": broker.bootstrap("SASL_PLAINTEXT"), "securityProtocol": "SASL_PLAINTEXT",
                  "sasl": {"mechanism": "SCRAM-SHA-512", "secretName": "kafka-user"}},
        "topics": {"input": {"name": topic, "partitions": 2}, "output": {"name": f"{topic}-out"},
                   "deadLetter": {"name": f"{topic}-dlq", "partitions": 1}},
        "model": {"name": "fraud", "uri": "pvc://models/fraud"},
        "consumer": {"group": group},
        "autoscaling": {"enabled": True},
    })  # fmt: skip
    monitor = LagMonitor(kube, poll_seconds=1.0)
    try:
        monitor.track(namespace, "rot", spec)
        monitor.poll_once()
        before = monitor.latest(namespace, "rot")
        assert before is not None and before.error is None and before.decision is not None, before
        assert before.decision.total_lag == 17

        upsert = UserScramCredentialUpsertion(USER, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                              NEW_PASSWORD.encode())  # fmt: skip
        for future in plain.alter_user_scram_credentials([upsert]).values():
            future.result(30)
        secret["data"]["password"] = encoded(NEW_PASSWORD)
        kube.request("PUT", f"{secret_path}/kafka-user", body=secret)
        rotated = time.monotonic()

        def polls_with_the_new_password() -> bool:
            monitor.poll_once()
            tracked = monitor.latest(namespace, "rot")
            # Well after every connection logged in with the old password had to log in again (and failed).
            late = (tracked.polled_at or 0) > rotated + 3 * REAUTH_MS / 1000 if tracked else False
            return tracked is not None and tracked.error is None and late

        wait_until(polls_with_the_new_password, 60, "a successful poll with the rotated password", interval=1.0)
    finally:
        monitor.stop()
