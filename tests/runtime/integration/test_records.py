"""Bad records go to the dead-letter topic with their bytes and context; good ones are predicted; SIGTERM drains.

Runs ``kinfer run`` with the real embedded models (``models/fraud/1``, ``models/sensor-anomaly/1``).
"""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import orjson

from kinfer_runtime.tools.synthetic import sensor_windows
from tests.runtime.integration.harness import (
    GOOD_TRANSACTION,
    RuntimeProcess,
    TopicReader,
    create_topics,
    manifest,
    produce,
    transactions,
)
from tests.testbed import REPO_ROOT

GOOD = 20_000
MAX_RECORD_BYTES = 4096
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "IN", "BR", "NG"]


def tx(**changes: object) -> bytes:
    return orjson.dumps({k: v for k, v in {**GOOD_TRANSACTION, **changes}.items() if v is not ...})


# One maker per kind of bad record the issue lists, with the reason the runtime must report.
BAD_FRAUD_RECORDS: list[tuple[str, bytes | None]] = [
    ("MalformedJson", b'{"amount": 12.5, "hour": '),
    ("EmptyValue", b""),
    ("EmptyValue", None),
    ("NotUtf8", b'{"amount": "\xff\xfe"}'),
    ("NotAnObject", b"[1, 2, 3]"),
    ("MissingField", tx(amount=...)),
    ("WrongType", tx(amount="twelve")),
    ("WrongType", tx(hour=[1, 2])),
    ("NonFinite", b'{"amount": 1e999, "hour": 3}'),
    ("NonFinite", tx(amount=math.nan).replace(b"null", b"NaN")),
    ("UnknownCategory", tx(country="XX")),
    ("RecordTooLarge", tx(note="x" * (MAX_RECORD_BYTES + 100))),
]


def header(message: object, name: str) -> bytes | None:
    for key, value in message.headers() or []:  # type: ignore[attr-defined]
        if key == name:
            return bytes(value)
    return None


def test_bad_records_of_every_kind_are_dead_lettered_and_good_ones_predicted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = create_topics(kafka_bootstrap, partitions=3, prefix="bad")
    rng = random.Random(7)
    good = transactions(GOOD)
    bad_count = GOOD // 100  # 1 %
    bad = []
    for n in range(bad_count):
        reason, value = BAD_FRAUD_RECORDS[n % len(BAD_FRAUD_RECORDS)]
        headers = [("trace-id", f"t-{n}".encode())]
        if n == 0:
            headers.append(("kinfer.attempt", b"2"))  # a replayed record that fails again
        bad.append((f"bad-{n}-{reason}".encode(), value, headers))
    records: list[tuple[object, ...]] = [*good, *bad]
    rng.shuffle(records)
    produce(kafka_bootstrap, topics.input, records)
    # Only with rejectUnknown does an unknown country fail instead of going to the unknown bucket.
    preprocessing = {
        "maxRecordBytes": MAX_RECORD_BYTES,
        "features": [{"name": "country", "type": "categorical", "vocabulary": COUNTRIES, "encoding": "oneHot",
                      "rejectUnknown": True}],
    }  # fmt: skip
    pipeline = manifest("bad-records", kafka_bootstrap, topics, preprocessing=preprocessing)
    runtime = RuntimeProcess(pipeline, tmp_path, kafka_bootstrap)
    reader = TopicReader(kafka_bootstrap, [topics.output, topics.dead_letter], keep_messages=True)
    try:
        runtime.start()
        reader.wait_for(
            lambda: reader.totals()[topics.output] >= GOOD and reader.totals()[topics.dead_letter] >= bad_count,
            timeout=180,
            describe="all outputs and dead letters",
        )
        dead_lettered_metric = runtime.metric("kinfer_records_dead_lettered_total")
        assert runtime.terminate() == 0, runtime.log_tail()
        reader.poll(1.0)
    finally:
        runtime.stop()
        reader.close()

    outputs = reader.seen[topics.output]
    assert set(outputs.keys) == {key for key, _ in good}
    assert max(outputs.keys.values()) == 1
    sample = orjson.loads(outputs.messages[0].value())
    assert 0.0 <= sample["prediction"]["fraud_probability"] <= 1.0
    assert sample["source"]["topic"] == topics.input and sample["model"]["name"] == "fraud"

    dead = reader.seen[topics.dead_letter]
    assert dead.total == bad_count and dead_lettered_metric == bad_count
    sent = {key: (value, headers) for key, value, headers in bad}
    for message in dead.messages:
        key = message.key()
        value, headers = sent[key]
        expected_reason = key.decode().rsplit("-", 1)[1]
        assert header(message, "kinfer.error.class") == expected_reason.encode(), key
        assert message.value() == value or (value is None and not message.value())
        assert header(message, "trace-id") == headers[0][1]
        assert header(message, "kinfer.source.topic") == topics.input.encode()
        partition = int(header(message, "kinfer.source.partition") or -1)
        assert 0 <= partition < 3 and int(header(message, "kinfer.source.offset") or -1) >= 0
        assert header(message, "kinfer.pipeline") == b"bad-records"
        assert int(header(message, "kinfer.model.version") or 0) >= 1
        assert header(message, "kinfer.error.message")
        assert header(message, "kinfer.attempt") == (b"3" if key.startswith(b"bad-0-") else b"1")


