"""Synthetic records for the example models: card transactions (fraud) and 3-axis sensor windows (anomaly).

The same generators feed ``models/train.py`` (training data, with labels), the demo and the benchmark (traffic),
so a record on the wire always has the shape the models were trained on. Seeded: the same seed gives the same
records. Pure numpy; no TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MERCHANT_CATEGORIES = [
    "grocery", "restaurant", "fuel", "electronics", "travel", "fashion", "pharmacy", "gaming", "jewelry", "cash",
]  # fmt: skip
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "IN", "BR", "NG"]
CHANNELS = ["pos", "online", "atm", "mobile"]
WINDOW_LENGTH, AXES = 32, 3

# The Avro writer schema of a fraud transaction (what a producer using Avro would register for these records).
FRAUD_TRANSACTION_AVRO_SCHEMA = {
    "type": "record",
    "name": "Transaction",
    "namespace": "io.kinfer.examples",
    "fields": [
        {"name": "transaction_id", "type": "string"},
        {"name": "card_id", "type": "string"},
        {"name": "amount", "type": ["null", "double"], "default": None},
        {"name": "hour", "type": "int"},
        {"name": "distance_km", "type": "double"},
        {"name": "merchant_risk", "type": "double"},
        {"name": "merchant_category", "type": "string"},
        {"name": "country", "type": "string"},
        {"name": "channel", "type": "string"},
    ],
}

_CATEGORY_RISK = dict(zip(MERCHANT_CATEGORIES, [-1.0, -0.8, -0.5, 0.9, 0.6, 0.0, -0.7, 1.2, 1.5, 1.0], strict=True))
_COUNTRY_RISK = dict(zip(COUNTRIES, [-0.3, -0.3, -0.4, -0.3, -0.4, 0.4, 0.7, 1.2], strict=True))
_CHANNEL_RISK = dict(zip(CHANNELS, [-0.8, 0.9, 0.3, 0.4], strict=True))


def fraud_transactions(count: int, seed: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``count`` transactions and their fraud labels (about 3 % fraud), drawn from a known logistic model."""
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(3.6, 1.1, count), 2)
    hour = rng.choice(24, count, p=_hour_weights())
    distance = np.round(rng.lognormal(1.4, 1.3, count), 1)
    risk = np.round(rng.beta(2.0, 5.0, count), 3)
    category = rng.choice(MERCHANT_CATEGORIES, count)
    country = rng.choice(COUNTRIES, count, p=[0.45, 0.12, 0.1, 0.08, 0.07, 0.08, 0.06, 0.04])
    channel = rng.choice(CHANNELS, count, p=[0.5, 0.3, 0.08, 0.12])
    logit = (
        -9.0
        + 0.75 * np.log1p(amount)
        + 1.4 * (hour < 5)
        + 0.45 * np.log1p(distance)
        + 3.0 * risk
        + np.vectorize(_CATEGORY_RISK.get)(category)
        + np.vectorize(_COUNTRY_RISK.get)(country)
        + np.vectorize(_CHANNEL_RISK.get)(channel)
    )
    labels = (rng.random(count) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    records = [
        {
            "transaction_id": f"tx-{seed}-{i:07d}",
            "card_id": f"card-{int(card):05d}",
            "amount": float(amount[i]),
            "hour": int(hour[i]),
            "distance_km": float(distance[i]),
            "merchant_risk": float(risk[i]),
            "merchant_category": str(category[i]),
            "country": str(country[i]),
            "channel": str(channel[i]),
        }
        for i, card in enumerate(rng.integers(0, 50_000, count))
    ]
    return records, labels


def _hour_weights() -> np.ndarray:
    weights = np.array([0.4, 0.3, 0.2, 0.2, 0.3, 0.6] + [1.0] * 12 + [1.2, 1.2, 1.0, 0.9, 0.7, 0.5])
    return weights / weights.sum()


def sensor_windows(count: int, seed: int, anomaly_rate: float = 0.0) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``count`` windows of 32 samples x 3 axes (vibration-like sines plus noise) and their anomaly labels;
    anomalous windows carry a spike, a flat-line or a drift."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW_LENGTH, dtype=np.float64)[None, :, None]
    frequency = rng.uniform(0.15, 0.35, (count, 1, AXES))
    phase = rng.uniform(0, 2 * np.pi, (count, 1, AXES))
    amplitude = rng.uniform(0.6, 1.0, (count, 1, AXES))
    windows = amplitude * np.sin(frequency * t + phase) + rng.normal(0, 0.05, (count, WINDOW_LENGTH, AXES))
    labels = (rng.random(count) < anomaly_rate).astype(np.float32)
    for i in np.flatnonzero(labels):
        kind, axis, at = rng.integers(3), rng.integers(AXES), rng.integers(4, WINDOW_LENGTH - 4)
        if kind == 0:
            windows[i, at : at + 2, axis] += rng.choice([-1, 1]) * rng.uniform(2.5, 4.0)
        elif kind == 1:
            windows[i, at:, axis] = windows[i, at, axis]
        else:
            windows[i, :, axis] += np.linspace(0, rng.uniform(1.5, 3.0), WINDOW_LENGTH)
    windows = np.round(windows, 4)
    records = [{"sensor_id": f"sensor-{i % 64:02d}", "window": windows[i].tolist()} for i in range(count)]
    return records, labels


SHAPES = ["circle", "square", "triangle", "cross"]
IMAGE_SIZE = 32


def shape_images(count: int, seed: int, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``count`` RGB images (uint8, size x size x 3) of one filled shape each (circle, square, triangle or cross:
    the label, an index into :data:`SHAPES`) of random colour, size and place on a noisy background of another
    colour. Vectorised: one mask per kind over the whole batch."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(SHAPES), size=count)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    y, x = y[None], x[None]
    radius = rng.uniform(size * 0.18, size * 0.32, (count, 1, 1))
    cy = rng.uniform(size * 0.35, size * 0.65, (count, 1, 1))
    cx = rng.uniform(size * 0.35, size * 0.65, (count, 1, 1))
    dy, dx = y - cy, x - cx
    masks = np.stack([
        dy**2 + dx**2 <= radius**2,  # circle
        (np.abs(dy) <= radius * 0.85) & (np.abs(dx) <= radius * 0.85),  # square
        (dy <= radius * 0.7) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) * 0.6),  # triangle, point up
        ((np.abs(dy) <= radius * 0.3) | (np.abs(dx) <= radius * 0.3)) & (np.maximum(np.abs(dy), np.abs(dx)) <= radius),
    ])  # fmt: skip
    mask = masks[labels, np.arange(count)]
    background = rng.integers(0, 256, (count, 1, 1, 3))
    colour = (background + rng.integers(80, 176, (count, 1, 1, 3))) % 256  # never close to the background
    images = np.where(mask[..., None], colour, background) + rng.normal(0, 12, (count, size, size, 3))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels
