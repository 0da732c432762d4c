"""Records scored per model version, carried in the committed offsets' metadata (records/scored_counts.py).

The format and the cumulative bookkeeping are pure; the loop's part (counts restored on assign, carried by every
commit and transaction, a redelivery counted once) is checked with the in-memory clients of tests/runtime/
fake_kafka.py. The operator's sum over a real group's commits is checked on the bed in
tests/operator/test_rollout_status.py.
"""

from __future__ import annotations

from kinfer_runtime.records.scored_counts import (
    MAX_VERSIONS,
    PartitionScored,
    ScoredCounts,
    encode,
    parse,
    totals,
)
from tests.runtime.test_pipeline_loop import IN, good, pipeline_loop


def test_the_metadata_reads_back_what_was_written_and_nothing_foreign() -> None:
    text = encode({2: 1130, 1: 10234}, [2, 1])
    assert text == "kinfer-scored v1=10234 v2=1130 loaded=1,2"
    assert parse(text) == PartitionScored({1: 10234, 2: 1130}, (1, 2))
    assert parse(encode({}, [3])) == PartitionScored({}, (3,))
    for foreign in (None, "", "kinfer-batch start=0 end=10", "kinfer-scored v1=x loaded=1", "kinfer-scored q=1"):
        assert parse(foreign) is None, foreign


def test_totals_sum_every_partition() -> None:
    parts = [PartitionScored({1: 5, 2: 1}, (1, 2)), PartitionScored({1: 7}, (1,))]
    assert totals(parts) == {1: 12, 2: 1}


def test_counts_start_from_the_last_commit_and_an_unreadable_partition_writes_none() -> None:
    scored = ScoredCounts(lambda: [1, 2])
    scored.restore({(IN, 0): "kinfer-scored v1=10 loaded=1", (IN, 1): None}, unreadable=[(IN, 2)])
    scored.add({(IN, 0): {1: 3, 2: 1}, (IN, 1): {2: 4}, (IN, 2): {1: 9}})
    assert parse(scored.metadata((IN, 0))) == PartitionScored({1: 13, 2: 1}, (1, 2))
    assert parse(scored.metadata((IN, 1), extra={2: 1})) == PartitionScored({2: 5}, (1, 2))
    assert scored.metadata((IN, 2)) == "", "counting a partition from zero would write an undercount"
    scored.forget([(IN, 0)])
    assert parse(scored.metadata((IN, 0))) == PartitionScored({}, (1, 2))


def test_old_versions_no_consumer_loaded_are_dropped_first_when_there_are_many() -> None:
    scored = ScoredCounts(lambda: [1, 40])
    scored.add({(IN, 0): {v: 1 for v in range(1, 41)}})
    kept = parse(scored.metadata((IN, 0)))
    assert kept is not None and len(kept.counts) == MAX_VERSIONS
    assert 1 in kept.counts and 40 in kept.counts and 2 not in kept.counts


def test_every_commit_carries_the_counts_of_the_records_it_commits() -> None:
    loop, consumer, _producer = pipeline_loop("atLeastOnce")
    consumer.committed_metadata[(IN, 0)] = "kinfer-scored v1=10 loaded=1"
    consumer.committed_offsets[(IN, 0)] = 0
    consumer.rebalance("assign", (IN, 0), (IN, 1))
    consumer.append(IN, 0, *good(1, 2), b"{oops", *good(3))
    consumer.append(IN, 1, *good(4))
    for _ in range(3):
        loop.step()
    loop.stop.set()
    loop.close()
    assert consumer.committed_offsets == {(IN, 0): 4, (IN, 1): 1}
    assert parse(consumer.committed_metadata[(IN, 0)]) == PartitionScored({1: 13}, (1,)), "dead letters not counted"
    assert parse(consumer.committed_metadata[(IN, 1)]) == PartitionScored({1: 1}, (1,))


def test_records_read_again_after_a_lost_partition_are_counted_once() -> None:
    loop, consumer, producer = pipeline_loop("atLeastOnce", auto_ack=False)
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(1, 2))
    loop.step()
    consumer.rebalance("lost", (IN, 0))
    consumer.rebalance("assign", (IN, 0))  # handed back at once: read again from the last commit
    loop.step()
    producer.acknowledge()  # the lost batch's outputs too: they must not count a second time
    loop.stop.set()
    loop.close()
    assert consumer.committed_offsets == {(IN, 0): 2}
    assert [r.key for r in producer.delivered if r.topic == "out"] == [b"k0", b"k1", b"k0", b"k1"]
    assert parse(consumer.committed_metadata[(IN, 0)]) == PartitionScored({1: 2}, (1,))


def test_a_transaction_commits_the_counts_with_its_offsets_and_an_abort_counts_nothing() -> None:
    loop, consumer, producer = pipeline_loop("exactlyOnce")
    consumer.rebalance("assign", (IN, 0))
    consumer.append(IN, 0, *good(*range(6)))
    loop.step()
    loop.step()
    loop.delivery.abort()  # type: ignore[attr-defined]  # both batches are read again
    for _ in range(3):
        loop.step()
    loop.stop.set()
    loop.close()
    assert parse(producer.offsets_metadata[(IN, 0)]) == PartitionScored({1: 6}, (1,))
