"""The thin layer over confluent-kafka's AdminClient: read the pipeline's topics, carry out a TopicPlan, delete.

One AdminClient per distinct connection (bootstrap servers + security), shared by all pipelines on that cluster:
a client holds threads and sockets, and 200 pipelines on one cluster must not mean 200 clients. A client no pass
has asked for in :data:`IDLE_CLIENT_SECONDS` is dropped (destroyed with its last reference): its settings went
away with a rotated password or a deleted pipeline, and it would otherwise keep reconnecting with them. Credentials
come from the Secrets the spec names, are passed to librdkafka in memory (``ssl.*.pem``), and never logged.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from kinfer_operator.builders.manifests import content_hash
from kinfer_operator.kafka.client_keys import operator_client_settings
from kinfer_operator.kafka.topic_plan import TopicPlan, TopicState
from kinfer_runtime.kafka.client_events import AccessProblem, ClientEvents
from kinfer_runtime.kafka.settings import security_settings
from kinfer_runtime.spec import KafkaSpec

TIMEOUT_SECONDS = 10.0
IDLE_CLIENT_SECONDS = 600.0

_clients: dict[str, AdminClient] = {}
_last_used: dict[str, float] = {}  # monotonic time each cached client was last asked for
_clients_lock = threading.Lock()
# What Kafka last refused each client, by id(client): a failed request then says "login refused" rather than
# only librdkafka's "Broker transport failure". An entry goes with its client (ids are reused after that).
_problems: dict[int, AccessProblem] = {}


class KafkaUnavailable(Exception):
    """The cluster could not be reached or refused a request (message safe to show: no credentials in it)."""


def admin_config(kafka: KafkaSpec, secrets: dict[str, dict[str, str]]) -> dict[str, Any]:
    """librdkafka settings for the operator's admin client; ``secrets``: Secret name → decoded keys."""
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": "kinfer-operator",
        "socket.timeout.ms": int(TIMEOUT_SECONDS * 1000),
        "reconnect.backoff.max.ms": 5000,
    }
    config.update(operator_client_settings(kafka.config))  # an allowlist: see kafka/client_keys.py
    sasl, tls = kafka.sasl, kafka.tls
    login = secrets.get(sasl.secret_name, {}) if sasl else {}
    material = secrets.get(tls.secret_name, {}) if tls else {}
    pems = {
        "ca": material.get(tls.ca_key) if tls else None,
        "certificate": material.get(tls.cert_key) if tls and tls.cert_key and tls.key_key else None,
        "key": material.get(tls.key_key) if tls and tls.cert_key and tls.key_key else None,
    }
    username = login.get(sasl.username_key) if sasl else None
    password = login.get(sasl.password_key) if sasl else None
    return config | security_settings(kafka, username, password, pems, pem=True)


def admin_client(config: dict[str, Any]) -> AdminClient:
    key = content_hash(config)
    with _clients_lock:
        now = time.monotonic()
        for idle in [k for k, used in _last_used.items() if now - used > IDLE_CLIENT_SECONDS and k != key]:
            _problems.pop(id(_clients[idle]), None)
            del _clients[idle], _last_used[idle]
        _last_used[key] = now
        client = _clients.get(key)
        if client is None:
            problem = AccessProblem()
            # The error callback only: it runs when the client is polled, and the admin client is polled only
            # here and on failures; librdkafka's own log lines keep going straight to stderr.
            on_error = ClientEvents("admin", problem).on_error
            settings: dict[str, Any] = {**config, "error_cb": on_error}
            client = _clients[key] = AdminClient(settings)
            _problems[id(client)] = problem
        client.poll(0)  # serve what the error callback has queued since the last use (keeps that queue short)
        return client


def _unavailable(client: AdminClient, message: str) -> KafkaUnavailable:
    """The error to raise, with the refusal Kafka gave this client lately (wrong password, TLS, ACL), if any."""
    client.poll(0)  # the error callback reports refusals only when the client is polled
    problem = _problems.get(id(client))
    refused = problem.current(time.monotonic()) if problem is not None else None
    return KafkaUnavailable(f"{message} ({refused})" if refused else message)


def _error_text(error: Exception) -> str:
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        return str(error.args[0].str())
    return str(error)


