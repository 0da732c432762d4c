"""The Kafka side of the spec: how to reach the cluster (security, librdkafka settings), the three topics, and how
the runtime consumes (batching, delivery guarantee, offsets)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from kinfer_runtime.spec.base import TOPIC_PATTERN, PlacementSpec, ResourcesSpec, SpecModel

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

    mechanism: SaslMechanism = Field(
        default=SaslMechanism.SCRAM_SHA_512,
        description="SASL mechanism the brokers expect: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    )
    secret_name: str = Field(description="Secret in the pipeline's namespace holding the credentials.")
    username_key: str = Field(default="username", description="Key of the Secret that holds the SASL username.")
    password_key: str = Field(default="password", description="Key of the Secret that holds the SASL password.")

    @property
    def keys(self) -> list[str]:
        return [self.username_key, self.password_key]


class TlsSpec(SpecModel):
    """TLS material from a Secret: the CA to trust and, for mutual TLS, a client certificate and key."""

    secret_name: str = Field(description="Secret in the pipeline's namespace holding the TLS material.")
    ca_key: str = Field(
        default="ca.crt",
        description="Key of the Secret that holds the CA certificate (PEM) the brokers' certificates are checked "
        "against.",
    )
    cert_key: str | None = Field(default=None, description="Client certificate key in the Secret (mTLS).")
    key_key: str | None = Field(default=None, description="Client private key key in the Secret (mTLS).")

    @property
    def keys(self) -> list[str]:
        return [key for key in (self.ca_key, self.cert_key, self.key_key) if key]


class KafkaSpec(SpecModel):
    """How to reach the Kafka cluster."""

    bootstrap_servers: str = Field(min_length=1, description="Comma-separated host:port list.")
    security_protocol: SecurityProtocol = Field(
        default=SecurityProtocol.PLAINTEXT,
        description="How clients talk to the brokers: PLAINTEXT (no TLS, no login), SSL (TLS), SASL_PLAINTEXT "
        "(SASL login without TLS) or SASL_SSL (SASL login over TLS). The SASL_* protocols need kafka.sasl, and "
        "kafka.sasl needs one of them.",
    )
    sasl: SaslSpec | None = None
    tls: TlsSpec | None = None
    config: dict[str, str] = Field(
        default_factory=dict, description="librdkafka settings passed through to every client."
    )

    def secret_keys(self) -> dict[str, list[str]]:
        """Secret name → the keys the Kafka clients read from it (SASL and TLS may share one Secret)."""
        needed: dict[str, list[str]] = {}
        for part in (self.sasl, self.tls):
            if part is not None:
                keys = needed.setdefault(part.secret_name, [])
                keys += [key for key in part.keys if key not in keys]
        return needed

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
    """One Kafka topic of the pipeline and, in mode Create, how kinfer creates and manages it."""

    name: Annotated[
        str,
        Field(
            pattern=TOPIC_PATTERN,
            description="Kafka topic name: letters, digits, '.', '_' and '-', at most 249 characters.",
        ),
    ]
    partitions: int = Field(
        default=3,
        ge=1,
        le=10000,
        description="Create: the topic's partitions; raising it adds partitions, lowering it is refused (Kafka "
        "can't remove partitions). Adopt: the fewest partitions the existing topic must have. Partitions bound "
        "how many consumers can share the work.",
    )
    replication_factor: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Create: copies of each partition when kinfer creates the topic; changing it later is refused "
        "(that needs a partition reassignment). Ignored for Adopt.",
    )
    config: dict[str, str] = Field(
        default_factory=dict,
        description="Topic configs, e.g. retention.ms. Create: set on the topic, and topic-level overrides not "
        "listed here are removed. Ignored for Adopt.",
    )
    mode: TopicMode = Field(
        default=TopicMode.CREATE,
        description="Create: kinfer creates the topic when missing (again if it is deleted), adds partitions and "
        "keeps its configs as listed. Adopt: the topic must already exist; kinfer waits for it, checks its "
        "partitions, and never changes or deletes it.",
    )


class TopicsSpec(SpecModel):
    """The pipeline's Kafka topics: records in, predictions out, failures aside, and where a shadow candidate's
    predictions go; all must differ."""

    input: TopicSpec = Field(description="Topic the consumers read the JSON records to score from.")
    output: TopicSpec = Field(
        description="Topic that gets one prediction record per scored input record, with the input's key."
    )
    dead_letter: TopicSpec = Field(
        description="Topic that gets every input record that could not be decoded, validated or predicted, "
        "unchanged, with kinfer.error.* headers saying why (kinfer replay puts them back).",
    )
    shadow: TopicSpec | None = Field(
        default=None,
        description="Optional: while model.rollout runs in mode Shadow, the candidate's prediction of each record it "
        "scores, with the input's key and the headers the output would carry (kinfer.model.version: the "
        "candidate's). Delivered like the output topic (the pipeline waits for it), so none is lost; unused "
        "otherwise.",
    )

    def roles(self) -> list[tuple[str, TopicSpec]]:
        """Each topic the pipeline names, with its field name in the spec."""
        named = [("input", self.input), ("output", self.output), ("deadLetter", self.dead_letter)]
        return named + ([("shadow", self.shadow)] if self.shadow is not None else [])

    @model_validator(mode="after")
    def _distinct(self) -> TopicsSpec:
        seen: dict[str, str] = {}
        for role, topic in self.roles():
            if topic.name in seen:
                raise ValueError(
                    f"topics.{seen[topic.name]} and topics.{role} are both {topic.name!r}: the pipeline's topics "
                    "(input, output, deadLetter, shadow) must be different topics"
                )
            seen[topic.name] = role
        return self


# --- Consumer -------------------------------------------------------------------------------------------------


class Delivery(StrEnum):
    AT_LEAST_ONCE = "atLeastOnce"
    EXACTLY_ONCE = "exactlyOnce"


class OffsetReset(StrEnum):
    EARLIEST = "earliest"
    LATEST = "latest"


class ConsumerSpec(SpecModel):
    """The consumer Deployment, whose pods run the kinfer runtime, and how its loop batches and commits."""

    replicas: int = Field(
        default=1,
        ge=0,
        description="Number of consumer pods (kubectl scale sets it). Ignored while autoscaling is enabled.",
    )
    image: str | None = Field(
        default=None,
        description="Container image of the consumer pods (the kinfer runtime). Leave it out to use the runtime "
        "image the operator was installed with (the chart's runtimeImage), which matches the operator's version.",
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec,
        description="CPU and memory requests and limits of each consumer pod's container, as in a Pod spec.",
    )
    placement: PlacementSpec = Field(
        default_factory=PlacementSpec,
        description="Which nodes the consumer pods may run on: nodeSelector, tolerations.",
    )
    max_batch_size: int = Field(
        default=256,
        ge=1,
        le=65536,
        description="Most records per batch, so per model call. In embedded mode batches are padded to the next "
        "power of two up to this size, and every such size is warmed up when the model loads.",
    )
    max_batch_wait_ms: int = Field(
        default=20,
        ge=0,
        le=60000,
        description="Longest a record waits for its batch to fill (ms) before the batch is processed anyway: "
        "lower it for latency, raise it for bigger batches. The broker may hold a fetch for a quarter of it.",
    )
    delivery: Delivery = Field(
        default=Delivery.AT_LEAST_ONCE,
        description="atLeastOnce: an input's offset is committed once its outputs are acknowledged; a crash can "
        "repeat outputs, never lose them. exactlyOnce: outputs and offsets are committed in Kafka transactions "
        "(readers need isolation.level=read_committed); it adds up to ~100 ms of latency.",
    )
    auto_offset_reset: OffsetReset = Field(
        default=OffsetReset.EARLIEST,
        description="Where the consumer group starts on a partition it has no committed offset for: earliest, the "
        "oldest retained record; latest, only records written from then on. The autoscaler counts lag the same "
        "way.",
    )
    group: str | None = Field(default=None, description="Consumer group; default kinfer-<pipeline name>.")
    max_attempts: int = Field(
        default=3,
        ge=1,
        description="Times a record may be processed in all, counting its first time: kinfer replay skips a "
        "dead-lettered record whose kinfer.attempt has reached this. The running pipeline does not use it.",
    )
    termination_grace_seconds: int = Field(
        default=60,
        ge=5,
        description="The consumer pods' terminationGracePeriodSeconds: time to finish the batch, commit and leave "
        "the group on shutdown. The drain gets 80% of it; after that only what was acknowledged is committed.",
    )
