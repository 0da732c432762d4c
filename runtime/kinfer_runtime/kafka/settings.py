"""librdkafka configuration for the runtime's consumer and producer, built from the pipeline spec.

Everything here is pure except :func:`read_credentials`, which reads the mounted Secret files (or env vars) once
at start-up. Credentials travel only inside the dicts handed to confluent-kafka; :func:`redacted` is what may be
logged. Settings and why (librdkafka CONFIGURATION.md):

- ``enable.auto.commit=false`` and ``enable.auto.offset.store=false``: the loop commits explicitly, and only
  offsets whose outputs and dead-letter records the broker has acknowledged (at-least-once), or through the
  transaction (exactly-once).
- ``partition.assignment.strategy=cooperative-sticky``: a rebalance moves only the partitions that must move; the
  loop answers with ``incremental_assign``/``incremental_unassign``.
- ``group.instance.id`` = the pod name (static membership): a restarted pod gets its partitions back without a
  rebalance as long as it returns within ``session.timeout.ms``.
- ``spec.kafka.config`` is applied last, so a user can tune anything we set (except what exactly-once needs,
  which the spec model already refuses).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinfer_runtime.pipeline.batching import MIN_WAIT_FRACTION
from kinfer_runtime.spec import Delivery, InferencePipeline, KafkaSpec

DEFAULT_SASL_DIR = "/var/run/secrets/kinfer/sasl"
DEFAULT_TLS_DIR = "/var/run/secrets/kinfer/tls"
SECRET_KEYS = ("sasl.password", "ssl.key.password", "ssl.key.pem", "ssl.certificate.pem", "sasl.username")


@dataclass(frozen=True)
class Credentials:
    """What the spec's Secret references resolve to: SASL username/password, and TLS file paths."""

    sasl_username: str | None = None
    sasl_password: str | None = None
    ca_location: str | None = None
    certificate_location: str | None = None
    key_location: str | None = None


def read_credentials(pipeline: InferencePipeline, env: dict[str, str] | None = None) -> Credentials:
    """Resolve spec.kafka.sasl / spec.kafka.tls against the mounted Secret files.

    SASL values come from ``$KINFER_SASL_DIR/<key>``, or from ``KINFER_SASL_USERNAME``/``KINFER_SASL_PASSWORD``
    when the file is absent (handy for local runs). TLS material is handed to librdkafka as file paths, so the
    private key is never read into Python at all.
    """
    env = dict(os.environ) if env is None else env
    kafka = pipeline.spec.kafka
    username = password = None
    if kafka.sasl is not None:
        sasl_dir = Path(env.get("KINFER_SASL_DIR", DEFAULT_SASL_DIR))
        username = _secret_value(sasl_dir / kafka.sasl.username_key, env.get("KINFER_SASL_USERNAME"))
        password = _secret_value(sasl_dir / kafka.sasl.password_key, env.get("KINFER_SASL_PASSWORD"))
        if username is None or password is None:
            raise ValueError(
                f"SASL credentials not found: mount Secret {kafka.sasl.secret_name} at {sasl_dir} "
                "(or set KINFER_SASL_USERNAME and KINFER_SASL_PASSWORD)"
            )
    ca = cert = key = None
    if kafka.tls is not None:
        tls_dir = Path(env.get("KINFER_TLS_DIR", DEFAULT_TLS_DIR))
        ca = str(tls_dir / kafka.tls.ca_key)
        cert = str(tls_dir / kafka.tls.cert_key) if kafka.tls.cert_key else None
        key = str(tls_dir / kafka.tls.key_key) if kafka.tls.key_key else None
    return Credentials(username, password, ca, cert, key)


def _secret_value(path: Path, fallback: str | None) -> str | None:
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return fallback


