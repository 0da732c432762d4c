"""Static membership: a member restarted within the session timeout gets its partitions back without a
rebalance, so the other member of the group never stops (no revoke, no assign), and nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.polling import wait_until
from tests.runtime.integration.harness import (
    RuntimeProcess,
    TopicReader,
    create_topics,
    manifest,
    produce,
    transactions,
)


@pytest.mark.timing
def test_restarted_static_member_causes_no_rebalance(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = create_topics(kafka_bootstrap, partitions=4, prefix="static")
    # Long enough for a restart that imports TensorFlow again, even on a loaded machine (the default is 45 s).
    pipeline = manifest("static", kafka_bootstrap, topics, kafka_config={"session.timeout.ms": "90000"})
    a = RuntimeProcess(pipeline, tmp_path, kafka_bootstrap, pod_name="static-a")
    b = RuntimeProcess(pipeline, tmp_path, kafka_bootstrap, pod_name="static-b")
    reader = TopicReader(kafka_bootstrap, [topics.output, topics.dead_letter])
    try:
        a.start()
        b.start()
        a.wait_ready()
        b.wait_ready()
        wait_until(lambda: a.metric("kinfer_assigned_partitions") == 2 and b.metric("kinfer_assigned_partitions") == 2,
                   60, "two partitions each", interval=0.25)  # fmt: skip
        produce(kafka_bootstrap, topics.input, transactions(2_000))
        reader.wait_for(lambda: reader.totals()[topics.output] >= 2_000, 120, "first outputs")
        b_rebalances = b.metric("kinfer_rebalances_total")

        assert a.terminate(60) == 0, a.log_tail()
        produce(kafka_bootstrap, topics.input, transactions(2_000, start=2_000))  # while a is away
        a.start()
        a.wait_ready()
        wait_until(lambda: a.metric("kinfer_assigned_partitions") == 2, 60, "a's partitions back", interval=0.25)
        produce(kafka_bootstrap, topics.input, transactions(2_000, start=4_000))
        output = reader.seen[topics.output]
        reader.wait_for(lambda: len(output.keys) >= 6_000, 120, "every output")

        assert b.metric("kinfer_rebalances_total") == b_rebalances, "b saw a rebalance while a restarted"
        assert b.metric("kinfer_assigned_partitions") == 2
        assert a.metric("kinfer_rebalances_total") == 1  # its own (re)join only
    finally:
        a.stop()
        b.stop()
        reader.close()
    assert set(output.keys) == {f"k-{n}".encode() for n in range(6_000)}
    assert max(output.keys.values()) == 1
