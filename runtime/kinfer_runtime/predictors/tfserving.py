"""The ``tfserving`` predictor: TF Serving's gRPC PredictionService/Predict with TensorProto payloads.

Each call has the deadline ``timeoutMs``. Transient failures (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
NOT_FOUND while a servable loads, ...) are retried ``maxRetries`` times with full-jitter exponential backoff; then
``PredictorUnavailable`` tells the loop to pause its partitions and retry the batch later. INVALID_ARGUMENT and
other errors about the request itself raise ``PredictionFailed`` at once (the batch is dead-lettered).

REST fallback: when gRPC is still UNAVAILABLE after the retries (its port unreachable, e.g. blocked by a proxy or
a NetworkPolicy) but ``restFallback`` is on, the batch is sent once to ``http://HOST:restPort/v1/models/NAME:predict``
(columnar ``inputs``, orjson). If that works, REST is used directly for the next 30 s before gRPC is tried again.
The preprocessing metadata (``kinfer.json``) is read from the model directory mounted into the consumer pod.

Load balancing: when the endpoint is a DNS name and not ``spec.serving.tfserving.endpoint`` (so the operator's
headless Service, whose name resolves to every ready TF Serving pod), calls are spread over all its addresses
with gRPC ``round_robin``, and the name is resolved again every ``RERESOLVE_SECONDS`` in the background
(predictors/balancing.py). An external ``endpoint`` or an IP address gets one plain channel, as before.
"""

from __future__ import annotations

import logging
import random
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson

from kinfer_runtime.predictors.balancing import (
    RERESOLVE_SECONDS,
    BalancedChannel,
    Resolver,
    is_ip_literal,
    resolve_addresses,
    split_endpoint,
)
from kinfer_runtime.predictors.base import Prediction, PredictionFailed, PredictorUnavailable
from kinfer_runtime.spec import TfServingSpec
from kinfer_runtime.spec.model_metadata import METADATA_FILE, ModelMetadata, load_model_metadata, pick_version

log = logging.getLogger(__name__)

