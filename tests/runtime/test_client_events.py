"""Kafka client errors and log lines: classified, rate-limited, JSON-logged, and explaining an unready pod."""

from __future__ import annotations

import logging

import orjson
import pytest
from confluent_kafka import KafkaError

from kinfer_runtime.kafka.client_events import (
    PROBLEM_FRESH_S,
    REPEAT_INTERVAL_S,
    STRANDED_AFTER_S,
    AccessProblem,
    ClientEvents,
    RepeatLimiter,
    brokers_up,
)
from kinfer_runtime.observability.health import LoopState, probe_result

REFUSED = (
    "sasl_plaintext://b:9092/bootstrap: SASL authentication error: "
    "Authentication failed (after 316ms in state AUTH_REQ)"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeat_limiter_lets_a_complaint_through_once_per_interval_and_counts_the_rest() -> None:
    clock = Clock()
    limiter = RepeatLimiter(interval_s=30, clock=clock)
    assert limiter.admit("login failed (after 316ms)") == 0
    clock.now += 1
    assert limiter.admit("login failed (after 322ms)") is None  # only the numbers differ: the same complaint
    assert limiter.admit("broker down") == 0  # another complaint goes through at once
    clock.now += 29
    assert limiter.admit("login failed (after 301ms)") == 1
    clock.now += 29.9
    assert limiter.admit("login failed (after 1ms)") is None


def login_refused(clock: Clock, caplog: pytest.LogCaptureFixture) -> tuple[ClientEvents, LoopState]:
    state = LoopState(model_loaded=True)
    events = ClientEvents("consumer", state.kafka_problem, clock=clock)
    with caplog.at_level(logging.WARNING, logger="kinfer.kafka"):
        events.on_error(KafkaError(KafkaError._AUTHENTICATION, REFUSED))
    return events, state


def test_a_refused_login_is_an_error_line_and_the_reason_the_pod_is_not_ready(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    events, state = login_refused(clock, caplog)
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.getMessage() == "kafka client error"
    logged = record.__dict__["fields"]
    assert logged["client"] == "consumer" and logged["error"] == "_AUTHENTICATION" and logged["reason"] == REFUSED
    status, body = probe_result("/readyz", state, now=clock.now + 1)
    assert status == 503 and body == f"no partitions assigned: Kafka refused access: {REFUSED}\n"
    # Once the complaint stops, an old one no longer explains a missing assignment; an assignment makes it moot.
    assert probe_result("/readyz", state, now=clock.now + PROBLEM_FRESH_S + 1) == (503, "no partitions assigned\n")
    state.assigned_partitions = 1
    assert probe_result("/readyz", state, now=clock.now + 1)[0] == 200
    assert events.settings() == {"error_cb": events.on_error, "logger": events.logger, "stats_cb": events.on_stats,
                                 "statistics.interval.ms": 1000}  # fmt: skip


def test_a_broker_away_is_a_warning_and_leaves_readiness_alone(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    state = LoopState(model_loaded=True)
    events = ClientEvents("producer", state.kafka_problem, clock=clock)
    with caplog.at_level(logging.WARNING, logger="kinfer.kafka"):
        for _ in range(5):
            events.on_error(KafkaError(KafkaError._TRANSPORT, "b:9092/1: Connect to ipv4#10.0.0.1:9092 failed"))
            clock.now += 1
        clock.now += REPEAT_INTERVAL_S
        events.on_error(KafkaError(KafkaError._TRANSPORT, "b:9092/1: Connect to ipv4#10.0.0.1:9092 failed"))
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert caplog.records[1].__dict__["fields"]["repeated"] == 4
    assert state.kafka_problem.current(clock.now) is None
    assert probe_result("/readyz", state, now=clock.now) == (503, "no partitions assigned\n")


def librdkafka_line(facility: str, text: str) -> logging.LogRecord:
    """A log record as confluent-kafka hands librdkafka's log lines to a Python logger."""
    return logging.LogRecord("kinfer.kafka.consumer", logging.ERROR, "", 0, "%s [%s] %s",
                             (facility, "rdkafka#consumer-1", text), None)  # fmt: skip


def test_librdkafka_log_lines_drop_the_fail_echo_and_repeat_once_per_interval() -> None:
    clock = Clock()
    ClientEvents("consumer", AccessProblem(), clock=clock)
    events = ClientEvents("consumer", AccessProblem(), clock=clock)  # a new loop's client: one filter, not two
    assert len(events.logger.filters) == 1
    assert not events.logger.filter(librdkafka_line("FAIL", REFUSED))  # the error callback reported it already
    first = librdkafka_line("REQTMOUT", "Timed out 1 in-flight request")
    assert events.logger.filter(first) and first.__dict__["fields"] == {"client": "consumer", "repeated": 0}
    assert not events.logger.filter(librdkafka_line("REQTMOUT", "Timed out 3 in-flight request"))
    clock.now += REPEAT_INTERVAL_S
    again = librdkafka_line("REQTMOUT", "Timed out 2 in-flight request")
    assert events.logger.filter(again) and again.__dict__["fields"]["repeated"] == 1


def stats(*sources: str) -> str:
    """librdkafka statistics with one broker of each source (only what ClientEvents reads)."""
    return orjson.dumps({"brokers": {f"b{i}": {"source": source} for i, source in enumerate(sources)}}).decode()


def test_a_client_that_knows_no_broker_for_a_while_is_stranded() -> None:
    clock = Clock()
    events = ClientEvents("consumer", AccessProblem(), clock=clock)
    events.on_stats(stats("learned", "logical"))
    assert not events.stranded(clock.now + 3600)
    events.on_stats(stats("logical"))  # the GroupCoordinator handle alone: librdkafka dropped its only broker
    assert not events.stranded(clock.now + STRANDED_AFTER_S - 0.1)
    clock.now += 2
    events.on_stats(stats("logical"))
    assert events.stranded(clock.now + STRANDED_AFTER_S - 2), "counted from the first report without a broker"
    events.on_stats(stats("configured", "logical"))  # re-bootstrapping: a bootstrap server counts
    assert not events.stranded(clock.now + 3600)


def test_the_brokers_up_count_reaches_the_metric_at_every_statistics_report() -> None:
    heard: list[int] = []
    events = ClientEvents("consumer", AccessProblem(), connected=heard.append)
    brokers = {
        "b1": {"source": "learned", "state": "UP"},
        "b2": {"source": "learned", "state": "CONNECT"},
        "b3": {"source": "configured", "state": "UP"},
        "coordinator": {"source": "logical", "state": "UP"},  # a handle on one of the above, not a broker
        "internal": {"source": "internal", "state": "UP"},
    }
    events.on_stats(orjson.dumps({"brokers": brokers}).decode())
    assert heard == [2]
    assert brokers_up({name: {**broker, "state": "DOWN"} for name, broker in brokers.items()}) == 0
    events.on_stats(stats("configured"))  # bootstrapping again: known, not connected
    assert heard == [2, 0]
