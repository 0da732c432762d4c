"""A candidate's inputs from the live version's (preprocess/rescaling.py): equal to the candidate's own encoding when
the two versions differ only in numeric scaling, and refused for any other difference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from kinfer_runtime.preprocess.preprocessor import Preprocessor
from kinfer_runtime.preprocess.rescaling import rescaling
from kinfer_runtime.spec.model_metadata import load_model_metadata
from kinfer_runtime.tools.synthetic import fraud_transactions

FRAUD = Path(__file__).resolve().parents[2] / "models" / "fraud"


def preprocessor(version: int, **changes: dict[str, object]) -> Preprocessor:
    metadata = load_model_metadata(FRAUD / str(version))
    features = [feature.model_copy(update=changes.get(feature.name, {})) for feature in metadata.features]
    return Preprocessor(features, metadata.inputs, metadata.feature_inputs)


def test_version_two_is_version_one_rescaled_to_float32_rounding() -> None:
    live, candidate = preprocessor(1), preprocessor(2)
    records, _ = fraud_transactions(300, seed=3)
    encoded = live.encode([orjson.dumps(record) for record in records])
    rows = np.arange(0, len(encoded.ok), 2)
    rescale = rescaling(live, candidate)
    assert rescale is not None
    inputs, kept, failures = rescale.apply(encoded.inputs, rows)
    own = candidate.encode_documents(encoded.decoded([encoded.ok[r] for r in rows]))
    assert kept == own.ok and failures == own.failures == []
    for name, values in own.inputs.items():
        assert inputs[name].dtype == values.dtype
        np.testing.assert_allclose(inputs[name], values, rtol=1e-6, atol=1e-6)
    changed = [name for name in inputs if not np.array_equal(inputs[name], encoded.inputs[name][rows])]
    assert changed == ["dense"]  # the numeric features: their statistics differ; the categorical input is equal


def test_any_difference_but_scaling_means_encoding_again() -> None:
    live = preprocessor(1)
    vocabulary = live.features[[f.name for f in live.features].index("channel")].vocabulary
    assert rescaling(live, preprocessor(2, channel={"vocabulary": list(reversed(vocabulary or []))})) is None
    assert rescaling(live, preprocessor(2, amount={"required": False, "default": 1.0})) is None
    assert rescaling(live, object()) is None


def test_a_value_the_candidates_scaling_overflows_fails_as_it_would_when_encoded() -> None:
    live, candidate = preprocessor(1), preprocessor(2, amount={"std": 1e-38})
    encoded = live.encode([orjson.dumps(record) for record in fraud_transactions(4, seed=1)[0]])
    rescale = rescaling(live, candidate)
    assert rescale is not None
    _, kept, failures = rescale.apply(encoded.inputs, np.arange(len(encoded.ok)))
    own = candidate.encode_documents(encoded.decoded(encoded.ok))
    assert kept == own.ok and len(kept) < len(encoded.ok)
    assert [(f.index, f.reason) for f in failures] == [(f.index, f.reason) for f in own.failures]
