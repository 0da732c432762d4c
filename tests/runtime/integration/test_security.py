"""SASL and TLS against a real broker: the runtime logs in with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, in the
clear and over TLS (verifying the broker's certificate against the CA from the Secret), reading the credentials
from mounted Secret files as in a pod. The password never reaches the log, even at DEBUG. A wrong password
leaves the runtime unready, says why in ``/readyz`` and in one structured log line, and does not spin.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import SECURE_KAFKA_USERS
from tests.runtime.integration.harness import (
    RuntimeProcess,
    TopicReader,
    create_topics,
    manifest,
    produce,
    transactions,
)

USER, PASSWORD = next(iter(SECURE_KAFKA_USERS.items()))
RECORDS = 500


def secure_pipeline(name: str, broker: Any, protocol: str, mechanism: str, topics: Any) -> dict[str, Any]:
    pipeline = manifest(name, broker.bootstrap(protocol), topics)
    kafka = pipeline["spec"]["kafka"]
    kafka["securityProtocol"] = protocol
    kafka["sasl"] = {"mechanism": mechanism, "secretName": "kafka-user"}
    if protocol == "SASL_SSL":
        kafka["tls"] = {"secretName": "kafka-ca"}
    pipeline["spec"]["monitoring"] = {"logLevel": "DEBUG"}
    return pipeline


def mounted_secrets(tmp_path: Path, broker: Any, password: str) -> dict[str, str]:
    """The Secrets as the pod sees them: one file per key, under the directories the runtime reads."""
    sasl, tls = tmp_path / "secrets" / "sasl", tmp_path / "secrets" / "tls"
    sasl.mkdir(parents=True)
    tls.mkdir(parents=True)
    (sasl / "username").write_text(USER)
    (sasl / "password").write_text(password + "\n")  # a trailing newline, as `kubectl create secret --from-file` keeps
    shutil.copy(broker.tls.ca_certificate, tls / "ca.crt")
    return {"KINFER_SASL_DIR": str(sasl), "KINFER_TLS_DIR": str(tls)}


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [("SASL_PLAINTEXT", "PLAIN"), ("SASL_PLAINTEXT", "SCRAM-SHA-512"), ("SASL_SSL", "SCRAM-SHA-256")],
)
def test_runtime_logs_in_and_never_logs_the_password(
    secure_kafka: Any, tmp_path: Path, protocol: str, mechanism: str
) -> None:
    topics = create_topics(secure_kafka.plaintext_bootstrap, partitions=2, prefix="sec")
    name = f"secure-{mechanism.lower()}"
    pipeline = secure_pipeline(name, secure_kafka, protocol, mechanism, topics)
    env = mounted_secrets(tmp_path, secure_kafka, PASSWORD)
    runtime = RuntimeProcess(pipeline, tmp_path, secure_kafka.bootstrap(protocol), env=env)
    reader = TopicReader(secure_kafka.plaintext_bootstrap, [topics.output, topics.dead_letter])
    outputs = reader.seen[topics.output]
    try:
        runtime.start()
        runtime.wait_ready()
        produce(secure_kafka.plaintext_bootstrap, topics.input, transactions(RECORDS))
        reader.wait_for(lambda: outputs.total >= RECORDS, timeout=90, describe=f"{RECORDS} outputs")
        assert runtime.terminate(60) == 0, runtime.log_tail()
    finally:
        runtime.stop()
        reader.close()
    assert set(outputs.keys) == {f"k-{n}".encode() for n in range(RECORDS)}
    assert reader.seen[topics.dead_letter].total == 0
    log = runtime.log_path.read_text(errors="replace")
    assert PASSWORD not in log
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(line["level"] == "DEBUG" for line in lines), "the run should have logged at DEBUG"


def test_wrong_password_is_reported_not_logged_and_does_not_spin(secure_kafka: Any, tmp_path: Path) -> None:
    topics = create_topics(secure_kafka.plaintext_bootstrap, partitions=1, prefix="badpw")
    wrong = "not-the-" + PASSWORD
    pipeline = secure_pipeline("secure-wrong", secure_kafka, "SASL_PLAINTEXT", "SCRAM-SHA-512", topics)
    runtime = RuntimeProcess(
        pipeline, tmp_path, secure_kafka.bootstrap("SASL_PLAINTEXT"), env=mounted_secrets(tmp_path, secure_kafka, wrong)
    )
    try:
        runtime.start()
        deadline = time.monotonic() + 90
        while "model not loaded" in runtime.get("/readyz")[1] or runtime.get("/healthz")[0] != 200:
            assert runtime.alive(), runtime.log_tail()
            assert time.monotonic() < deadline, runtime.log_tail()
            time.sleep(0.2)
        cpu_before, watched_from = runtime.cpu_seconds(), time.monotonic()
        time.sleep(15)
        cpu_share = (runtime.cpu_seconds() - cpu_before) / (time.monotonic() - watched_from)
        status, body = runtime.get("/readyz")
        assert runtime.alive(), runtime.log_tail()
    finally:
        runtime.stop()
    print(f"wrong password: /readyz {status} {body.strip()!r}; {cpu_share:.3f} of a core over 15 s")
    assert status == 503
    assert "authentication" in body.lower(), body
    log = runtime.log_path.read_text(errors="replace")
    assert wrong not in log and PASSWORD not in log
    assert "%3|" not in log, "librdkafka's own lines should have become JSON lines"
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    refused = [line for line in lines if line["message"] == "kafka client error" and "authentication" in line["reason"]]
    assert refused and {line["level"] for line in refused} == {"ERROR"}, log[-3000:]
    assert {line["client"] for line in refused} == {"consumer", "producer"}
    # About two refused logins a second per client for 15 s and more: logged once each, then once per 30 s.
    assert len(refused) <= 6, [line["reason"] for line in refused]
    # librdkafka retries the login with backoff; a few percent of a core at most, nowhere near a busy loop.
    assert cpu_share < 0.3, f"{cpu_share:.2f} of a core while unable to log in"
