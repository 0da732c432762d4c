"""What the record-format integration tests share: one ``kinfer run`` until every input has its output or dead
letter, and the check that each bad record reached the dead-letter topic exactly as it was sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.runtime.integration.harness import RuntimeProcess, TopicReader, Topics


def score_once(pipeline: dict[str, Any], workdir: Path, bootstrap: str, model_path: Path, topics: Topics,
               outputs: int, dead_letters: int) -> TopicReader:  # fmt: skip
    """Run the pipeline until ``outputs`` outputs and ``dead_letters`` dead letters arrived, stop it with SIGTERM
    (it must exit 0), and read a second more (anything published twice would arrive then). The reader, closed,
    holds every message of both topics."""
    runtime = RuntimeProcess(pipeline, workdir, bootstrap, model_path=model_path)
    reader = TopicReader(bootstrap, [topics.output, topics.dead_letter], keep_messages=True)
    try:
        runtime.start()
        totals = reader.totals
        reader.wait_for(lambda: totals()[topics.output] >= outputs and totals()[topics.dead_letter] >= dead_letters,
                        timeout=180, describe=f"{outputs} outputs and {dead_letters} dead letters")  # fmt: skip
        assert runtime.terminate() == 0, runtime.log_tail()
        reader.poll(1.0)
    finally:
        runtime.stop()
        reader.close()
    assert reader.totals() == {topics.output: outputs, topics.dead_letter: dead_letters}, "lost or published twice"
    return reader


def dead_letter_reasons(reader: TopicReader, topic: str, sent: dict[bytes, bytes]) -> dict[bytes, str]:
    """``kinfer.error.class`` of each dead letter by key, once checked that the dead letters are exactly the
    records ``sent`` (key → value), with their original bytes."""
    dead = {m.key(): m for m in reader.seen[topic].messages}
    assert set(dead) == set(sent), (sorted(dead), sorted(sent))
    for key, message in dead.items():
        assert (message.value() or b"") == sent[key], f"{key!r}: the dead letter is not the original bytes"
    return {key: dict(m.headers() or [])["kinfer.error.class"].decode() for key, m in dead.items()}