PERMANENT_CODES = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.INTERNAL,
     grpc.StatusCode.DATA_LOSS}
)  # fmt: skip
BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, REST_PREFERRED_SECONDS = 0.05, 2.0, 30.0
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def backoff_seconds(attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base·2^attempt)], so retrying clients don't stampede together."""
    return rng.uniform(0.0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


def balances_by_default(endpoint: str, settings: TfServingSpec) -> bool:
    """A DNS name that is not the spec's external ``endpoint``: the operator's headless Service (or a name given
    with ``--tfserving-endpoint``/``KINFER_TFSERVING_ENDPOINT``)."""
    if settings.endpoint is not None:
        return False
    try:
        host, _ = split_endpoint(endpoint)
    except ValueError:
        return False
    return not is_ip_literal(host)


class TfServingPredictor:
    def __init__(
        self,
        model_name: str,
        endpoint: str,
        settings: TfServingSpec,
        *,
        model_dir: Path,
        pinned_version: int | None = None,
        rng: random.Random | None = None,
        balance: bool | None = None,
        resolve: Resolver = resolve_addresses,
        reresolve_seconds: float = RERESOLVE_SECONDS,
    ) -> None:
        """``balance``: round-robin over every address of the endpoint's name, re-resolved every
        ``reresolve_seconds`` (default: for a DNS name unless ``settings.endpoint``, an external server, is
        set). ``resolve(host, port)`` lists the addresses (DNS; a seam for tests)."""
        self.model_name = model_name
        self.endpoint = endpoint
        self.settings = settings
        self.model_dir = Path(model_dir)
        self.pinned_version = pinned_version
        self.rng = rng or random.Random()
        self.rest_url = self._rest_url()
        self._metadata: ModelMetadata | None = None
        self._version = 0
        self._version_changed = False
        self._rest_until = 0.0
        self.rest_preferred_seconds = REST_PREFERRED_SECONDS
        self._healthy = False
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self.balance = balances_by_default(endpoint, settings) if balance is None else balance
        self.resolve, self.reresolve_seconds = resolve, reresolve_seconds
        self.balancer: BalancedChannel | None = None

    @property
    def model_version(self) -> int:
        return self._version

    @property
    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise RuntimeError("the predictor is not loaded")
        return self._metadata

    def load(self) -> None:
        """Read kinfer.json, open the channel and warm up with one row; a server that is still down is logged
        (predict raises PredictorUnavailable until it answers), a model that refuses the warm-up raises."""
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        # Only kinfer.json is needed here (TF Serving holds the SavedModel), so that is what marks a version.
        version = pick_version(self.model_dir, self.pinned_version, marker=METADATA_FILE)
        if version is None:
            raise FileNotFoundError(f"{self.model_dir} holds no model version with kinfer.json for {self.model_name}")
        self._metadata = load_model_metadata(self.model_dir / str(version))
        self._version = version
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # gRPC's default reconnect backoff grows to 120 s; a returning server should be used within seconds.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if self.balance:
            # A new channel (new pods) replaces the stub in one assignment; predict() reads self._stub once per call.
            def use(channel: grpc.Channel) -> None:
                self._channel, self._stub = channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)

            self.balancer = BalancedChannel(
                self.endpoint,
                options,
                use,
                resolve=self.resolve,
                reresolve_seconds=self.reresolve_seconds,
                retire_after_seconds=self.settings.timeout_ms / 1000 + 1.0,
            )
            self.balancer.start()
        else:
            self._channel = grpc.insecure_channel(self.endpoint, options=options)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        warm = {name: np.zeros((1, *info.row_shape), info.dtype) for name, info in self._metadata.inputs.items()}
        try:
            self.predict(warm)
        except PredictorUnavailable as error:
            log.warning("TF Serving at %s not answering yet (%s); batches wait until it does", self.endpoint, error)

    def ready(self) -> bool:
        return self._metadata is not None and self._healthy

    def predict(self, inputs: dict[str, np.ndarray]) -> Prediction:
        if self._stub is None:
            raise RuntimeError("predict() before load()")
        if time.monotonic() < self._rest_until:
            return self._predict_rest(inputs, fallback_from=None)
        request = self._request(inputs)
        last_error: grpc.RpcError | None = None
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                time.sleep(backoff_seconds(attempt - 1, self.rng))
            try:
                response = self._stub.Predict(request, timeout=self.settings.timeout_ms / 1000)
            except grpc.RpcError as error:
                if error.code() in PERMANENT_CODES:
                    message = f"TF Serving refused the batch: {error.code().name}: {error.details()}"
                    raise PredictionFailed(message) from error
                last_error = error
                continue
            return self._prediction(response)
        assert last_error is not None
        summary = f"{last_error.code().name}: {last_error.details()}"
        if self.settings.rest_fallback and last_error.code() is grpc.StatusCode.UNAVAILABLE:
            return self._predict_rest(inputs, fallback_from=summary)
        self._healthy = False
        raise PredictorUnavailable(
            f"TF Serving at {self.endpoint}: {self.settings.max_retries + 1} attempts, {summary}"
        )

    def maybe_reload(self) -> bool:
        """TF Serving loads new versions itself; here the local metadata follows the version it reports."""
        if not self._version_changed:
            return False
        self._version_changed = False
        try:
            self._metadata = load_model_metadata(self.model_dir / str(self._version))
        except ValueError:
            log.warning("TF Serving serves %s v%d but no kinfer.json for it here; keeping the previous metadata",
                        self.model_name, self._version)  # fmt: skip
        return True

    def close(self) -> None:
        if self.balancer is not None:
            self.balancer.close()
            self.balancer = None
        elif self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None

    def _request(self, inputs: dict[str, np.ndarray]) -> Any:
        from tensorflow_serving.apis import predict_pb2

        from kinfer_runtime.predictors.tensor_codec import array_to_tensor_proto

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = self.metadata.signature
        if self.pinned_version is not None:
            request.model_spec.version.value = self.pinned_version
        for name, array in inputs.items():
            request.inputs[name].CopyFrom(array_to_tensor_proto(array))
        return request

    def _prediction(self, response: Any) -> Prediction:
        from kinfer_runtime.predictors.tensor_codec import tensor_proto_to_array

        outputs = {name: tensor_proto_to_array(proto) for name, proto in response.outputs.items()}
        served = response.model_spec.version.value if response.model_spec.HasField("version") else self._version
        self._note_version(int(served))
        self._healthy = True
        return Prediction(outputs, self._version)

    def _note_version(self, served: int) -> None:
        if served and served != self._version:
            log.info("TF Serving now answers with %s version %d (was %d)", self.model_name, served, self._version)
            self._version, self._version_changed = served, True

    def _rest_url(self) -> str:
        host = self.endpoint.rsplit(":", 1)[0]
        version = f"/versions/{self.pinned_version}" if self.pinned_version is not None else ""
        return f"http://{host}:{self.settings.rest_port}/v1/models/{self.model_name}{version}:predict"

    def _predict_rest(self, inputs: dict[str, np.ndarray], fallback_from: str | None) -> Prediction:
        body = orjson.dumps(
            {"signature_name": self.metadata.signature, "inputs": inputs}, option=orjson.OPT_SERIALIZE_NUMPY
        )
        request = urllib.request.Request(self.rest_url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310 - always http://, built here
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_ms / 1000) as reply:  # noqa: S310
                document = orjson.loads(reply.read())
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500 and error.code not in (404, 408, 429):
                raise PredictionFailed(f"TF Serving REST refused the batch: HTTP {error.code}") from error
            return self._rest_failed(f"HTTP {error.code}", fallback_from)
        except (OSError, ValueError) as error:
            return self._rest_failed(repr(error), fallback_from)
        if fallback_from is not None:  # only the fallback opens the window: answers inside it must not extend it
            log.warning("gRPC at %s unreachable (%s): using REST %s for %ds", self.endpoint, fallback_from,
                        self.rest_url, self.rest_preferred_seconds)  # fmt: skip
            self._rest_until = time.monotonic() + self.rest_preferred_seconds
        self._healthy = True
        outputs = document.get("outputs")
        if not isinstance(outputs, dict):  # a single-output signature answers with the bare list
            outputs = {next(iter(self.metadata.outputs)): outputs}
        arrays = {name: np.asarray(value, dtype=self.metadata.outputs[name].dtype if name in self.metadata.outputs
                                   else np.float32) for name, value in outputs.items()}  # fmt: skip
        return Prediction(arrays, self._version)

    def _rest_failed(self, reason: str, fallback_from: str | None) -> Prediction:
        self._rest_until = 0.0  # back to gRPC first next time
        self._healthy = False
        grpc_part = f"gRPC {fallback_from}; " if fallback_from else ""
        raise PredictorUnavailable(f"TF Serving at {self.endpoint}: {grpc_part}REST {self.rest_url}: {reason}")
