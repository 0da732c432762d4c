"""The thin layer that talks to the Kubernetes API: read children, apply them, read Secrets' key names.

Children are plain dicts, so requests go through one generic helper (path from apiVersion/kind) instead of a
typed client per kind. ``apply_child`` writes only when the live object is missing, carries another spec-hash,
or was edited by hand (a desired field differs); the write is a server-side apply with ``force``, which also
takes a hand-edited field back. Every request is counted, so tests and benchmarks can see idle writes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.utils import parse_quantity

from kinfer_operator import metrics
from kinfer_operator.builders import naming
from kinfer_operator.builders.manifests import spec_hash_of
from kinfer_runtime.spec import KafkaSpec

logger = logging.getLogger(__name__)

_PLURALS = {"Ingress": "ingresses", "NetworkPolicy": "networkpolicies"}
REQUEST_TIMEOUT = 15


class KubeError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


class Kube:
    """Generic JSON requests to the API server, with a count of requests by verb."""

    def __init__(self, api: ApiClient):
        self.api = api
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any] | None:
        """The decoded response, or None on 404 (GET/DELETE). Raises KubeError on other failures."""
        with self._lock:
            self.requests[method] += 1
        metrics.API_REQUESTS.labels(method).inc()
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = self.api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self.api.call_api(*serialized[:5], _request_timeout=REQUEST_TIMEOUT)
        response.read()
        if response.status == 404 and method in ("GET", "DELETE"):
            return None
        text = response.data.decode() if response.data else ""
        if not 200 <= response.status < 300:
            try:
                message = json.loads(text).get("message", text)
            except ValueError:
                message = text
            raise KubeError(response.status, message)
        return json.loads(text) if text else {}

    @property
    def writes(self) -> int:
        return sum(count for verb, count in self.requests.items() if verb != "GET")


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    plural = _PLURALS.get(kind, kind.lower() + "s")
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def path_of(manifest: dict[str, Any]) -> str:
    metadata = manifest["metadata"]
    return object_path(manifest["apiVersion"], manifest["kind"], metadata["namespace"], metadata["name"])


def get_child(kube: Kube, manifest: dict[str, Any]) -> dict[str, Any] | None:
    return kube.request("GET", path_of(manifest))


# Keys whose value is a quantity, or a map of them (``resources.requests``, ``emptyDir.sizeLimit``).
QUANTITY_KEYS = frozenset({"requests", "limits", "sizeLimit"})


def contains(live: Any, desired: Any, quantities: bool = False) -> bool:
    """True when every field the operator sets has that value in the live object (server defaults ignored).

    ``quantities``: ``desired`` is a resource quantity or a map of them, compared by value ("0.5" is "500m").
    """
    if _blank(desired):
        return live is None or _blank(live)  # the API server drops empty maps and lists
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            contains(live.get(key), value, quantities or key in QUANTITY_KEYS) for key, value in desired.items()
        )
    if quantities and same_quantity(live, desired):
        return True
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(contains, live, desired))
    if isinstance(desired, int | float) and isinstance(live, int | float) and not isinstance(desired, bool):
        return float(live) == float(desired)
    return bool(live == desired)


def same_quantity(live: object, desired: object) -> bool:
    """Whether two values (text or numbers, as they come from YAML) are the same resource quantity. The API server
    stores a quantity in canonical form (``cpu: 0.5`` comes back as ``500m``, ``1024Mi`` as ``1Gi``): compared as
    text, every pass would send a patch that changes nothing."""
    if isinstance(live, bool) or isinstance(desired, bool):
        return False
    if not isinstance(live, str | int | float) or not isinstance(desired, str | int | float):
        return False
    try:
        return bool(parse_quantity(live) == parse_quantity(desired))
    except ValueError:  # not a quantity
        return False


def _blank(value: Any) -> bool:
    """Empty, or a map of empties (``resources: {requests: {}, limits: {}}``)."""
    if isinstance(value, dict):
        return all(_blank(item) for item in value.values())
    return isinstance(value, list) and not value


def needs_write(live: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    if live is None or spec_hash_of(live) != spec_hash_of(desired):
        return True
    compared = {key: value for key, value in desired.items() if key not in ("metadata", "status")}
    metadata = desired["metadata"]
    compared["metadata"] = {"labels": metadata.get("labels", {}), "annotations": metadata.get("annotations", {})}
    return not contains(live, compared)


def apply_child(kube: Kube, desired: dict[str, Any], live: dict[str, Any] | None, replicas: int | None = None) -> str:
    """Create or update one child if needed. Returns "created", "updated" or "unchanged".

    ``replicas``: for a Deployment whose size an autoscaler owns (desired has no replicas), the count to keep
    (the live one) or to start with (on create), so the apply neither resets nor fights the autoscaler.
    """
    if not needs_write(live, desired):
        return "unchanged"
    body = json.loads(json.dumps(desired))
    if replicas is not None and body["kind"] == "Deployment" and "replicas" not in body["spec"]:
        live_replicas = ((live or {}).get("spec") or {}).get("replicas")
        body["spec"]["replicas"] = live_replicas if live_replicas is not None else replicas
    query = [("fieldManager", naming.FIELD_MANAGER), ("force", "true")]
    written = kube.request("PATCH", path_of(body), body=body, content_type="application/apply-patch+yaml", query=query)
    if live is not None and _resource_version(written) == _resource_version(live):
        # The server found nothing to change: our comparison was stricter than the API's semantics.
        logger.debug("no-op apply of %s %s", body["kind"], body["metadata"]["name"])
        return "unchanged"
    return "created" if live is None else "updated"


def _resource_version(obj: dict[str, Any] | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion")


def secret_keys(kube: Kube, namespace: str, name: str) -> tuple[set[str], dict[str, str], str] | None:
    """The key names, labels and resourceVersion of a Secret (values are dropped at once), or None when it
    doesn't exist."""
    secret = kube.request("GET", object_path("v1", "Secret", namespace, name))
    if secret is None:
        return None
    keys = set((secret.get("data") or {}).keys()) | set((secret.get("stringData") or {}).keys())
    metadata = secret.get("metadata") or {}
    return keys, dict(metadata.get("labels") or {}), str(metadata.get("resourceVersion") or "")


def secret_values(kube: Kube, namespace: str, name: str, keys: list[str]) -> dict[str, str]:
    """Decoded values of some keys, only for the operator's own Kafka client (never logged or stored)."""
    import base64

    secret = kube.request("GET", object_path("v1", "Secret", namespace, name)) or {}
    data = secret.get("data") or {}
    return {key: base64.b64decode(data[key]).decode() for key in keys if key in data}


def kafka_secrets(kube: Kube, namespace: str, kafka: KafkaSpec) -> dict[str, dict[str, str]]:
    """The SASL/TLS values the spec's Kafka Secrets hold, by Secret name, for the operator's own Kafka clients."""
    return {name: secret_values(kube, namespace, name, keys) for name, keys in kafka.secret_keys().items()}
