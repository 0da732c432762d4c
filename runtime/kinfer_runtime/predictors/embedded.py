"""The embedded predictor: the SavedModel runs in this process, called through its serving signature.

Load and warm-up happen before the loop consumes anything. The signature runs in a session on the SavedModel's
graph, finalized after loading, so nothing is ever traced or added to it. Each batch is padded with zero rows up to
a power-of-two bucket (at most ``maxBatchSize``), and every bucket is run once at warm-up, so the model only ever
sees shapes it has already run (which keeps per-shape kernel caches warm). ``model.predict`` is never used: it
costs ~70 ms per call (performance.md §2).

Hot reload (versionPolicy Latest): ``maybe_reload`` looks for a higher version directory every few seconds; a
background thread loads and warms it up while the current version keeps serving, then the next call swaps it in.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from kinfer_runtime.predictors.base import Prediction, PredictionFailed, bucket_for, bucket_sizes, pad_rows
from kinfer_runtime.spec.model_metadata import ModelMetadata, list_versions, load_model_metadata, pick_version

log = logging.getLogger(__name__)


def configure_tf_threads(intra_op: int, inter_op: int) -> None:
    """Set TF's thread pools; only possible before TF's runtime starts, later it is logged and left as is."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        current = (
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        )
        if current != (intra_op, inter_op):
            log.warning("TF already initialised with intra/inter threads %s, wanted %s", current, (intra_op, inter_op))


