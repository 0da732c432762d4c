"""A test broker that also listens with SASL, in the clear and over TLS, for the runtime's security tests.

Listeners: the usual ``PLAINTEXT`` one (test set-up and reading results), ``SASL_PLAINTEXT`` and ``SASL_SSL``, each
taking PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512. PLAIN users are in the listener's JAAS line; SCRAM credentials are
stored in the cluster metadata through the Admin API once the broker is up, as ``kafka-configs --alter
--add-config SCRAM-...`` would. The TLS material is a throwaway CA and a server certificate for the SASL
listeners' address (127.0.0.1, or the real node's bridge address for pods) from the bed's PKI helper
(:mod:`tests.testbed.pki`); the broker reads it as a PEM keystore.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .kafka import KafkaBroker
from .pki import CertificateAuthority
from .process import StartError, free_port

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class TlsFiles:
    ca_certificate: Path
    server_keystore: Path  # PEM: the server's private key (PKCS#8, EC) followed by its certificate


def make_tls_files(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A CA and a server certificate signed by it, for ``host``, 127.0.0.1 and localhost (the bed's PKI helper)."""
    authority = CertificateAuthority(directory, "kafka-test-ca")
    addresses = tuple(dict.fromkeys((host, "127.0.0.1")))
    server = authority.issue("kafka-server", host, dns_names=("localhost",), ip_addresses=addresses, server=True)
    keystore = directory / "server-keystore.pem"
    keystore.write_text(server.key.read_text() + server.cert.read_text())
    return TlsFiles(authority.cert_path, keystore)


def listener_properties(plain_users: dict[str, str], tls: TlsFiles) -> str:
    plain_users_jaas = " ".join(f'user_{name}="{password}"' for name, password in plain_users.items())
    lines = [f"sasl.enabled.mechanisms={','.join(MECHANISMS)}"]
    for listener in ("sasl_plaintext", "sasl_ssl"):
        prefix = f"listener.name.{listener}"
        lines.append(
            f"{prefix}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
            f"{plain_users_jaas};"
        )
        for scram in ("scram-sha-256", "scram-sha-512"):
            lines.append(
                f"{prefix}.{scram}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
    lines += [
        "listener.name.sasl_ssl.ssl.keystore.type=PEM",
        f"listener.name.sasl_ssl.ssl.keystore.location={tls.server_keystore}",
    ]
    return "\n".join(lines) + "\n"


class SecureKafka:
    """The broker, its three listeners' addresses, and the TLS CA clients must trust."""

    def __init__(
        self,
        libs_dir: Path,
        data_dir: Path,
        log_dir: Path,
        users: dict[str, str],
        on_spawn: Callable[[int], None] | None = None,
        extra_properties: str = "",
        host: str = "127.0.0.1",
    ):
        """``host``: the address the SASL listeners bind and advertise (the real node's, for pods to reach)."""
        self.users, self.host = users, host
        self.tls = make_tls_files(data_dir / "tls", host)
        self.ports = {"SASL_PLAINTEXT": free_port(), "SASL_SSL": free_port()}
        self.broker = KafkaBroker(
            libs_dir,
            data_dir / "kafka",
            log_dir,
            port=free_port(),
            controller_port=free_port(),
            extra_listeners=self.ports,
            extra_properties=listener_properties(users, self.tls) + extra_properties,
            extra_listeners_host=host,
            on_spawn=on_spawn,
        )

    @property
    def plaintext_bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def bootstrap(self, protocol: str) -> str:
        return f"{self.host}:{self.ports[protocol]}"

    def start(self) -> SecureKafka:
        self.broker.start()
        self._add_scram_users()
        return self

    def stop(self) -> None:
        self.broker.stop()

    def _add_scram_users(self, timeout: float = 60.0) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import (
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialAlteration,
            UserScramCredentialUpsertion,
        )

        admin = AdminClient({"bootstrap.servers": self.plaintext_bootstrap})
        for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):  # one change per user a call
            upserts: list[UserScramCredentialAlteration] = [
                UserScramCredentialUpsertion(name, ScramCredentialInfo(mechanism, 4096), password.encode())
                for name, password in self.users.items()
            ]
            for future in admin.alter_user_scram_credentials(upserts).values():
                future.result(30)
        # The credentials reach the SASL listeners with the next metadata update; wait until one logs in.
        name, password = next(iter(self.users.items()))
        deadline = time.monotonic() + timeout
        while True:
            probe = AdminClient({
                "bootstrap.servers": self.bootstrap("SASL_PLAINTEXT"), "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": name, "sasl.password": password,
            })  # fmt: skip
            try:
                probe.list_topics(timeout=5)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise StartError("test bed: SCRAM users not accepted by the broker") from None
                time.sleep(0.5)
