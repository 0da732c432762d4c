"""Scale out and back in while records flow, as the HPA does it: a second member joins (the first gives up two
of its three partitions), then leaves; the first gets them back and must read them again from the second's
last commit. Every record has its output."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.polling import wait_until
from tests.runtime.integration.harness import RuntimeProcess, SteadyProducer, TopicReader, create_topics, manifest


@pytest.mark.timing
def test_partitions_handed_back_after_a_scale_in_are_read_again(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = create_topics(kafka_bootstrap, partitions=3, prefix="scalein")
    pipeline = manifest("scalein", kafka_bootstrap, topics)
    first = RuntimeProcess(pipeline, tmp_path, kafka_bootstrap, pod_name="scalein-a")
    second = RuntimeProcess(pipeline, tmp_path, kafka_bootstrap, pod_name="scalein-b")
    reader = TopicReader(kafka_bootstrap, [topics.output])
    sender = SteadyProducer(kafka_bootstrap, topics.input, rate=1_000)
    try:
        first.start().wait_ready()
        sender.start()
        second.start().wait_ready()
        wait_until(lambda: first.metric("kinfer_assigned_partitions") < 3, 60, "the second member to take partitions")
        time.sleep(5)
        assert second.terminate(60) == 0, second.log_tail()
        # A static member that leaves keeps its partitions until the session times out (10 s here).
        wait_until(lambda: first.metric("kinfer_assigned_partitions") == 3, 60, "every partition back on the first")
        handed_back = reader.totals()[topics.output]
        time.sleep(10)
        sender.stop()
        output = reader.seen[topics.output]
        reader.wait_for(lambda: set(output.keys) >= sender.acked, 90, "every record's output")
        assert first.alive(), first.log_tail()
    finally:
        sender.stop()
        first.stop()
        second.stop()
        reader.close()
    assert set(output.keys) >= sender.acked
    assert reader.totals()[topics.output] > handed_back
