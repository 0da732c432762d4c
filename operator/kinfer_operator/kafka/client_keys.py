"""Which ``spec.kafka.config`` settings may go where: the operator's own Kafka clients take an allowlist, and the
pods' clients only settings librdkafka knows, with values it accepts, checked before any child is made.

A pipeline's author controls ``kafka.config``, and the operator's admin client and lag poller run in the operator's
process with the operator's network position: settings that load code or read files there (``plugin.library.
paths``, ``ssl.engine.location``) would make the operator act for anyone who may create a pipeline. So the
operator's clients take only :data:`OPERATOR_CLIENT_KEYS` (connection tuning), and those two are refused outright
(no kinfer pod needs them either). The pods get every other setting, after librdkafka itself has parsed them: an
unknown key or a bad value is ``InvalidSpec`` instead of a consumer pod that crash-loops on start.
"""

from __future__ import annotations

import functools

from confluent_kafka import KafkaException, Producer

# Connection tuning only: nothing that names a file, a library or a callback.
OPERATOR_CLIENT_KEYS = frozenset(
    {
        "socket.timeout.ms", "socket.connection.setup.timeout.ms", "socket.keepalive.enable", "socket.nagle.disable",
        "socket.send.buffer.bytes", "socket.receive.buffer.bytes", "connections.max.idle.ms", "broker.address.family",
        "reconnect.backoff.ms", "reconnect.backoff.max.ms", "retry.backoff.ms", "retry.backoff.max.ms",
        "metadata.max.age.ms", "topic.metadata.refresh.interval.ms", "api.version.request.timeout.ms",
        "ssl.endpoint.identification.algorithm", "enable.ssl.certificate.verification", "ssl.cipher.suites",
        "ssl.curves.list", "ssl.sigalgs.list", "client.rack",
    }
)  # fmt: skip
# Loading code or an engine: refused for every client.
REFUSED_KEYS = frozenset({"plugin.library.paths", "ssl.engine.location", "ssl.engine.id"})
# Names of files inside the pod: librdkafka would open them while parsing, here in the operator's filesystem.
_PATH_SUFFIXES = (".location", ".keytab", ".paths")


def operator_client_settings(config: dict[str, str]) -> dict[str, str]:
    """The part of ``kafka.config`` the operator's own clients take."""
    return {key: value for key, value in config.items() if key in OPERATOR_CLIENT_KEYS}


def client_config_problems(config: dict[str, str]) -> list[str]:
    """What is wrong with ``kafka.config`` for the pods' clients, one line per setting."""
    problems = [
        f"spec.kafka.config: {key} is not allowed (it loads code into the Kafka client); remove it"
        for key in sorted(config)
        if key in REFUSED_KEYS
    ]
    checked = tuple(
        sorted((k, v) for k, v in config.items() if k not in REFUSED_KEYS and not k.endswith(_PATH_SUFFIXES))
    )
    return problems + list(_librdkafka_problems(checked))


@functools.lru_cache(maxsize=512)
def _librdkafka_problems(config: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """librdkafka's own verdict on each setting: a client is built (never connected: no bootstrap servers)."""
    problems = []
    for key, value in config:
        try:
            Producer({"bootstrap.servers": "", "log_level": 0, key: value})
        except KafkaException as error:
            problems.append(f"spec.kafka.config: {key}={value}: {error.args[0].str()}; fix or remove it")
    return tuple(problems)