def security_settings(
    kafka: KafkaSpec,
    username: str | None,
    password: str | None,
    tls: dict[str, str | None] | None = None,
    *,
    pem: bool = False,
) -> dict[str, Any]:
    """librdkafka's security settings for any kinfer client: the protocol, the SASL mechanism and login, and TLS
    material. ``tls`` maps ``ca``, ``certificate`` and ``key`` to file paths (pods, ``ssl.*.location``) or, with
    ``pem``, to the PEM text itself (the operator, which keeps credentials in memory only: ``ssl.*.pem``)."""
    config: dict[str, Any] = {"security.protocol": kafka.security_protocol.value}
    if kafka.sasl is not None:
        config["sasl.mechanism"] = kafka.sasl.mechanism.value
        config["sasl.username"] = username or ""
        config["sasl.password"] = password or ""
    suffix = "pem" if pem else "location"
    for name, value in (tls or {}).items():
        if value:
            config[f"ssl.{name}.{suffix}"] = value
    return config


def common_config(pipeline: InferencePipeline, bootstrap_servers: str, credentials: Credentials) -> dict[str, Any]:
    """Connection settings shared by every client: brokers, security protocol, SASL and TLS."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "client.id": f"kinfer-{pipeline.metadata.namespace}-{pipeline.metadata.name}",
        # Reconnect within a second of a broker's return (librdkafka backs off up to 10 s by default), so
        # throughput recovers promptly after a broker restart.
        "reconnect.backoff.max.ms": 1000,
    }
    tls = {
        "ca": credentials.ca_location,
        "certificate": credentials.certificate_location,
        "key": credentials.key_location,
    }
    return config | security_settings(pipeline.spec.kafka, credentials.sasl_username, credentials.sasl_password, tls)


FETCH_MIN_BYTES = 32 * 1024  # about 150 records of 200 bytes: a broker reply per fetch that is worth its cost
MAX_FETCH_HOLD_MS = 100  # whatever maxBatchWaitMs says: the bound fetch.wait.max.ms had before fetches were held


def fetch_settings(max_batch_wait_ms: int) -> dict[str, int]:
    """How long the broker may hold a fetch to gather records: as long as the loop's shortest batch wait.

    With ``fetch.min.bytes`` = 1 the broker answers a fetch as soon as one record is there, so at a few thousand
    records/s the consumer makes hundreds of tiny fetches a second, each a wakeup of the broker and the loop. At
    5,000 records/s on the 2-core test machine, holding fetches for 5 ms (``maxBatchWaitMs`` 20) gave, in five
    runs of each side by side: broker CPU 0.64-0.71 cores against 0.78-0.86, runtime CPU 0.35-0.38 against
    0.43-0.45, end-to-end p90 24-33 ms against 36-75, p99 lower in 4 of 5 pairs. The price is up to the hold at low
    rates (p50 at 10 records/s: 13.8-15.4 ms against 11.3-11.5, two runs each), within the wait the pipeline
    already allows: the loop's batch window (:mod:`kinfer_runtime.pipeline.batching`) waits at least as long once
    its queue is empty.
    """
    hold_ms = min(MAX_FETCH_HOLD_MS, int(MIN_WAIT_FRACTION * max_batch_wait_ms))
    if hold_ms < 1:  # a pipeline that allows (almost) no wait: answer every fetch at once
        return {"fetch.min.bytes": 1, "fetch.wait.max.ms": max(10, min(100, max_batch_wait_ms))}
    return {"fetch.min.bytes": FETCH_MIN_BYTES, "fetch.wait.max.ms": hold_ms}


def consumer_config(
    pipeline: InferencePipeline, bootstrap_servers: str, credentials: Credentials, pod_name: str | None = None
) -> dict[str, Any]:
    spec = pipeline.spec
    config = common_config(pipeline, bootstrap_servers, credentials)
    config.update(
        {
            "group.id": spec.consumer_group(pipeline.metadata.name),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": spec.consumer.auto_offset_reset.value,
            "partition.assignment.strategy": "cooperative-sticky",
            # Never hand the loop uncommitted records of an aborted transaction (ours or an upstream producer's).
            "isolation.level": "read_committed",
            **fetch_settings(spec.consumer.max_batch_wait_ms),
            "enable.partition.eof": False,
        }
    )
    if pod_name:
        config["group.instance.id"] = pod_name
    config.update(spec.kafka.config)
    return config


# Idempotent, acks=all, a small linger so batches form without adding latency. One request in flight per
# connection: librdkafka (2.16 and earlier) caps an idempotent producer's in-flight *messages* at 5 after it has
# already scheduled an immediate wakeup, so with more than one request allowed its broker thread busy-polls while
# waiting for acks (about half a core at 1,000 records/s, a whole core while the broker is paused; see
# confluentinc/librdkafka PR #4989). The cap already allowed only about one request per partition, so the
# setting costs no throughput; ordering and de-duplication are unchanged.
RELIABLE_PRODUCER_SETTINGS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "max.in.flight.requests.per.connection": 1,
}


# What a record carries besides its value: key, headers (the input's own plus kinfer's) and Kafka's framing.
RECORD_OVERHEAD_ALLOWANCE = 64 * 1024
LIBRDKAFKA_MESSAGE_MAX_BYTES = 1_000_000  # librdkafka's default message.max.bytes


def producer_message_max_bytes(max_record_bytes: int) -> int:
    """``message.max.bytes`` for the producer: whatever ``preprocessing.maxRecordBytes`` admits, with its key and
    headers, must fit, since a bad record is dead-lettered with its value whole. librdkafka's default (1,000,000)
    is below the spec's default maxRecordBytes (1,048,576), so produce() refused the dead letter of an admitted
    record (``MSG_SIZE_TOO_LARGE``). A record larger still, or one the topic refuses (its ``max.message.bytes``),
    is dead-lettered truncated (docs/runtime.md, "Delivery failures")."""
    return max(LIBRDKAFKA_MESSAGE_MAX_BYTES, max_record_bytes + RECORD_OVERHEAD_ALLOWANCE)


def producer_config(pipeline: InferencePipeline, bootstrap_servers: str, credentials: Credentials) -> dict[str, Any]:
    """The runtime's producer: :data:`RELIABLE_PRODUCER_SETTINGS` and a ``message.max.bytes`` that admits what
    ``maxRecordBytes`` admits (:func:`producer_message_max_bytes`), then the spec's producer overrides."""
    config = common_config(pipeline, bootstrap_servers, credentials)
    config.update(RELIABLE_PRODUCER_SETTINGS)
    config["message.max.bytes"] = producer_message_max_bytes(pipeline.spec.preprocessing.max_record_bytes)
    config.update(_producer_overrides(pipeline.spec.kafka.config))
    return config


