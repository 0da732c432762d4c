"""The stand-in's model manager: which versions of which models are loaded, their states, and Predict itself.

Like TF Serving, each configured model's versions are the integer-named directories under its base path, and its
version policy picks those to serve. A new version is loaded with ``tf.saved_model.load`` and a version no longer
aspired is unloaded once an aspired one is AVAILABLE (TF Serving's availability-preserving policy), so a rollout
never leaves the model without a version. A version that fails to load is reported with state END and its error,
and is tried again at the next poll; the previous version keeps serving (TF Serving retries a few times, a minute
apart, then waits for the directory to change). Predict runs the signature's concrete function directly on the
calling thread: there is no batching scheduler, no session thread pools and no warm-up replay here.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from tests.tfserving.config import ModelEntry, aspired_versions, batch_refusal, version_dirs

# tensorflow_serving/apis/get_model_status.proto, ModelVersionStatus.State
START, LOADING, AVAILABLE, UNLOADING, END = 10, 20, 30, 40, 50
# tensorflow/core/protobuf/error_codes.proto (tensorflow.error.Code)
ERROR_CODES = {"OK": 0, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "NOT_FOUND": 5}


class ServingError(Exception):
    """A request TF Serving would answer with this status code (gRPC) and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Servable:
    name: str
    version: int
    path: Path
    model: Any  # what tf.saved_model.load returned

    def signature_defs(self) -> dict[str, Any]:
        """The SignatureDefs of the ``serve`` MetaGraph, read from saved_model.pb (for GetModelMetadata)."""
        from tensorflow.core.protobuf import saved_model_pb2

        saved = saved_model_pb2.SavedModel.FromString((self.path / "saved_model.pb").read_bytes())
        graph = next((g for g in saved.meta_graphs if "serve" in g.meta_info_def.tags), saved.meta_graphs[0])
        return dict(graph.signature_def)


