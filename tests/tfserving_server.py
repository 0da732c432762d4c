"""A TF Serving stand-in for tests: the official PredictionService gRPC API (tensorflow-serving-api's protos)
and the REST ``:predict`` API, serving a real SavedModel through its signature.

The real ``tensorflow_model_server`` binary can't be obtained here (not on PyPI or in Debian; docs/models.md), so
tests run the ``tfserving`` predictor against this server. It is a real gRPC server on a real port; tests can
make it answer UNAVAILABLE, stall past deadlines, or close its gRPC port altogether (``stop_grpc``/``start_grpc``
on the same port) to rehearse outages and recoveries.

Run standalone: ``python -m tests.tfserving_server --model-base-path models/fraud --model-name fraud --port 8500
--rest-port 8501``.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import prediction_service_pb2_grpc


class TfServingTestServer:
    def __init__(self, model_base_path: Path, model_name: str, *, grpc_port: int = 0, rest_port: int = 0) -> None:
        self.model_base_path = Path(model_base_path)
        self.model_name = model_name
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self.unavailable = False  # answer every Predict with UNAVAILABLE
        self.delay_seconds = 0.0  # stall each Predict (past the client's deadline → DEADLINE_EXCEEDED)
        self.predict_calls = 0
        self.rest_calls = 0
        self._signatures: dict[int, Any] = {}
        self._grpc_server: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def load_versions(self) -> list[int]:
        """Load every version directory not loaded yet (TF Serving's file-system polling, done on demand)."""
        import tensorflow as tf

        for path in sorted(self.model_base_path.iterdir()):
            if path.name.isdigit() and int(path.name) not in self._signatures and (path / "saved_model.pb").exists():
                self._signatures[int(path.name)] = tf.saved_model.load(str(path))
        return sorted(self._signatures)

    def start(self) -> TfServingTestServer:
        self.load_versions()
        self.start_grpc()
        self.start_rest()
        return self

    def start_grpc(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Servicer(self), server)
        self.grpc_port = server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        server.start()
        self._grpc_server = server

    def stop_grpc(self) -> None:
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=0).wait()
            self._grpc_server = None

    def start_rest(self) -> None:
        owner = self

        class Handler(_RestHandler):
            server_owner = owner

        self._http = ThreadingHTTPServer(("127.0.0.1", self.rest_port), Handler)
        self.rest_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="tfserving-rest", daemon=True).start()

    def stop_rest(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def stop(self) -> None:
        self.stop_grpc()
        self.stop_rest()

    def run(self, version: int | None, signature_name: str, inputs: dict[str, np.ndarray]) -> tuple[int, dict]:
        """Call the signature; raises LookupError (no such version/signature) or ValueError (bad inputs)."""
        import tensorflow as tf

        with self._lock:
            versions = self.load_versions()
        chosen = version if version else (versions[-1] if versions else None)
        if chosen not in self._signatures:
            raise LookupError(f"servable {self.model_name} version {chosen} not found (have {versions})")
        signatures = self._signatures[chosen].signatures
        if signature_name not in signatures:
            raise ValueError(f"signature {signature_name!r} not found")
        function = signatures[signature_name]
        specs = function.structured_input_signature[1]
        try:
            # Like TF Serving, JSON numbers are read as the signature's dtypes; TensorProtos must match exactly.
            tensors = {k: tf.constant(v, dtype=specs[k].dtype if k in specs else None) for k, v in inputs.items()}
            outputs = function(**tensors)
        except (TypeError, ValueError, tf.errors.InvalidArgumentError) as error:
            raise ValueError(str(error)[:500]) from error
        return int(chosen), {name: tensor.numpy() for name, tensor in outputs.items()}


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService: Predict only (Classify/Regress/MultiInference/GetModelMetadata answer UNIMPLEMENTED)."""

    def __init__(self, owner: TfServingTestServer) -> None:
        self.owner = owner

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        owner = self.owner
        owner.predict_calls += 1
        if owner.delay_seconds:
            time.sleep(owner.delay_seconds)
        if owner.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "test server made unavailable")
        if request.model_spec.name != owner.model_name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"servable {request.model_spec.name} not found")
        version = request.model_spec.version.value if request.model_spec.HasField("version") else None
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        try:
            served, outputs = owner.run(version, request.model_spec.signature_name or "serving_default", inputs)
        except LookupError as error:
            context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        except ValueError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = owner.model_name
        response.model_spec.version.value = served
        response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
        for name, array in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(array))
        return response


class _RestHandler(BaseHTTPRequestHandler):
    server_owner: TfServingTestServer
    PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")

    def do_POST(self) -> None:
        owner = self.server_owner
        owner.rest_calls += 1
        match = self.PATH.match(self.path)
        if not match or match.group(1) != owner.model_name:
            return self._reply(404, {"error": f"no such model or path {self.path}"})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        columns = body.get("inputs")
        if not isinstance(columns, dict):
            return self._reply(400, {"error": "this server takes the columnar 'inputs' format"})
        try:
            _, outputs = owner.run(
                int(match.group(2)) if match.group(2) else None,
                body.get("signature_name", "serving_default"),
                {name: np.asarray(value) for name, value in columns.items()},
            )
        except LookupError as error:
            return self._reply(404, {"error": str(error)})
        except ValueError as error:
            return self._reply(400, {"error": str(error)})
        self._reply(200, {"outputs": {name: array.tolist() for name, array in outputs.items()}})

    def _reply(self, status: int, document: dict) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="TF Serving stand-in (gRPC PredictionService + REST :predict)")
    parser.add_argument("--model-base-path", type=Path, required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--rest-port", type=int, default=8501)
    args = parser.parse_args(argv)
    server = TfServingTestServer(args.model_base_path, args.model_name, grpc_port=args.port, rest_port=args.rest_port)
    server.start()
    print(f"serving {args.model_name} {server.load_versions()} on grpc {server.endpoint}, rest {server.rest_port}",
          flush=True)  # fmt: skip
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
