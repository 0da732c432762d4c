"""In-memory stand-ins for confluent-kafka's Consumer and Producer, for unit tests of the pipeline loop.

They keep only what the loop's ordering rules depend on: a log per partition with positions, rebalance callbacks
delivered inside ``consume`` (as librdkafka does), delivery reports delivered inside ``poll`` when the test says
so, and the transactional calls. Every call that matters goes to one shared ``events`` list, so a test can
assert the order of produce, acknowledgement and commit. Integration tests use the real broker instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

Key = tuple[str, int]


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None
    _key: bytes | None = None
    _timestamp_ms: int = 1_700_000_000_000

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp_ms)  # TIMESTAMP_CREATE_TIME

    def error(self) -> None:
        return None


@dataclass
class FakeConsumer:
    events: list[tuple[Any, ...]]
    logs: dict[Key, list[FakeMessage]] = field(default_factory=dict)
    positions: dict[Key, int] = field(default_factory=dict)
    assigned: set[Key] = field(default_factory=set)
    paused: set[Key] = field(default_factory=set)
    committed_offsets: dict[Key, int] = field(default_factory=dict)
    committed_metadata: dict[Key, str] = field(default_factory=dict)
    rebalances: deque[tuple[str, list[Key]]] = field(default_factory=deque)
    callbacks: dict[str, Callable[..., None]] = field(default_factory=dict)
    closed: bool = False
    # The broker's answer to every commit while the group rebalances (REBALANCE_IN_PROGRESS): an asynchronous
    # commit is lost without a word to the caller (it has no on_commit callback).
    lose_async_commits: bool = False

    # --- what the test does -------------------------------------------------------------------------------

    def append(self, topic: str, partition: int, *values: bytes | None) -> None:
        log = self.logs.setdefault((topic, partition), [])
        for value in values:
            log.append(FakeMessage(topic, partition, len(log), value, _key=f"k{len(log)}".encode()))

    def rebalance(self, kind: str, *keys: Key) -> None:
        """``assign``, ``revoke`` or ``lost``: that callback for these partitions at the next ``consume``."""
        self.rebalances.append((kind, list(keys)))

    # --- the Consumer API the loop uses ---------------------------------------------------------------------

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        self.events.append(("subscribe", tuple(topics)))
        self.callbacks = callbacks

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        while self.rebalances:
            kind, keys = self.rebalances.popleft()
            partitions = [TopicPartition(t, p) for t, p in keys]
            self.callbacks[f"on_{kind}"](self, partitions)
        out: list[FakeMessage] = []
        for key in sorted(self.assigned - self.paused):
            log = self.logs.get(key, [])
            while len(out) < num_messages and self.positions.get(key, 0) < len(log):
                out.append(log[self.positions.get(key, 0)])
                self.positions[key] = self.positions.get(key, 0) + 1
        return out

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assigned.add(key)
            self.positions[key] = self.committed_offsets.get(key, 0)
        self.events.append(("assign", sorted((tp.topic, tp.partition) for tp in partitions)))

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.assigned.discard((tp.topic, tp.partition))
        self.events.append(("unassign", sorted((tp.topic, tp.partition) for tp in partitions)))

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        if asynchronous and self.lose_async_commits:
            self.events.append(("commit lost", {(tp.topic, tp.partition): tp.offset for tp in offsets}))
            return
        for tp in offsets:
            self.committed_offsets[(tp.topic, tp.partition)] = tp.offset
            self.committed_metadata[(tp.topic, tp.partition)] = tp.metadata or ""
        self.events.append(("commit", {(tp.topic, tp.partition): tp.offset for tp in offsets}, asynchronous))

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        offsets, metadata = self.committed_offsets, self.committed_metadata
        return [TopicPartition(t, p, offsets.get((t, p), -1001), metadata.get((t, p), "")) for t, p in keys]

    def seek(self, tp: TopicPartition) -> None:
        self.positions[(tp.topic, tp.partition)] = tp.offset
        self.events.append(("seek", (tp.topic, tp.partition), tp.offset))

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.positions.get((tp.topic, tp.partition), 0))
                for tp in partitions]  # fmt: skip

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return 0, len(self.logs.get((tp.topic, tp.partition), []))

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def close(self) -> None:
        self.closed = True


@dataclass
class Produced:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


RecordTest = Callable[[Produced], bool]


def _size(record: Produced) -> int:
    return len(record.value or b"") + len(record.key or b"") + sum(len(k) + len(v) for k, v in record.headers)


class FakeProducer:
    """Delivery reports are held until ``acknowledge`` (or ``auto_ack``); ``failures_left`` fails that many.

    Like librdkafka, ``produce`` raises ``KafkaException(MSG_SIZE_TOO_LARGE)`` for a record (value, key and
    headers) larger than ``max_message_bytes``, and whatever ``refuse`` says for the records it matches (e.g.
    ``_UNKNOWN_TOPIC`` for a topic it knows not to exist); ``fail`` makes the delivery reports of the records it
    matches fail with that error, every time, until ``heal``. Inside a transaction, a failed report makes the
    transaction abortable (``send_offsets_to_transaction`` raises), as librdkafka's commit would."""

    def __init__(
        self, events: list[tuple[Any, ...]], auto_ack: bool = True, max_message_bytes: int | None = None
    ) -> None:
        self.events = events
        self.auto_ack = auto_ack
        self.max_message_bytes = max_message_bytes
        self.refusals: list[tuple[RecordTest, KafkaError]] = []
        self.failures: list[tuple[RecordTest, KafkaError]] = []
        self.attempts: list[Produced] = []  # every record offered to produce(), refused or not
        self.transaction_failed: KafkaError | None = None
        self.missing_topics: set[str] = set()  # not in list_topics() (deleted)
        # A topic's max.message.bytes, as the broker applies it: to everything one poll delivers to the topic (one
        # produce request), so every record of a request that is too large fails with MSG_SIZE_TOO_LARGE.
        self.topic_max_bytes: dict[str, int] = {}
        self.pending: list[tuple[Produced, Callable[[Any, Any], None]]] = []
        self.ready: list[tuple[Produced, Callable[[Any, Any], None]]] = []
        self.delivered: list[Produced] = []
        self.failures_left = 0
        self.purged: list[tuple[Produced, Callable[[Any, Any], None]]] = []
        self.in_transaction: list[Produced] = []
        self.committed_transactions: list[dict[str, Any]] = []
        self.offsets_metadata: dict[Key, str | None] = {}  # of the last send_offsets_to_transaction
        self.transaction_error: KafkaError | None = None

    def produce(  # confluent_kafka.Producer.produce's parameters, in its order (pipeline/sending.py passes them so)
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        callback: Any = None,
        on_delivery: Any = None,
        timestamp: int = 0,
        headers: Any = None,
    ) -> None:
        on_delivery = callback or on_delivery
        record = Produced(topic, key, value, list(headers or []))
        self.attempts.append(record)
        if self.max_message_bytes is not None and _size(record) > self.max_message_bytes:
            self.events.append(("refused", topic, key))
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Unable to produce message: too large"))
        for matches, error in self.refusals:
            if matches(record):
                self.events.append(("refused", topic, key))
                raise KafkaException(error)
        self.pending.append((record, on_delivery))
        self.events.append(("produce", topic, key))

    def refuse(self, matches: RecordTest, code: int) -> None:
        """``produce`` raises ``KafkaException`` with ``code`` for the records ``matches`` accepts."""
        self.refusals.append((matches, KafkaError(code, "Unable to produce message")))

    def fail(self, matches: RecordTest, code: int) -> None:
        """The delivery reports of the records ``matches`` accepts fail with ``code``."""
        self.failures.append((matches, KafkaError(code)))

    def heal(self) -> None:
        """No more refusals or failing reports."""
        self.refusals, self.failures = [], []

    def offered(self, matches: RecordTest) -> int:
        """How many times a record ``matches`` accepts was offered to ``produce``."""
        return sum(1 for record in self.attempts if matches(record))

    def acknowledge(self, count: int | None = None) -> None:
        """Make the first ``count`` pending reports (all by default) ready for the next ``poll``."""
        count = len(self.pending) if count is None else count
        self.ready += self.pending[:count]
        del self.pending[:count]

    def acknowledge_where(self, predicate: Callable[[Produced], bool]) -> None:
        self.ready += [entry for entry in self.pending if predicate(entry[0])]
        self.pending = [entry for entry in self.pending if not predicate(entry[0])]

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        """Every record not yet acknowledged fails with _PURGE_QUEUE at the next ``poll``."""
        self.purged += self.ready + self.pending
        self.ready, self.pending = [], []
        self.events.append(("purge",))

    def poll(self, timeout: float = 0.0) -> int:
        purged, self.purged = self.purged, []
        for record, callback in purged:
            callback(KafkaError(KafkaError._PURGE_QUEUE), None)
            self.events.append(("failed", record.topic, record.key))
        if self.auto_ack:
            self.acknowledge()
        ready, self.ready = self.ready, []
        too_large = {topic for topic, limit in self.topic_max_bytes.items()
                     if sum(_size(r) for r, _ in ready if r.topic == topic) > limit}  # fmt: skip
        for record, callback in ready:
            error = next((error for matches, error in self.failures if matches(record)), None)
            if record.topic in too_large:
                error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
            if error is None and self.failures_left > 0:
                self.failures_left -= 1
                error = KafkaError(KafkaError._MSG_TIMED_OUT)
            if error is not None:
                callback(error, None)
                self.events.append(("failed", record.topic, record.key))
                self.transaction_failed = self.transaction_failed or error
                continue
            self.delivered.append(record)
            self.in_transaction.append(record)
            callback(None, None)
            self.events.append(("acked", record.topic, record.key))
        return len(ready)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        """The topics produced to so far, but for ``missing_topics``."""
        names = {record.topic for record in self.attempts} - self.missing_topics
        return SimpleNamespace(topics={name: SimpleNamespace(error=None) for name in names})

    def flush(self, timeout: float = 0.0) -> int:
        self.acknowledge()
        self.poll()
        return 0

    # --- transactions -----------------------------------------------------------------------------------------

    def init_transactions(self, timeout: float) -> None:
        self.events.append(("init_transactions",))

    def begin_transaction(self) -> None:
        self.in_transaction = []
        self.transaction_failed = None
        self.events.append(("begin",))

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any, timeout: float) -> None:
        if self.transaction_error is not None:
            raise KafkaException(self.transaction_error)
        self.acknowledge()
        self.poll()  # librdkafka flushes the transaction's records before the offsets go in
        if self.transaction_failed is not None:
            failed = self.transaction_failed
            raise KafkaException(KafkaError(failed.code(), "a record failed: abort", txn_requires_abort=True))
        self.events.append(("send_offsets", {(tp.topic, tp.partition): tp.offset for tp in offsets}))
        self.offsets_metadata = {(tp.topic, tp.partition): tp.metadata for tp in offsets}

    def commit_transaction(self, timeout: float) -> None:
        self.committed_transactions.append({"records": list(self.in_transaction)})
        self.events.append(("commit_transaction", len(self.in_transaction)))

    def abort_transaction(self, timeout: float) -> None:
        self.pending.clear()
        self.in_transaction = []
        self.transaction_failed = None
        self.events.append(("abort_transaction",))


def abortable_error() -> KafkaError:
    """A KafkaError that says the transaction must be aborted (what a broker-side error during it gives)."""
    return KafkaError(KafkaError._STATE, "simulated abortable error", txn_requires_abort=True)