class ModelManager:
    """Loads, unloads and looks up servables; counts requests for the Prometheus page."""

    def __init__(self, batch_limit: int | None = None) -> None:
        self.batch_limit = batch_limit  # rows a request may hold (max_batch_size) with --enable_batching
        self._entries: dict[str, ModelEntry] = {}
        self._servables: dict[str, dict[int, Servable]] = {}
        self._states: dict[str, dict[int, tuple[int, str, str]]] = {}  # version -> (state, error code, message)
        self._lock = threading.Lock()  # guards the three dicts above and the counters
        self._refreshing = threading.Lock()  # one load/unload pass at a time
        self.request_counts: Counter[tuple[str, str]] = Counter()  # (model, status code name)
        self.load_counts: Counter[tuple[str, str]] = Counter()  # (version path, success|failure)

    # -- configuration and the file-system poll ------------------------------------------------------------
    def configure(self, entries: list[ModelEntry]) -> None:
        """Serve exactly these models (a model dropped from the config is unloaded), then poll their paths."""
        with self._refreshing:
            with self._lock:
                for name in set(self._servables) - {entry.name for entry in entries}:
                    self._servables.pop(name)
                    self._states[name] = {v: (END, "OK", "") for v in self._states.get(name, {})}
                self._entries = {entry.name: entry for entry in entries}
            self._refresh_locked()

    def refresh(self) -> None:
        """One file-system poll: load newly aspired versions, unload those no longer aspired."""
        with self._refreshing:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        import tensorflow as tf

        for entry in list(self._entries.values()):
            on_disk = version_dirs(entry.base_path)
            aspired = aspired_versions(entry.policy, list(on_disk))
            loaded = self._servables.get(entry.name, {})
            for version in aspired:
                if version in loaded:
                    continue
                self._set_state(entry.name, version, LOADING)
                try:
                    model = tf.saved_model.load(str(on_disk[version]))
                except Exception as error:  # TF Serving reports any load failure in the version's status
                    code = "NOT_FOUND" if not (on_disk[version] / "saved_model.pb").exists() else "UNKNOWN"
                    message = (str(error).splitlines() or [repr(error)])[0][:300]
                    self._set_state(entry.name, version, END, code, message)
                    with self._lock:
                        self.load_counts[(str(on_disk[version]), "failure")] += 1
                    continue
                with self._lock:
                    self.load_counts[(str(on_disk[version]), "success")] += 1
                    self._servables.setdefault(entry.name, {})[version] = Servable(
                        entry.name, version, on_disk[version], model
                    )
                self._set_state(entry.name, version, AVAILABLE)
            with self._lock:
                current = self._servables.get(entry.name, {})
                if any(v in current for v in aspired):  # availability first: unload only with a successor up
                    for version in [v for v in current if v not in aspired]:
                        del current[version]
                        self._states[entry.name][version] = (END, "OK", "")

    def _set_state(self, name: str, version: int, state: int, code: str = "OK", message: str = "") -> None:
        with self._lock:
            self._states.setdefault(name, {})[version] = (state, code, message)

    # -- lookups ---------------------------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def available_versions(self, name: str) -> list[int]:
        with self._lock:
            return sorted(self._servables.get(name, {}))

    def load_errors(self, name: str) -> list[str]:
        with self._lock:
            states = self._states.get(name, {})
            failed = [(v, code, message) for v, (_, code, message) in states.items() if code != "OK"]
        return [f"{{name: {name} version: {v}}} due to error: {code}: {message}" for v, code, message in failed]

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        with self._lock:
            entry = self._entries.get(name)
            if label:
                if entry is None or label not in entry.labels:
                    raise ServingError(
                        grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}"
                    )
                version = entry.labels[label]
            servables = self._servables.get(name, {})
            if version is None:
                if servables:
                    return servables[max(servables)]
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
            if version in servables:
                return servables[version]
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})")

    def status(self, name: str, version: int | None = None, label: str | None = None) -> Any:
        """GetModelStatusResponse, as GetModelStatusImpl builds it (every version the manager has seen)."""
        from tensorflow_serving.apis import get_model_status_pb2

        with self._lock:
            states = dict(self._states.get(name, {}))
            labels = self._entries[name].labels if name in self._entries else {}
        if label:
            if label not in labels:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
            version = labels[label]
        if version is not None and version not in states:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}")
        if not states:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for v in [version] if version is not None else sorted(states, reverse=True):
            state, code, message = states[v]
            status = response.model_version_status.add(version=v, state=state).status
            status.error_code, status.error_message = ERROR_CODES.get(code, 2), message
        return response

    # -- Predict ---------------------------------------------------------------------------------------------
    def predict(
        self, servable: Servable, signature_name: str, inputs: dict[str, np.ndarray], *, from_json: bool = False
    ) -> dict[str, np.ndarray]:
        """Run a signature. TensorProto inputs must have the signature's dtypes exactly (as in a TF Serving
        session); JSON values are converted to them (as TF Serving's JSON reader does)."""
        import tensorflow as tf

        signatures = servable.model.signatures
        if signature_name not in signatures:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature_name}" not found.'
            )
        function = signatures[signature_name]
        specs = function.structured_input_signature[1]
        if set(inputs) != set(specs):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input size does not match signature: {len(inputs)}!={len(specs)} len({sorted(inputs)}) != "
                f"len({sorted(specs)}). Sent extra: {sorted(set(inputs) - set(specs))}. Missing but required: "
                f"{sorted(set(specs) - set(inputs))}.",
            )
        refusal = batch_refusal([a.shape[0] if a.ndim else None for a in inputs.values()], self.batch_limit)
        if refusal:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, refusal)
        try:
            tensors = {k: tf.constant(v, dtype=specs[k].dtype if from_json else None) for k, v in inputs.items()}
            outputs = function(**tensors)
        except (TypeError, ValueError, tf.errors.InvalidArgumentError) as error:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error)[:500]) from error
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def count_request(self, name: str, code: grpc.StatusCode) -> None:
        with self._lock:
            self.request_counts[(name, code.name)] += 1

    def prometheus_text(self) -> str:
        """A few lines under TF Serving's own metric names (not its whole set)."""
        with self._lock:
            requests, loads = dict(self.request_counts), dict(self.load_counts)
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        for (model, status), count in sorted(requests.items()):
            lines.append(f':tensorflow:serving:request_count{{model_name="{model}",status="{status}"}} {count}')
        lines.append("# TYPE :tensorflow:cc:saved_model:load_attempt_count counter")
        for (path, status), count in sorted(loads.items()):
            lines.append(
                f':tensorflow:cc:saved_model:load_attempt_count{{model_path="{path}",status="{status}"}} {count}'
            )
        return "\n".join(lines) + "\n"
