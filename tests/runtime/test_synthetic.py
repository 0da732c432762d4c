"""The seeded synthetic data behind the example models, the demo and the benchmark."""

from __future__ import annotations

import numpy as np

from kinfer_runtime.tools.synthetic import CHANNELS, COUNTRIES, MERCHANT_CATEGORIES, fraud_transactions, sensor_windows


def test_fraud_transactions_are_seeded_and_plausible():
    records, labels = fraud_transactions(5000, seed=3)
    again, labels_again = fraud_transactions(5000, seed=3)
    other, _ = fraud_transactions(5000, seed=4)
    assert records == again and np.array_equal(labels, labels_again) and records != other
    assert 0.01 < labels.mean() < 0.08  # rare, but enough positives to learn from
    assert {r["channel"] for r in records} == set(CHANNELS) and {r["country"] for r in records} == set(COUNTRIES)
    assert {r["merchant_category"] for r in records} == set(MERCHANT_CATEGORIES)
    assert all(r["amount"] > 0 and 0 <= r["hour"] < 24 and 0 <= r["merchant_risk"] <= 1 for r in records)
    assert len({r["transaction_id"] for r in records}) == 5000
    night = np.array([r["hour"] < 5 for r in records])
    assert labels[night].mean() > labels[~night].mean()  # the known risk factors are really in the data


def test_sensor_windows_have_the_model_shape_and_labelled_anomalies():
    records, labels = sensor_windows(400, seed=2, anomaly_rate=0.25)
    assert all(np.asarray(r["window"]).shape == (32, 3) for r in records)
    assert 0.15 < labels.mean() < 0.35
    normal, _ = sensor_windows(100, seed=2)
    assert np.abs([r["window"] for r in normal]).max() < 1.5  # normal windows are bounded sines plus noise
