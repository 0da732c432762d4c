"""What the Kafka clients say about their connections, as structured log lines and as the reason on ``/readyz``.

librdkafka handles connection trouble itself (a broker away, a refused login, a failed TLS handshake) and keeps
retrying. It reports the trouble through its error callback and its log. Left alone, both go to stderr in
librdkafka's own format, once per retry: while a password is wrong, that is about two lines a second per client.
Here:

- errors become JSON lines like the rest of the runtime's log, at ERROR when retrying will not help;
- librdkafka's own log lines become JSON lines too, except its ``FAIL`` lines, which repeat what the error
  callback has just reported;
- a complaint is logged at most once per :data:`REPEAT_INTERVAL_S`, with the count of those held back;
- a refused login, TLS failure or missing ACL is kept in the probe state, so ``/readyz`` says why the pod is not
  ready (what ``kubectl describe pod`` shows). A password is never part of any of it: librdkafka does not put
  credentials in its messages, and the settings are never logged with them;
- the client's statistics tell how many brokers it is connected to (the ``kinfer_kafka_brokers_up`` gauge:
  0 on every pod of a pipeline is the alert KinferKafkaUnreachable) and whether it still knows a broker at all
  (:meth:`ClientEvents.stranded`).
  librdkafka (2.10 and later, 2.16 included) drops every broker that a Metadata response does not list. A broker
  in controlled shutdown answers, for a few tens of milliseconds after it is fenced, with no broker at all (its
  own entry is gone) and then closes the connection. A client whose metadata request lands in that window sees
  all its brokers down (which schedules a re-bootstrap), then reads that answer, which drops its only broker and,
  being a successful response, cancels the scheduled re-bootstrap while leaving it marked in progress, so no
  later one starts (confluentinc/librdkafka#5301). The client then knows no broker, for good: the broker's return
  goes unnoticed, the group session expires and the partitions are lost. The loop replaces such a client.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import KafkaError

from kinfer_runtime.observability.logs import fields

log = logging.getLogger("kinfer.kafka")

REPEAT_INTERVAL_S = 30.0
STATS_INTERVAL_MS = 1000
# Knowing no broker for this long, a client will not find one by itself. A re-bootstrap drops the learned brokers
# and adds the bootstrap servers in one step of librdkafka's main thread, which also writes the statistics.
STRANDED_AFTER_S = 5.0
REAL_BROKERS = frozenset({"learned", "configured"})  # a broker's "source" in the statistics; not logical, internal
MAX_REMEMBERED = 1000  # distinct complaints remembered by a limiter; more and it starts afresh

# Retrying does not cure these: the credentials, certificates or ACLs must change.
ACCESS_ERRORS = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._SSL,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)

_NUMBERS = re.compile(r"\d+")

# A refusal explains "no partitions assigned" or "cannot reach Kafka" while it keeps being reported (librdkafka
# retries a refused login about every second); an old one says nothing about today's trouble.
PROBLEM_FRESH_S = 30.0


class AccessProblem:
    """The last time Kafka refused a client access, and why (shared by the clients of one loop or cluster)."""

    def __init__(self) -> None:
        self.seen_at: float | None = None
        self.text = ""

    def report(self, text: str, now: float) -> None:
        self.seen_at, self.text = now, text

    def current(self, now: float) -> str | None:
        """The refusal, if it was reported within :data:`PROBLEM_FRESH_S` of ``now``."""
        if self.seen_at is None or now - self.seen_at > PROBLEM_FRESH_S:
            return None
        return self.text


class RepeatLimiter:
    """Lets a message through the first time, then once per interval; counts what it holds back.

    Messages that differ only in their numbers ("after 316ms", a port) are the same complaint.
    """

    def __init__(self, interval_s: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # complaint -> (when last let through, held back since)

    def admit(self, message: str) -> int | None:
        """None: hold it back. Otherwise let it through, with the number held back since it last went through."""
        key, now = _NUMBERS.sub("#", message), self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval_s:
            self._seen[key] = (seen[0], seen[1] + 1)
            return None
        if len(self._seen) >= MAX_REMEMBERED:
            self._seen.clear()
        self._seen[key] = (now, 0)
        return 0 if seen is None else seen[1]


def brokers_up(brokers: dict[str, Any]) -> int:
    """Brokers (not librdkafka's internal or logical handles) whose connection is up, from the statistics'
    ``brokers`` object."""
    return sum(1 for broker in brokers.values() if broker.get("source") in REAL_BROKERS and broker.get("state") == "UP")


class ClientEvents:
    """The error callback and the logger of one Kafka client (``consumer``, ``producer``, ``admin``).
    ``connected(n)``, when given, hears the number of brokers the client is connected to at every statistics
    report."""

    def __init__(
        self,
        client: str,
        problem: AccessProblem,
        clock: Callable[[], float] = time.monotonic,
        connected: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        self.problem = problem
        self.clock = clock
        self.connected = connected
        self.limiter = RepeatLimiter(clock=clock)
        self.logger = logging.getLogger(f"kinfer.kafka.{client}")
        self.logger.filters[:] = [self._admit_log_line]
        self.no_broker_since: float | None = None

    def settings(self) -> dict[str, Any]:
        """What to add to the client's configuration."""
        return {"error_cb": self.on_error, "logger": self.logger, "stats_cb": self.on_stats,
                "statistics.interval.ms": STATS_INTERVAL_MS}  # fmt: skip

    def on_stats(self, stats: str) -> None:
        """librdkafka's statistics (served by poll and consume): brokers connected; does the client still know one?"""
        brokers = orjson.loads(stats).get("brokers", {})
        if self.connected is not None:
            self.connected(brokers_up(brokers))
        if any(broker.get("source") in REAL_BROKERS for broker in brokers.values()):
            self.no_broker_since = None
        elif self.no_broker_since is None:
            self.no_broker_since = self.clock()

    def stranded(self, now: float) -> bool:
        """True once the client has known no broker for :data:`STRANDED_AFTER_S`: it must be replaced."""
        return self.no_broker_since is not None and now - self.no_broker_since >= STRANDED_AFTER_S

    def on_error(self, error: KafkaError) -> None:
        code, reason = error.code(), error.str()
        access = code in ACCESS_ERRORS
        if access:
            self.problem.report(f"Kafka refused access: {reason}", self.clock())
        held_back = self.limiter.admit(f"{error.name()} {reason}")
        if held_back is None:
            return
        level = logging.ERROR if access or error.fatal() else logging.WARNING
        extra = fields(client=self.client, error=error.name(), reason=reason, fatal=error.fatal(),
                       retriable=error.retriable(), repeated=held_back)  # fmt: skip
        log.log(level, "kafka client error", extra=extra)

    def _admit_log_line(self, record: logging.LogRecord) -> bool:
        """Filter of librdkafka's log lines; confluent-kafka logs them as ``"%s [%s] %s" % (facility, name, text)``."""
        facility = record.args[0] if isinstance(record.args, tuple) and record.args else ""
        if facility == "FAIL":
            return False  # the error callback reports the same failure
        held_back = self.limiter.admit(record.getMessage())
        if held_back is None:
            return False
        record.__dict__["fields"] = {"client": self.client, "repeated": held_back}
        return True
