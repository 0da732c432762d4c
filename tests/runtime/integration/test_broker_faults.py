"""The broker hangs (SIGSTOP for 30 s) or restarts while records flow, or answers the runtime's metadata requests
with no broker for a moment: the runtime rides it out without crashing or spinning, loses nothing, and its
throughput comes back. Uses a private broker, never the shared one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.integration.harness import RuntimeProcess, SteadyProducer, TopicReader, create_topics, manifest
from tests.testbed import free_port
from tests.testbed.metadata_proxy import MetadataProxy

RATE = 1000  # records/s offered throughout
PAUSE_S = 30.0


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["pause", "restart"])
@pytest.mark.timing
def test_runtime_rides_out_a_broker_fault(private_kafka: Any, tmp_path: Path, fault: str) -> None:
    bootstrap = private_kafka.bootstrap_servers
    topics = create_topics(bootstrap, partitions=3, prefix=fault)
    pipeline = manifest(f"broker-{fault}", bootstrap, topics, kafka_config={"session.timeout.ms": "45000"})
    runtime = RuntimeProcess(pipeline, tmp_path, bootstrap, pod_name=f"{fault}-0")
    reader = TopicReader(bootstrap, [topics.output, topics.dead_letter])
    producer = SteadyProducer(bootstrap, topics.input, RATE)
    outputs = reader.seen[topics.output]
    try:
        runtime.start()
        runtime.wait_ready()
        producer.start()
        reader.wait_for(lambda: outputs.total >= 3 * RATE, timeout=60, describe="traffic flowing")

        cpu_before, fault_started = runtime.cpu_seconds(), time.monotonic()
        iterations_before = runtime.metric("kinfer_loop_iterations_total")
        if fault == "pause":
            private_kafka.pause()
            time.sleep(PAUSE_S)  # the fault itself: the broker is hung this long
            private_kafka.resume()
        else:
            private_kafka.stop()
            private_kafka.start()
        outage_s = time.monotonic() - fault_started
        outage_cpu = runtime.cpu_seconds() - cpu_before
        assert runtime.alive(), runtime.log_tail()
        iterations_per_s = (runtime.metric("kinfer_loop_iterations_total") - iterations_before) / outage_s

        back, at_back = time.monotonic(), outputs.total
        reader.wait_for(lambda: outputs.total >= at_back + 2 * RATE, timeout=90, describe="outputs after the fault")
        recovery_s = time.monotonic() - back
        reader.wait_for(lambda: outputs.total >= at_back + 10 * RATE, timeout=120, describe="steady outputs")
        producer.stop()
        expected = producer.acked
        reader.wait_for(lambda: expected <= set(outputs.keys), timeout=180, describe="an output for every input")
        assert runtime.alive(), runtime.log_tail()
        assert runtime.terminate(60) == 0, runtime.log_tail()
    finally:
        producer.stop()
        runtime.stop()
        reader.close()
    print(f"{fault}: outage {outage_s:.1f}s, runtime CPU during it {outage_cpu:.2f}s, {iterations_per_s:.0f} loop "
          f"passes/s, outputs resumed {recovery_s:.1f}s after the broker's return, inputs {len(expected)}")  # fmt: skip
    # Traffic flowed before (3 s) and after (10 s) the fault; duplicates after the restart may make the unique
    # count a little smaller than the outputs counted, hence the margin.
    assert len(expected) >= 10 * RATE
    # Not spinning: every pass of the loop blocks for up to 5-20 ms when there is nothing to do, so at most a few
    # hundred passes a second; a busy loop makes tens of thousands, even with a small share of a loaded CPU.
    assert iterations_per_s < 400
    # Nor the Kafka client's threads: an idempotent producer allowed more than one request in flight busy-polls
    # for as long as the broker is away (a whole core, ~28 CPU seconds in a 30 s pause; see
    # kafka_config.RELIABLE_PRODUCER_SETTINGS). Idle waiting costs a few percent of one core.
    assert outage_cpu < 0.5 * outage_s, f"{outage_cpu:.1f} CPU seconds in a {outage_s:.0f} s outage"
    # Throughput comes back: outputs resumed within the 90 s wait above. How fast (the target is 10 s) is
    # printed, not asserted: speed is for benchmarks, and this shared box's load varies too much for a timed test.


@pytest.mark.slow
@pytest.mark.timing
def test_runtime_survives_metadata_without_brokers(private_kafka_factory: Any, tmp_path: Path) -> None:
    """A broker in controlled shutdown answers Metadata with no broker for a few tens of milliseconds, then closes
    the connection; a librdkafka client that reads such an answer drops the only broker it knew, and the answer
    cancels the re-bootstrap the disconnect scheduled, so it never finds one again (confluentinc/librdkafka#5301).
    That made the restart case above fail in 2 runs of 30; here a proxy opens the window at will, for the
    runtime's clients only, while the broker stays up."""
    proxy_port = free_port()
    # The last advertised.listeners line wins: clients learn the proxy's address, so all their traffic passes it.
    broker = private_kafka_factory(extra_properties=f"advertised.listeners=PLAINTEXT://127.0.0.1:{proxy_port}\n")
    proxy = MetadataProxy(proxy_port, broker.port).start()
    broker.start()
    bootstrap = broker.bootstrap_servers
    try:
        topics = create_topics(bootstrap, partitions=3, prefix="nobroker")
        # A metadata refresh every second, so that both clients ask while the window is open.
        config = {"session.timeout.ms": "45000", "topic.metadata.refresh.interval.ms": "1000"}
        pipeline = manifest("no-broker", bootstrap, topics, kafka_config=config)
        runtime = RuntimeProcess(pipeline, tmp_path, bootstrap, pod_name="no-broker-0")
        reader = TopicReader(bootstrap, [topics.output, topics.dead_letter])  # client.id "rdkafka": not stripped
        producer = SteadyProducer(bootstrap, topics.input, RATE)
        outputs = reader.seen[topics.output]
        try:
            runtime.start()
            runtime.wait_ready()
            producer.start()
            reader.wait_for(lambda: outputs.total >= 3 * RATE, timeout=60, describe="traffic flowing")
            proxy.strip_for("kinfer-", seconds=3.0)
            time.sleep(3.0)
            assert proxy.stripped, "the runtime asked for no metadata while the window was open"
            at = outputs.total
            reader.wait_for(lambda: outputs.total >= at + 5 * RATE, timeout=90, describe="outputs after the window")
            producer.stop()
            expected = producer.acked
            reader.wait_for(lambda: expected <= set(outputs.keys), timeout=120, describe="an output for every input")
            assert runtime.alive(), runtime.log_tail()
            assert runtime.terminate(60) == 0, runtime.log_tail()
        finally:
            producer.stop()
            runtime.stop()
            reader.close()
    finally:
        proxy.stop()