class LoadedModel:
    """One warmed-up version: a session on the SavedModel's graph with a callable for its serving signature (as
    TF Serving loads a model), its metadata, and the batch shapes it has run.

    Why a session and not ``tf.saved_model.load``'s signature function: the graph is finalized after loading
    (nothing can be traced or added later), and with one inter-op thread (the default) each call runs on the
    calling thread (``RunOptions.inter_op_thread_pool=-1``) instead of being handed to TF's pool and waited for.
    On a 2-core VM that hand-off costs more than the model: an identity graph took ~400 µs per call through the
    pool, ~200 µs on the caller's thread, and the signature function of the fraud model ~700-860 µs.

    The callable is made from ``CallableOptions`` (feed and fetch tensor names, the run options), as Keras 2's
    backend did: ``Session.make_callable`` with a feed list falls back to a full ``Session.run`` per call (a fetch
    handler and a feed dict built each time), which cost the fraud model 330-400 µs per call against 45-82 µs
    here, at 8 to 256 rows."""

    def __init__(self, version_dir: Path, buckets: list[int], threads: tuple[int, int] = (1, 1)) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import config_pb2

        self.metadata: ModelMetadata = load_model_metadata(version_dir)
        self.version = self.metadata.version
        intra_op, inter_op = threads
        self.graph = tf.Graph()
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=intra_op, inter_op_parallelism_threads=inter_op)
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        meta_graph = tf.compat.v1.saved_model.loader.load(self.session, [tf.saved_model.SERVING], str(version_dir))
        signatures = meta_graph.signature_def
        if self.metadata.signature not in signatures:
            raise PredictionFailed(f"{version_dir} has no signature {self.metadata.signature!r} ({list(signatures)})")
        signature = signatures[self.metadata.signature]
        self.input_names = list(self.metadata.inputs)
        if set(signature.inputs) != set(self.input_names):
            raise PredictionFailed(
                f"{version_dir}: the signature's inputs {sorted(signature.inputs)} differ from the metadata's "
                f"{sorted(self.input_names)}"
            )
        self.output_names = list(signature.outputs)
        callable_options = config_pb2.CallableOptions(
            feed=[signature.inputs[name].name for name in self.input_names],
            fetch=[signature.outputs[name].name for name in self.output_names],
        )
        callable_options.run_options.inter_op_thread_pool = -1 if inter_op == 1 else 0
        self.function: Any = self.session._make_callable_from_options(callable_options)
        self.graph.finalize()
        # The callable feeds arrays as they are (Session.run would convert them): cast to the signature's dtypes.
        self.feed_dtypes = [(name, np.dtype(self.metadata.inputs[name].dtype)) for name in self.input_names]
        self.refusals = (tf.errors.OpError, TypeError, ValueError, KeyError)  # inside the graph or a bad input
        self.buckets = buckets
        self.batch_sizes_run: set[int] = set()
        for rows in buckets:
            self.call(
                {
                    name: np.zeros((rows, *info.row_shape), dtype=info.dtype)
                    for name, info in self.metadata.inputs.items()
                }
            )
        self.warm_batch_sizes = frozenset(self.batch_sizes_run)

    def call(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = next(iter(inputs.values())).shape[0]
        self.batch_sizes_run.add(rows)
        try:
            feeds = [np.asarray(inputs[name], dtype) for name, dtype in self.feed_dtypes]
            outputs = self.function(*feeds)
        except self.refusals as error:
            raise PredictionFailed(f"model {self.metadata.name} v{self.version} refused the batch: {error}") from error
        return dict(zip(self.output_names, outputs, strict=True))

    def close(self) -> None:
        self.session.close()

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = next(iter(inputs.values())).shape[0]
        largest = self.buckets[-1]
        if rows > largest:  # the loop's batches never exceed maxBatchSize; split rather than run a new shape
            parts = [self.predict({k: v[s : s + largest] for k, v in inputs.items()}) for s in range(0, rows, largest)]
            return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        size = bucket_for(rows, self.buckets)
        outputs = self.call({name: pad_rows(array, size) for name, array in inputs.items()})
        return {name: array[:rows] for name, array in outputs.items()}


class EmbeddedPredictor:
    def __init__(
        self,
        model_name: str,
        model_dir: Path,
        *,
        pinned_version: int | None = None,
        max_batch_size: int = 256,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        reload_check_seconds: float = 5.0,
    ) -> None:
        self.model_name = model_name
        self.model_dir = Path(model_dir)
        self.pinned_version = pinned_version
        self.buckets = bucket_sizes(max_batch_size)
        self.threads = (intra_op_threads, inter_op_threads)
        self.reload_check_seconds = reload_check_seconds
        self._current: LoadedModel | None = None
        self._next_check = 0.0
        self._loader: threading.Thread | None = None
        self._loaded_next: LoadedModel | None = None
        self._failed_versions: dict[int, float] = {}  # version -> when to try it again

    @property
    def model_version(self) -> int:
        return self._current.version if self._current else 0

    @property
    def metadata(self) -> ModelMetadata:
        if self._current is None:
            raise RuntimeError("the predictor is not loaded")
        return self._current.metadata

    @property
    def loaded(self) -> LoadedModel | None:
        return self._current

    def load(self) -> None:
        configure_tf_threads(*self.threads)
        version = pick_version(self.model_dir, self.pinned_version)
        if version is None:
            wanted = f"version {self.pinned_version}" if self.pinned_version else "any version"
            raise FileNotFoundError(
                f"{self.model_dir} holds no SavedModel for {wanted} (<dir>/<version>/saved_model.pb)"
            )
        started = time.monotonic()
        self._current = LoadedModel(self.model_dir / str(version), self.buckets, self.threads)
        log.info(
            "loaded model %s version %d in %.2fs (warm-up over batch sizes %s)",
            self.model_name,
            version,
            time.monotonic() - started,
            self.buckets,
        )
        self._next_check = time.monotonic() + self.reload_check_seconds

    def ready(self) -> bool:
        return self._current is not None

    def predict(self, inputs: dict[str, np.ndarray]) -> Prediction:
        model = self._current
        if model is None:
            raise RuntimeError("predict() before load()")
        return Prediction(model.predict(inputs), model.version)

    def maybe_reload(self) -> bool:
        if self._loaded_next is not None:
            previous = self._current
            self._current, self._loaded_next, self._loader = self._loaded_next, None, None
            if previous is not None:
                previous.close()  # the loop is the only caller: nothing else is using it
            log.info("model %s now serving version %d", self.model_name, self._current.version)
            return True
        if self.pinned_version is not None or self._loader is not None or time.monotonic() < self._next_check:
            return False
        self._next_check = time.monotonic() + self.reload_check_seconds
        now = time.monotonic()
        newer = [
            v
            for v in list_versions(self.model_dir)
            if v > self.model_version and self._failed_versions.get(v, 0.0) <= now
        ]
        if newer:
            self._loader = threading.Thread(
                target=self._load_next, args=(newer[-1],), name="kinfer-model-reload", daemon=True
            )
            self._loader.start()
        return False

    def wait_for_reload(self, timeout: float) -> None:
        """Block until a started background load finishes (tests, and shutdown)."""
        loader = self._loader
        if loader is not None:
            loader.join(timeout)

    def _load_next(self, version: int) -> None:
        try:
            self._loaded_next = LoadedModel(self.model_dir / str(version), self.buckets, self.threads)
        except Exception:  # a half-copied or broken version must not stop the one serving
            log.exception(
                "could not load model %s version %d; keeping version %d", self.model_name, version, self.model_version
            )
            self._failed_versions[version] = time.monotonic() + 60.0  # perhaps still being copied
            self._loader = None

    def close(self) -> None:
        self.wait_for_reload(timeout=30)
        for model in (self._current, self._loaded_next):
            if model is not None:
                model.close()
        self._current = self._loaded_next = None
