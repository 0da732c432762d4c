"""Fixtures of the ingestion tests: one Kafka Connect worker (distributed mode) on the test bed's broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ingestion.connect_worker import ConnectWorker


@pytest.fixture(scope="session")
def connect_worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectWorker]:
    worker = ConnectWorker(kafka_bootstrap, tmp_path_factory.mktemp("connect")).start()
    try:
        yield worker
    finally:
        worker.stop()
