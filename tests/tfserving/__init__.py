"""A test stand-in for TensorFlow Serving (``tensorflow_model_server``): NOT the real server.

The real binary can't be obtained on this machine (not on PyPI, not in Debian, no registry pulls; docs/models.md),
so the ``tfserving`` predictor, and the pods of ``serving.mode: tfserving`` on the test bed (image
images/tfserving-standin.Dockerfile), run against this Python server instead. What it shares with TF Serving:

- the wire: the official ``PredictionService`` (Predict, GetModelMetadata) and ``ModelService``
  (GetModelStatus) from ``tensorflow-serving-api``'s protos, and the REST API (model status, metadata,
  ``:predict``), with TF Serving's status codes and messages for the cases it covers;
- the start-up: ``tensorflow_model_server``'s flags, and every config file parsed with TF Serving's own protos
  (``ModelServerConfig``, ``BatchingParameters``, ``MonitoringConfig``), so a file TF Serving would refuse is
  refused here too (exit code 255 and protobuf's parse error);
- the models: SavedModels served from each model's base path under its version policy (``latest``, ``all``,
  ``specific``), new versions found by polling, the model config re-read every poll interval;
- ``max_batch_size``: a request with more rows is refused with INVALID_ARGUMENT, as TF Serving's batching queue
  refuses it.

What it does not have, so what tests and figures taken against it do not show: TF Serving's batching scheduler
(requests are never merged into server-side batches, ``batch_timeout_micros``, ``num_batch_threads``,
``max_enqueued_batches`` and ``allowed_batch_sizes`` have no effect, and a full queue never answers
UNAVAILABLE), its C++ session and thread pools (each request runs the signature's concrete function on a Python
gRPC worker thread, under the GIL), warm-up replay (``--enable_model_warmup`` is accepted and does nothing),
load retries and resource estimation, TF Serving's metric set (a few of its counters only), Classify, Regress,
MultiInference and config reloads over gRPC. Latency, throughput and CPU figures measured against it say nothing
about TF Serving; correctness of the client side (protocol, retries, versions, load balancing) is what it tests.

Test API: ``TfServingTestServer(model_dir, "fraud").start()`` (tests/tfserving/server.py).
"""

from tests.tfserving.config import ConfigError
from tests.tfserving.models import ServingError
from tests.tfserving.server import StartError, TfServingTestServer

__all__ = ["ConfigError", "ServingError", "StartError", "TfServingTestServer"]
