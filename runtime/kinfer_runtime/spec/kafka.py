"""The Kafka side of the spec: how to reach the cluster (security, librdkafka settings), the three topics, and how
the runtime consumes (batching, delivery guarantee, offsets)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from kinfer_runtime.spec.base import TOPIC_PATTERN, ResourcesSpec, SpecModel

# --- Kafka connection -----------------------------------------------------------------------------------------


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class SaslSpec(SpecModel):
    """SASL credentials, read from a Secret that is mounted into the pods (never copied elsewhere)."""

    mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512
    secret_name: str = Field(description="Secret in the pipeline's namespace holding the credentials.")
    username_key: str = "username"
    password_key: str = "password"  # noqa: S105 - the name of a key in the Secret, not a password


class TlsSpec(SpecModel):
    """TLS material from a Secret: the CA to trust and, for mutual TLS, a client certificate and key."""

    secret_name: str = Field(description="Secret in the pipeline's namespace holding the TLS material.")
    ca_key: str = "ca.crt"
    cert_key: str | None = Field(default=None, description="Client certificate key in the Secret (mTLS).")
    key_key: str | None = Field(default=None, description="Client private key key in the Secret (mTLS).")


class KafkaSpec(SpecModel):
    """How to reach the Kafka cluster."""

    bootstrap_servers: str = Field(min_length=1, description="Comma-separated host:port list.")
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl: SaslSpec | None = None
    tls: TlsSpec | None = None
    config: dict[str, str] = Field(
        default_factory=dict, description="librdkafka settings passed through to every client."
    )

    @model_validator(mode="after")
    def _security_matches_protocol(self) -> KafkaSpec:
        protocol = self.security_protocol
        if protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL) and self.sasl is None:
            raise ValueError(f"securityProtocol {protocol.value} needs kafka.sasl (mechanism and secretName)")
        if self.sasl is not None and protocol not in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL):
            raise ValueError("kafka.sasl is set: securityProtocol must be SASL_PLAINTEXT or SASL_SSL")
        secret_keys = [k for k in self.config if "password" in k or k.startswith("sasl.") or "ssl.key" in k]
        if secret_keys:
            raise ValueError(
                f"kafka.config must not carry credentials ({', '.join(sorted(secret_keys))}): "
                "put them in a Secret and reference it from kafka.sasl or kafka.tls"
            )
        return self


# --- Topics ---------------------------------------------------------------------------------------------------


class TopicMode(StrEnum):
    CREATE = "Create"  # kinfer creates the topic if missing and manages partitions and config
    ADOPT = "Adopt"  # the topic must already exist; kinfer checks it but never changes or deletes it


class TopicSpec(SpecModel):
    name: Annotated[str, Field(pattern=TOPIC_PATTERN)]
    partitions: int = Field(default=3, ge=1, le=10000)
    replication_factor: int = Field(default=1, ge=1, le=32)
    config: dict[str, str] = Field(default_factory=dict, description="Topic configs, e.g. retention.ms.")
    mode: TopicMode = TopicMode.CREATE


class TopicsSpec(SpecModel):
    input: TopicSpec
    output: TopicSpec
    dead_letter: TopicSpec

    @model_validator(mode="after")
    def _distinct(self) -> TopicsSpec:
        names = [self.input.name, self.output.name, self.dead_letter.name]
        if len(set(names)) != 3:
            raise ValueError(f"topics.input, output and deadLetter must be three different topics, got {names}")
        return self


# --- Consumer -------------------------------------------------------------------------------------------------


class Delivery(StrEnum):
    AT_LEAST_ONCE = "atLeastOnce"
    EXACTLY_ONCE = "exactlyOnce"


class OffsetReset(StrEnum):
    EARLIEST = "earliest"
    LATEST = "latest"


class ConsumerSpec(SpecModel):
    replicas: int = Field(default=1, ge=0, description="Ignored while autoscaling is enabled.")
    image: str = "ghcr.io/kinfer/runtime:0.1.0"
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_batch_size: int = Field(default=256, ge=1, le=65536)
    max_batch_wait_ms: int = Field(default=20, ge=0, le=60000)
    delivery: Delivery = Delivery.AT_LEAST_ONCE
    auto_offset_reset: OffsetReset = OffsetReset.EARLIEST
    group: str | None = Field(default=None, description="Consumer group; default kinfer-<pipeline name>.")
    max_attempts: int = Field(
        default=3, ge=1, description="Replays of a dead-lettered record allowed before it is not replayed again."
    )
    termination_grace_seconds: int = Field(default=60, ge=5)
