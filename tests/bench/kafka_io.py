"""Kafka plumbing for the benchmark: topics, filling an input topic, paced producing, and reading outputs back.

Throughput is measured the same way for every contender: from the broker's timestamps of its output records
(output topics use ``message.timestamp.type=LogAppendTime``, so a client can't carry the input's timestamp over,
as Quix Streams does by default), ``(n - 1) / (last - first)``: process start-up and model loading are left out
and every contender is judged on its steady flow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topics(bootstrap: str, names: Sequence[str], partitions: int, config: dict[str, str] | None = None) -> None:
    topics = [NewTopic(name, partitions, 1, config=dict(config or {})) for name in names]
    with AdminClient({"bootstrap.servers": bootstrap}) as admin:
        for future in admin.create_topics(topics).values():
            future.result(30)


def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    with AdminClient({"bootstrap.servers": bootstrap}) as admin:
        for future in admin.delete_topics(list(names)).values():
            try:
                future.result(30)
            except Exception:
                continue


def fill_topic(bootstrap: str, topic: str, values: Sequence[bytes], keys: Sequence[bytes], count: int) -> float:
    """Produce ``count`` records (cycling through ``values``) as fast as possible; returns records/s delivered."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000, "acks": "all"})
    started = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, values[i % len(values)], keys[i % len(keys)])
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} records to {topic} not delivered")
    return count / (time.perf_counter() - started)


def topic_size(bootstrap: str, topic: str, partitions: int, consumer: Consumer | None = None) -> int:
    """Sum of the partitions' high watermarks (cheap: no records are read); ``consumer``: one to reuse."""
    asker = consumer or Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        return sum(asker.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        if consumer is None:
            asker.close()


def wait_for_size(bootstrap: str, topic: str, partitions: int, count: int, timeout: float,
                  alive: Callable[[], bool] = lambda: True) -> bool:  # fmt: skip
    """Wait until ``topic`` holds ``count`` records. One client asks all the while: a new one per question (four a
    second) cost 1.6-1.8 ms of CPU in this process and 8-10 ms in the broker each (20 timed), taken from the run
    being timed, which the contract floor's runs (in this process, waited for by their own loop) never paid."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            if topic_size(bootstrap, topic, partitions, consumer) >= count:
                return True
            time.sleep(0.25)
        return topic_size(bootstrap, topic, partitions, consumer) >= count
    finally:
        consumer.close()


@dataclass
class Outputs:
    timestamps_ms: list[int] = field(default_factory=list)  # CreateTime of each output record
    values: list[bytes] = field(default_factory=list)

    def rate(self) -> float:
        if len(self.timestamps_ms) < 2:
            return 0.0
        span = (max(self.timestamps_ms) - min(self.timestamps_ms)) / 1000
        return (len(self.timestamps_ms) - 1) / max(span, 0.001)


def read_outputs(bootstrap: str, topic: str, partitions: int, count: int, timeout: float,
                 read_committed: bool = False, keep_values: bool = False) -> Outputs:  # fmt: skip
    """Read a topic from the beginning until ``count`` records (or the timeout)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "bench-reader", "enable.auto.commit": False,
        "isolation.level": "read_committed" if read_committed else "read_uncommitted",
    })  # fmt: skip
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    outputs = Outputs()
    deadline = time.monotonic() + timeout
    try:
        while len(outputs.timestamps_ms) < count and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.2):
                if message.error():
                    continue
                outputs.timestamps_ms.append(message.timestamp()[1])
                if keep_values:
                    outputs.values.append(message.value() or b"")
    finally:
        consumer.close()
    return outputs


class LiveReader:
    """Reads a topic in a thread as records arrive, noting each record's arrival time (for latency)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "bench-live", "enable.auto.commit": False,
            "fetch.wait.max.ms": 5, "fetch.min.bytes": 1,
        })  # fmt: skip
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.arrivals: list[tuple[float, bytes]] = []  # (wall-clock ms on arrival, value)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-live-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # poll() returns as soon as one record is there; consume(n, timeout) would wait for n records or the
        # whole timeout, and its wait would count as kinfer's latency. What queued behind that first record is
        # taken without waiting and noted at the same moment.
        while not self._stop.is_set():
            first = self.consumer.poll(0.005)
            if first is None:
                continue
            arrived_ms = time.time() * 1000
            for message in [first, *self.consumer.consume(500, 0)]:
                if not message.error():
                    self.arrivals.append((arrived_ms, message.value() or b""))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


def produce_paced(bootstrap: str, topic: str, values: Sequence[bytes], rate: float, seconds: float) -> int:
    """Open-loop producer at ``rate`` records/s for ``seconds`` (each record timestamped at produce())."""
    # librdkafka's default linger (5 ms), as an upstream producer would have it. It counts in the latency (records
    # are timestamped at produce()); 1 ms made the co-located broker spend 0.64-0.68 cores instead of 0.49-0.53 on
    # the same 5,000 records/s, and end-to-end p99 was 61-65 ms instead of 38-44 (two pairs side by side).
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    total = int(rate * seconds)
    started = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while sent < due:
            producer.produce(topic, values[sent % len(values)])
            sent += 1
        producer.poll(0)
        next_at = started + sent / rate
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(min(delay, 0.002) if rate > 500 else delay)
    producer.flush(30)
    return sent
