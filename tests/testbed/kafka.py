"""The test bed's Kafka brokers are the product's own local broker (kinfer_runtime/tools/local_kafka.py), so the
demo, ``kinfer kafka`` and every test run the same broker the same way."""

from __future__ import annotations

import os
from pathlib import Path

from kinfer_runtime.tools.broker_setup import LOG4J2_CONSOLE, KafkaStartError, new_cluster_id, server_properties
from kinfer_runtime.tools.local_kafka import LocalKafka as KafkaBroker

__all__ = ["LOG4J2_CONSOLE", "KafkaBroker", "KafkaStartError", "java_available", "new_cluster_id", "server_properties"]


def java_available() -> bool:
    return any(os.access(Path(p) / "java", os.X_OK) for p in os.environ.get("PATH", "").split(os.pathsep))
