"""The thin Kafka side of autoscaling: one AdminClient per cluster reads offsets into a ``LagReading``.

Per poll and pipeline: the input topic's partitions (``describe_topics``), their earliest offset, high
watermark and last stable offset (``list_offsets`` with ``OffsetSpec.earliest/latest`` and both isolation
levels), the group's committed offsets and their metadata (``list_consumer_group_offsets``; the runtime's
records scored per version) and which partitions live members own (``describe_consumer_groups``). A small lag
that stands still is checked once with a read_committed probe consumer: when it returns no record between the
committed offset and the end, that lag is only transaction markers or aborted records and counts 0
(kedacore/keda#5675).

``close`` destroys both clients in the caller's thread. A client left to the garbage collector can be
collected inside librdkafka's background thread, while it runs an admin result callback: when the client
collected is the one whose thread that is, librdkafka aborts the process ("rd_kafka_destroy() called from
librdkafka owned thread"), which is what a request still in flight after a timed-out ``result()`` leads to.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from kinfer_operator.autoscaling.lag import LagReading, PartitionOffsets

log = logging.getLogger(__name__)

PROBE_MAX_LAG = 64  # larger lags are never just markers in practice; don't read them
PROBE_TIMEOUT_SECONDS = 2.0


class KafkaLagPoller:
    """Reads offsets for any number of (topic, group) pairs on one Kafka cluster."""

    def __init__(self, client_config: dict[str, Any], request_timeout_seconds: float = 10.0):
        self.client_config = dict(client_config)
        self.timeout = request_timeout_seconds
        self._clients = contextlib.ExitStack()  # the AdminClient is destroyed by its context manager exit
        self.admin = self._clients.enter_context(AdminClient(self.client_config))
        self._probe: Consumer | None = None
        # (topic, partition, committed, end) -> verified marker-only tail length
        self._tails: dict[tuple[str, int, int, int], int] = {}
        self._previous: dict[tuple[str, str, int], int | None] = {}  # (group, topic, partition) -> committed
        self._probe_lock = threading.Lock()  # the AdminClient is thread-safe, the one probe consumer is not

    def read(self, topic: str, group: str, read_committed: bool = True) -> LagReading:
        described = self.admin.describe_topics(TopicCollection([topic]), request_timeout=self.timeout)
        info = described[topic].result(self.timeout)
        parts = [TopicPartition(topic, p.id) for p in info.partitions]
        earliest = self._offsets(parts, OffsetSpec.earliest(), IsolationLevel.READ_UNCOMMITTED)
        watermark = self._offsets(parts, OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED)
        stable = self._offsets(parts, OffsetSpec.latest(), IsolationLevel.READ_COMMITTED)
        request = [ConsumerGroupTopicPartitions(group, parts)]
        answer = self.admin.list_consumer_group_offsets(request, request_timeout=self.timeout)[group]
        found = answer.result(self.timeout).topic_partitions
        committed = {tp.partition: tp.offset for tp in found}
        metadata = {tp.partition: tp.metadata for tp in found if tp.metadata and tp.offset >= 0}
        assigned = self._assigned(topic, group)
        offsets = []
        for tp in parts:
            p = tp.partition
            position = committed.get(p)
            position = position if position is not None and position >= 0 else None
            end = stable[p] if read_committed else watermark[p]
            tail = self._control_tail(group, topic, p, position, end) if read_committed else 0
            offsets.append(PartitionOffsets(p, earliest[p], watermark[p], stable[p], position, tail))
        return LagReading(topic, tuple(offsets), frozenset(assigned), time.monotonic(), metadata)

    def _offsets(self, parts: list[TopicPartition], spec: OffsetSpec, isolation: IsolationLevel) -> dict[int, int]:
        futures = self.admin.list_offsets(
            {tp: spec for tp in parts}, isolation_level=isolation, request_timeout=self.timeout
        )
        return {tp.partition: future.result(self.timeout).offset for tp, future in futures.items()}

    def _assigned(self, topic: str, group: str) -> set[int]:
        future = self.admin.describe_consumer_groups([group], request_timeout=self.timeout)[group]
        try:
            description = future.result(self.timeout)
        except Exception as error:  # a group that doesn't exist yet has no members
            log.debug("describe group %s: %s", group, error)
            return set()
        owned = set()
        for member in description.members:
            for tp in member.assignment.topic_partitions if member.assignment else []:
                if tp.topic == topic:
                    owned.add(tp.partition)
        return owned

    def _control_tail(self, group: str, topic: str, partition: int, committed: int | None, end: int) -> int:
        """``end - committed`` when nothing a read_committed consumer returns lies in between, else 0.

        What lies in an offset range is the log's, not the group's: the verdict is cached by range alone.
        """
        key = (group, topic, partition)
        previous, self._previous[key] = self._previous.get(key), committed
        if committed is None or not 0 < end - committed <= PROBE_MAX_LAG or previous != committed:
            return 0  # only a lag that stood still for a poll is worth a read
        cache_key = (topic, partition, committed, end)
        with self._probe_lock:
            if cache_key not in self._tails:
                if len(self._tails) > 10_000:
                    self._tails.clear()
                only_markers = self._only_markers(topic, partition, committed, end)
                self._tails[cache_key] = end - committed if only_markers else 0
            return self._tails[cache_key]

    def _only_markers(self, topic: str, partition: int, committed: int, end: int) -> bool:
        if self._probe is None:
            self._probe = Consumer(
                {
                    **self.client_config,
                    # a throw-away group id: the probe never joins a group nor commits
                    "group.id": f"kinfer-lag-probe-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "isolation.level": "read_committed",
                }
            )
        self._probe.assign([TopicPartition(topic, partition, committed)])
        deadline = time.monotonic() + PROBE_TIMEOUT_SECONDS
        try:
            while time.monotonic() < deadline:
                message = self._probe.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                if error is None:
                    offset = message.offset()
                    return offset is not None and offset >= end  # a data record past the end doesn't count
                return bool(error.code() == KafkaError._PARTITION_EOF)
            return False  # undecided in time: count the lag (the safe side)
        finally:
            self._probe.unassign()

    def close(self) -> None:
        """Destroy the probe consumer and the admin client (once no ``read`` is running: the monitor's job)."""
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None
        self._clients.close()
