"""SIGKILL of ``kinfer run`` at random points while it works through 100,000 records, 10 times, then a final run.

At-least-once: every input has an output (none lost) and the duplicates stay within what can be in flight
when the process dies (the batches produced but not yet committed). Exactly-once: a read_committed reader sees
exactly one output per input.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kinfer_runtime.pipeline.loop import MAX_IN_FLIGHT_BATCHES
from tests.runtime.integration.harness import (
    RuntimeProcess,
    TopicReader,
    create_topics,
    manifest,
    produce,
    transactions,
)

RECORDS = 100_000
KILLS = 10
BATCH = 256
FRESH_PROGRESS = 500  # outputs a start must add before it is killed (so that it is killed while working)


def run_with_kills(bootstrap: str, tmp_path: Path, delivery: str, seed: int) -> tuple[TopicReader, str, str, int]:
    topics = create_topics(bootstrap, partitions=3, prefix="kill")
    produce(bootstrap, topics.input, transactions(RECORDS))
    name = "kills-eos" if delivery == "exactlyOnce" else "kills-alo"
    runtime = RuntimeProcess(manifest(name, bootstrap, topics, delivery=delivery, max_batch_size=BATCH), tmp_path,
                             bootstrap, pod_name=f"{name}-0")  # fmt: skip
    reader = TopicReader(bootstrap, [topics.output, topics.dead_letter], committed_only=delivery == "exactlyOnce")
    rng = random.Random(seed)
    kills = 0
    try:
        runtime.start()
        output = reader.seen[topics.output]
        stretch = RECORDS // (KILLS + 1)
        for kill in range(KILLS):
            # Kill k falls at a random point of the k-th of KILLS + 1 equal stretches of the input (in distinct
            # inputs with an output), once this start has made fresh progress, at a random moment within a batch.
            # Stretches rather than a random amount of progress per kill: a fast runtime overshoots each target
            # by the records it handles between the reader seeing the target and the kill, and ten overshoots
            # must not use up the input before the last kill.
            unique_target = (kill + 1) * stretch + rng.randint(0, stretch // 2)
            fresh_target = reader.totals()[topics.output] + FRESH_PROGRESS
            reader.wait_for(
                lambda u=unique_target, f=fresh_target: len(output.keys) >= u and output.total >= f,  # type: ignore[misc]
                timeout=240,
                describe=f"{unique_target} inputs done and {FRESH_PROGRESS} fresh outputs before kill {kill + 1}",
            )
            assert runtime.alive(), runtime.log_tail()
            reader.poll(rng.uniform(0.0, 0.05))
            runtime.kill()
            kills += 1
            runtime.start()
        reader.wait_for(lambda: len(output.keys) >= RECORDS, timeout=300, describe="an output for every input")
        runtime.wait_ready()
        assert runtime.terminate(60) == 0, runtime.log_tail()
        reader.poll(1.0)  # anything the drain produced
    finally:
        runtime.stop()
    return reader, topics.output, topics.dead_letter, kills


@pytest.mark.slow
@pytest.mark.timing
def test_sigkill_at_least_once_loses_nothing_and_bounds_duplicates(kafka_bootstrap: str, tmp_path: Path) -> None:
    reader, output, dead_letter, kills = run_with_kills(kafka_bootstrap, tmp_path, "atLeastOnce", seed=3)
    try:
        outputs = reader.seen[output].keys
        expected = {f"k-{n}".encode() for n in range(RECORDS)}
        assert set(outputs) == expected, f"lost: {len(expected - set(outputs))}"
        assert reader.totals()[dead_letter] == 0
        duplicates = sum(outputs.values()) - len(outputs)
        # Per kill at most the in-flight batches plus the completed ones whose asynchronous commit was on its way.
        bound = kills * (MAX_IN_FLIGHT_BATCHES + 2) * BATCH
        print(f"kills={kills} outputs={sum(outputs.values())} duplicates={duplicates} bound={bound}")
        assert kills == KILLS
        assert duplicates <= bound
    finally:
        reader.close()


@pytest.mark.slow
@pytest.mark.timing
def test_sigkill_exactly_once_one_committed_output_per_input(kafka_bootstrap: str, tmp_path: Path) -> None:
    reader, output, dead_letter, kills = run_with_kills(kafka_bootstrap, tmp_path, "exactlyOnce", seed=4)
    try:
        outputs = reader.seen[output].keys
        assert kills == KILLS
        assert len(outputs) == RECORDS
        assert {f"k-{n}".encode() for n in range(RECORDS)} == set(outputs)
        duplicated = [key for key, count in outputs.items() if count != 1]
        assert duplicated == [], f"{len(duplicated)} inputs with more than one committed output, e.g. {duplicated[:5]}"
        assert reader.totals()[dead_letter] == 0
    finally:
        reader.close()
