"""A thin client of the Kafka Connect REST API: the few calls the operator needs, nothing more.

Plain ``urllib`` with short timeouts, because the calls run inside a reconcile pass (a slow Connect cluster must
not hold the pass up). Errors come out as ``ConnectError`` with the HTTP status and Connect's own message;
``ConnectUnavailable`` marks the ones worth retrying later (no answer, 5xx, 409 while the workers rebalance).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

REQUEST_TIMEOUT_S = 5.0


class ConnectError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(f"Kafka Connect answered HTTP {status}: {message}" if status else message)


class ConnectUnavailable(ConnectError):
    """No answer, a server error, or a rebalance in progress (409): try again on a later pass."""


class ConnectClient:
    def __init__(self, url: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the URL is the Connect cluster named in the spec
            self.url + path, data=data, method=method,
            headers={"Accept": "application/json", "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            message = _error_message(error.read().decode(errors="replace")) or error.reason
            kind = ConnectUnavailable if error.code >= 500 or error.code == 409 else ConnectError
            raise kind(error.code, str(message)) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise ConnectUnavailable(0, f"Kafka Connect at {self.url} unreachable: {reason}") from None
        return json.loads(text) if text.strip() else None

    def connectors(self) -> dict[str, dict[str, Any]]:
        """Every connector with its config and status: ``{name: {"info": {...}, "status": {...}}}``."""
        result = self._request("GET", "/connectors?expand=info&expand=status")
        return dict(result or {})

    def put_config(self, name: str, config: dict[str, str]) -> None:
        """Creates the connector or replaces its config (Connect's own create-or-update)."""
        self._request("PUT", f"/connectors/{_quote(name)}/config", config)

    def delete(self, name: str) -> bool:
        """Deletes the connector; False when it did not exist (already gone is what we wanted)."""
        try:
            self._request("DELETE", f"/connectors/{_quote(name)}")
        except ConnectError as error:
            if error.status != 404:
                raise
            return False
        return True

    def status(self, name: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/connectors/{_quote(name)}/status") or {})

    def restart_failed(self, name: str) -> None:
        """Restarts the connector and its tasks, but only the instances that FAILED (KIP-745)."""
        self._request("POST", f"/connectors/{_quote(name)}/restart?includeTasks=true&onlyFailed=true")


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _error_message(text: str) -> str | None:
    try:
        return str(json.loads(text).get("message"))
    except (ValueError, AttributeError):
        return text.strip() or None