def _code(error: KafkaException) -> int | None:
    if error.args and isinstance(error.args[0], KafkaError):
        return int(error.args[0].code())
    return None


def describe_topics(client: AdminClient, names: list[str]) -> dict[str, TopicState]:
    """State of the named topics that exist (missing ones are simply absent from the result)."""
    try:
        metadata = client.list_topics(timeout=TIMEOUT_SECONDS)
    except KafkaException as error:
        raise _unavailable(client, f"cannot reach Kafka: {_error_text(error)}") from None
    present = {}
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or not topic.partitions:
            continue
        replicas = len(next(iter(topic.partitions.values())).replicas)
        present[name] = TopicState(name, len(topic.partitions), replicas, {})
    if not present:
        return present
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in present]
    try:
        for resource, future in client.describe_configs(resources, request_timeout=TIMEOUT_SECONDS).items():
            entries = future.result()
            overrides = {
                entry.name: str(entry.value)
                for entry in entries.values()
                if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value and entry.value is not None
            }
            state = present[resource.name]
            present[resource.name] = TopicState(state.name, state.partitions, state.replication_factor, overrides)
    except KafkaException as error:
        raise _unavailable(client, f"cannot read topic configs: {_error_text(error)}") from None
    return present


def execute_plan(client: AdminClient, plan: TopicPlan) -> set[str]:
    """Carry out creations, partition increases and config changes; returns the topics this call created (not
    those another client created first). Raises KafkaUnavailable on failure."""
    futures: dict[str, Any] = {}
    if plan.create:
        new = [
            NewTopic(
                t.name, num_partitions=t.partitions, replication_factor=t.replication_factor, config=dict(t.config)
            )
            for t in plan.create
        ]
        futures |= {f"create {k}": f for k, f in client.create_topics(new, request_timeout=TIMEOUT_SECONDS).items()}
    if plan.increase:
        grow = [NewPartitions(name, count) for name, count in plan.increase.items()]
        futures |= {f"partitions {k}": f for k, f in client.create_partitions(grow).items()}
    names = sorted(set(plan.set_configs) | set(plan.delete_configs))
    if names:
        resources = []
        for name in names:
            entries = [
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in plan.set_configs.get(name, {}).items()
            ]
            entries += [
                ConfigEntry(key, None, incremental_operation=AlterConfigOpType.DELETE)
                for key in plan.delete_configs.get(name, [])
            ]
            resources.append(ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries))
        futures |= {f"configs {r.name}": f for r, f in client.incremental_alter_configs(resources).items()}
    failures, created = [], set()
    for what, future in futures.items():
        try:
            future.result()
        except KafkaException as error:
            if _code(error) == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # someone else got there first: not ours
            failures.append(f"{what}: {_error_text(error)}")
            continue
        if what.startswith("create "):
            created.add(what.removeprefix("create "))
    if failures:
        raise _unavailable(client, "; ".join(failures))
    return created


def delete_topics(client: AdminClient, names: list[str]) -> None:
    """Delete topics; a topic that's already gone counts as deleted."""
    if not names:
        return
    failures = []
    for name, future in client.delete_topics(
        names, operation_timeout=TIMEOUT_SECONDS, request_timeout=TIMEOUT_SECONDS
    ).items():
        try:
            future.result()
        except KafkaException as error:
            if _code(error) == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            failures.append(f"{name}: {_error_text(error)}")
    if failures:
        raise _unavailable(client, "; ".join(failures))


def group_progress(client: AdminClient, group: str) -> tuple[int, int] | None:
    """(done, total) of the batch run that commits to ``group`` (runtime tools/batch_progress.py), or None."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    from kinfer_runtime.tools.batch_progress import Committed, progress

    try:
        future = client.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=TIMEOUT_SECONDS
        )
        partitions = future[group].result(TIMEOUT_SECONDS).topic_partitions or []
    except KafkaException as error:
        if _code(error) == KafkaError.GROUP_ID_NOT_FOUND:
            return None
        raise _unavailable(client, f"offsets of group {group}: {_error_text(error)}") from None
    return progress({tp.partition: Committed(tp.offset, tp.metadata) for tp in partitions})
