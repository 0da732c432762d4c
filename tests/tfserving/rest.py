"""The stand-in's REST API (TF Serving's ``--rest_api_port``), on the standard library's threading HTTP server.

- ``GET /v1/models/<name>[/versions/<n>|/labels/<l>]``: the model status JSON (``model_version_status`` with
  ``state`` AVAILABLE once loaded), as TF Serving prints ``GetModelStatusResponse``. As with TF Serving, any
  known model answers 200 whatever its versions' states; an unknown one answers 404.
- ``GET .../metadata``: the ``signature_def`` metadata.
- ``POST .../:predict``: the columnar ``{"inputs": ...}`` and the row ``{"instances": [...]}`` formats; a single
  output comes back bare (``{"outputs": [...]}``), as TF Serving answers.
- ``GET <prometheus path>`` when the monitoring config enables it: a few Prometheus lines.

Errors carry TF Serving's HTTP mapping of the status code and ``{"error": message}``.
"""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar

import grpc
import numpy as np
from google.protobuf import json_format

from tests.tfserving.models import ServingError

if TYPE_CHECKING:
    from tests.tfserving.server import TfServingTestServer

# http_server.cc ToHTTPStatusCode
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.CANCELLED: 499,
}  # fmt: skip
PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata|:predict)?$")


def start_http(owner: TfServingTestServer, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(RestHandler):
        server_owner = owner

    http = ThreadingHTTPServer((host, port), Handler)
    http.daemon_threads = True
    return http


class RestHandler(BaseHTTPRequestHandler):
    server_owner: ClassVar[TfServingTestServer]

    def do_GET(self) -> None:
        owner = self.server_owner
        if owner.prometheus_path is not None and self.path.split("?")[0] == owner.prometheus_path:
            return self._send(200, owner.manager.prometheus_text().encode(), "text/plain; version=0.0.4")
        self._dispatch("GET", b"")

    def do_POST(self) -> None:
        self.server_owner.note_rest_call()
        self._dispatch("POST", self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def _dispatch(self, method: str, body: bytes) -> None:
        if not self.path.lower().startswith("/v1/"):
            return self._send(404, b"", "text/plain")
        match = PATH.match(self.path)
        try:
            if not match or (method == "POST") != (match.group(4) == ":predict"):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Malformed request: {method} {self.path}")
            name, version, label, action = match.groups()
            version_number = int(version) if version else None
            if action == ":predict":
                document = self._predict(name, version_number, label, body)
            elif action == "/metadata":
                document = self._metadata(name, version_number, label)
            else:
                status = self.server_owner.manager.status(name, version_number, label)
                document = json_format.MessageToDict(status, always_print_fields_with_no_presence=True)
        except ServingError as error:
            return self._reply(HTTP_STATUS.get(error.code, 500), {"error": error.message})
        self._reply(200, document)

    def _predict(self, name: str, version: int | None, label: str | None, body: bytes) -> dict[str, Any]:
        manager = self.server_owner.manager
        try:
            request = json.loads(body)
        except ValueError as error:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"JSON Parse error: {error}") from error
        columns, rows = request.get("inputs"), request.get("instances")
        if (columns is None) == (rows is None):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key")
        servable = manager.servable(name, version, label)
        signature_name = request.get("signature_name", "serving_default")
        signature = servable.model.signatures.get(signature_name)
        only_input = next(iter(signature.structured_input_signature[1]), "inputs") if signature else "inputs"
        if rows is not None:
            is_dicts = bool(rows) and isinstance(rows[0], dict)
            columns = {key: [row[key] for row in rows] for key in rows[0]} if is_dicts else {only_input: rows}
        elif not isinstance(columns, dict):
            columns = {only_input: columns}
        try:
            outputs = manager.predict(servable, signature_name, {k: np.asarray(v) for k, v in columns.items()},
                                      from_json=True)  # fmt: skip
        except ServingError as error:
            manager.count_request(name, error.code)
            raise
        manager.count_request(name, grpc.StatusCode.OK)
        lists = {key: array.tolist() for key, array in outputs.items()}
        if rows is not None:
            if len(lists) == 1:
                return {"predictions": next(iter(lists.values()))}
            return {
                "predictions": [dict(zip(lists, values, strict=True)) for values in zip(*lists.values(), strict=True)]
            }
        return {"outputs": next(iter(lists.values())) if len(lists) == 1 else lists}

    def _metadata(self, name: str, version: int | None, label: str | None) -> dict[str, Any]:
        from tensorflow_serving.apis import get_model_metadata_pb2

        from tests.tfserving.grpc_api import model_metadata

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        if label:
            request.model_spec.version_label = label
        response = model_metadata(self.server_owner, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, preserving_proto_field_name=True),
            "metadata": {"signature_def": json_format.MessageToDict(signatures, preserving_proto_field_name=True)},
        }

    def _reply(self, status: int, document: dict[str, Any]) -> None:
        self._send(status, json.dumps(document, indent=1).encode(), "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return
