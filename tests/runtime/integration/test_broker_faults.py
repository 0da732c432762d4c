"""The broker hangs (SIGSTOP for 30 s) or restarts while records flow: the runtime rides it out without
crashing or spinning, loses nothing, and its throughput comes back. Uses a private broker, never the shared one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.integration.harness import RuntimeProcess, SteadyProducer, TopicReader, create_topics, manifest

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