def test_wrong_shape_and_nan_in_a_tensor_input_are_dead_lettered(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = create_topics(kafka_bootstrap, partitions=1, prefix="shape")
    windows, _ = sensor_windows(500, seed=5)
    records: list[tuple[object, ...]] = [(f"w-{n}".encode(), orjson.dumps(w)) for n, w in enumerate(windows)]
    short = dict(windows[0], window=windows[0]["window"][:10])
    flat = dict(windows[0], window=[v for row in windows[0]["window"] for v in row])
    nan = re.sub(rb"\[\[-?[0-9.]+", b"[[NaN", orjson.dumps(windows[0]), count=1)
    records += [(b"bad-WrongShape-1", orjson.dumps(short)), (b"bad-WrongShape-2", orjson.dumps(flat)),
                (b"bad-NonFinite", nan)]  # fmt: skip
    produce(kafka_bootstrap, topics.input, records)
    pipeline = manifest("sensor-shapes", kafka_bootstrap, topics, model="sensor-anomaly")
    runtime = RuntimeProcess(pipeline, tmp_path, kafka_bootstrap, model_path=REPO_ROOT / "models" / "sensor-anomaly")
    reader = TopicReader(kafka_bootstrap, [topics.output, topics.dead_letter], keep_messages=True)
    try:
        runtime.start()
        reader.wait_for(lambda: reader.totals()[topics.output] >= 500 and reader.totals()[topics.dead_letter] >= 3,
                        timeout=180, describe="sensor outputs and dead letters")  # fmt: skip
    finally:
        runtime.stop()
        reader.close()
    reasons = {m.key(): header(m, "kinfer.error.class") for m in reader.seen[topics.dead_letter].messages}
    assert reasons == {b"bad-WrongShape-1": b"WrongShape", b"bad-WrongShape-2": b"WrongShape",
                       b"bad-NonFinite": b"NonFinite"}  # fmt: skip
    assert set(reader.seen[topics.output].keys) == {f"w-{n}".encode() for n in range(500)}


def test_sigterm_drains_and_a_restart_adds_no_duplicates(kafka_bootstrap: str, tmp_path: Path) -> None:
    total = 40_000
    topics = create_topics(kafka_bootstrap, partitions=3, prefix="term")
    produce(kafka_bootstrap, topics.input, transactions(total))
    runtime = RuntimeProcess(manifest("sigterm", kafka_bootstrap, topics), tmp_path, kafka_bootstrap, pod_name="term-0")
    reader = TopicReader(kafka_bootstrap, [topics.output, topics.dead_letter])
    try:
        runtime.start()
        reader.wait_for(lambda: reader.totals()[topics.output] >= 5_000, timeout=120, describe="5000 outputs")
        assert runtime.terminate(60) == 0, runtime.log_tail()
        reader.poll(1.0)
        at_stop = reader.totals()[topics.output]
        runtime.start()
        output = reader.seen[topics.output]
        reader.wait_for(lambda: len(output.keys) >= total, timeout=180, describe="every output")
        assert runtime.terminate(60) == 0, runtime.log_tail()
        reader.poll(1.0)
    finally:
        runtime.stop()
        reader.close()
    print(f"outputs at SIGTERM: {at_stop}; total {output.total}")
    assert at_stop < total, "the SIGTERM came after everything was done; the test proved nothing"
    assert len(output.keys) == total
    duplicated = [key for key, count in output.keys.items() if count > 1]
    assert duplicated == [], f"{len(duplicated)} duplicates after a SIGTERM, e.g. {duplicated[:5]}"
