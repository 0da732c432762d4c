"""Tensor records through ``kinfer run`` and a real broker: the sensor model's windows sent as raw float32 bytes
and as .npy files are scored as the model scores the same windows; each kind of bad value is dead-lettered with
its original bytes and its reason, nothing is lost, and ``kinfer score`` on a .npy file of the windows gives the
same predictions as the live pipeline."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import orjson
import yaml

from kinfer_runtime.spec import parse_pipeline
from kinfer_runtime.tools import score
from kinfer_runtime.tools.synthetic import sensor_windows
from tests.runtime.integration.format_runs import dead_letter_reasons, score_once
from tests.runtime.integration.harness import create_topics, manifest, produce
from tests.testbed import REPO_ROOT

SENSOR = REPO_ROOT / "models" / "sensor-anomaly"
GOOD = 400


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_raw_and_npy_tensors_are_scored_and_bad_ones_dead_lettered_unchanged(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    windows = np.asarray([w["window"] for w in sensor_windows(GOOD, seed=11)[0]], dtype=np.float32)
    good = [(f"w-{n}".encode(), npy(w) if n % 2 else w.astype("<f4").tobytes()) for n, w in enumerate(windows)]
    nan = windows[0].copy()
    nan[0, 0] = np.inf
    bad = {
        b"bad-WrongShape-short": windows[0].tobytes()[:100],
        b"bad-WrongShape-npy": npy(windows[0].reshape(96)),
        b"bad-WrongType": npy(windows[0].astype(np.float64)),
        b"bad-MalformedTensor": npy(windows[0])[:10] + b"{garbage}" + b" " * 400,
        b"bad-NonFinite": nan.tobytes(),
        b"bad-EmptyValue": b"",
    }
    topics = create_topics(kafka_bootstrap, partitions=2, prefix="tensor")
    produce(kafka_bootstrap, topics.input, good[: GOOD // 2] + list(bad.items()) + good[GOOD // 2 :])
    pipeline = manifest("tensors", kafka_bootstrap, topics, model="sensor-anomaly",
                        preprocessing={"format": "tensor"})  # fmt: skip
    reader = score_once(pipeline, tmp_path, kafka_bootstrap, SENSOR, topics, outputs=GOOD, dead_letters=len(bad))
    for key, reason in dead_letter_reasons(reader, topics.dead_letter, bad).items():
        assert key.decode().startswith(f"bad-{reason}"), (key, reason)
    outputs = {m.key(): orjson.loads(m.value()) for m in reader.seen[topics.output].messages}
    assert set(outputs) == {key for key, _ in good}

    from kinfer_runtime.predictors import build_predictor  # TensorFlow: only once the records have been checked

    predictor = build_predictor(parse_pipeline(pipeline), model_path=SENSOR)
    predictor.load()
    expected = np.asarray(predictor.predict({"window": windows}).outputs["anomaly_score"]).reshape(GOOD)
    scored = [outputs[f"w-{n}".encode()]["prediction"]["anomaly_score"] for n in range(GOOD)]
    assert np.allclose(scored, expected, rtol=1e-4, atol=1e-6), "not what the model gives for the same windows"

    # kinfer score on a .npy file of the same windows gives what the live pipeline published
    np.save(tmp_path / "windows.npy", windows, allow_pickle=False)
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    args = [str(tmp_path / "pipeline.yaml"), "--no-progress", "--input", str(tmp_path / "windows.npy"),
            "--output", str(tmp_path / "scores.jsonl"), "--model-path", str(SENSOR)]  # fmt: skip
    assert score.main(args) == 0
    offline = [orjson.loads(line) for line in (tmp_path / "scores.jsonl").read_bytes().splitlines()]
    assert [r["prediction"] for r in offline] == [outputs[f"w-{n}".encode()]["prediction"] for n in range(GOOD)]
