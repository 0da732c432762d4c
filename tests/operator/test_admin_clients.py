"""The operator's cache of Kafka admin clients (``kafka.admin.admin_client``): one client per distinct settings,
and a client whose settings no pass asked for in ``IDLE_CLIENT_SECONDS`` is dropped, so the client of a rotated
password or a deleted pipeline does not live on (reconnecting with its old settings)."""

from __future__ import annotations

from typing import Any

import pytest

from kinfer_operator.kafka import admin


class FakeAdminClient:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings

    def poll(self, _timeout: float) -> int:
        return 0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(admin, "AdminClient", FakeAdminClient)
    monkeypatch.setattr(admin.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(admin, "_clients", {})
    monkeypatch.setattr(admin, "_last_used", {})
    monkeypatch.setattr(admin, "_problems", {})
    return now


def test_one_client_per_settings_and_an_idle_one_is_dropped(clock: list[float]) -> None:
    old = {"bootstrap.servers": "kafka:9092", "sasl.password": "old"}
    new = {"bootstrap.servers": "kafka:9092", "sasl.password": "new"}
    first = admin.admin_client(old)
    assert admin.admin_client(dict(old)) is first, "the same settings share one client"

    clock[0] += admin.IDLE_CLIENT_SECONDS / 2
    rotated = admin.admin_client(new)
    assert rotated is not first
    assert admin.admin_client(old) is first, "asked for within the idle time: kept"

    clock[0] += admin.IDLE_CLIENT_SECONDS + 1
    assert admin.admin_client(new) is rotated, "the client asked for is kept even if it was idle"
    assert len(admin._clients) == 1 and len(admin._problems) == 1, "the idle one is gone with its problem entry"
    assert admin.admin_client(old) is not first, "asked for again after being dropped: a new client"
