"""Structured logs: one JSON object per line on stderr, the same shape for the runtime and the operator.

Every line has ``timestamp`` (UTC, ms), ``level``, ``logger`` and ``message``, plus the static fields given to
``configure_logging`` (``component``, and ``pipeline`` and ``namespace`` in the runtime). Extra fields go through
``logger.info("...", extra=fields(key=value))`` and are merged into the object; their names are stable (the list
is in docs/logging.md, which log shippers' configurations rely on). kopf's per-object log records
(its ``k8s_ref``) give ``namespace`` and ``pipeline`` in the operator. Secrets never reach a log call
(``kinfer_runtime.kafka.settings.redacted`` is what gets logged of the client settings).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    def __init__(self, static: dict[str, Any] | None = None):
        super().__init__()
        self.static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.static,
        }
        reference = getattr(record, "k8s_ref", None)  # kopf's object loggers
        if isinstance(reference, dict):
            entry["namespace"] = reference.get("namespace")
            entry["pipeline"] = reference.get("name")
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO", **static: Any) -> None:
    """Route the root logger to stderr as JSON lines (replacing handlers, so calling it twice is harmless)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(static))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` argument for a log call with structured fields. An ``error`` that is not text (an exception, a
    KafkaError) is logged as its text, with ``error_class`` beside it: the field to group and alert on."""
    error = values.get("error")
    if error is not None and not isinstance(error, str):
        values["error"] = str(error)
        values.setdefault("error_class", error_class(error))
    return {"fields": values}


def error_class(error: Any) -> str:
    """The name that classifies an error: a KafkaError's code name (also inside a KafkaException, whose own class
    says nothing), else the exception's class."""
    inner = error.args[0] if isinstance(error, BaseException) and error.args else None
    for candidate in (error, inner):
        name = getattr(candidate, "name", None)
        if callable(name):
            return str(name())
    return type(error).__name__