def transactional_producer_config(
    pipeline: InferencePipeline, bootstrap_servers: str, credentials: Credentials, pod_name: str | None
) -> dict[str, Any]:
    """Exactly-once producer. The transactional.id must survive a restart of the same member: a restarted
    process with the same id fences its predecessor and aborts its open transaction at once, instead of
    leaving read_committed readers stuck behind it until ``transaction.timeout.ms`` expires."""
    config = producer_config(pipeline, bootstrap_servers, credentials)
    member = pod_name or os.uname().nodename
    config["transactional.id"] = pipeline.transactional_id(member)
    return config


# Consumer-only properties that would make the producer log a warning if passed through.
_CONSUMER_ONLY_PREFIXES = (
    "group.",
    "session.timeout",
    "heartbeat.",
    "max.poll",
    "auto.offset",
    "enable.auto",
    "isolation.level",
    "fetch.",
    "partition.assignment",
    "enable.partition.eof",
    "auto.commit",
    "queued.",
    "max.partition.fetch",
)


def _producer_overrides(config: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in config.items() if not key.startswith(_CONSUMER_ONLY_PREFIXES)}


def delivery_mode(pipeline: InferencePipeline) -> Delivery:
    return pipeline.spec.consumer.delivery


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """A copy safe to log: secret values replaced."""
    return {key: ("***" if key in SECRET_KEYS else value) for key, value in config.items()}
