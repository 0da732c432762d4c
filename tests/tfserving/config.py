"""What the operator hands ``tensorflow_model_server``, read the way TF Serving reads it.

Every file is parsed with TF Serving's own messages through ``google.protobuf.text_format`` (TF Serving parses
them with protobuf's C++ ``TextFormat``): ``ModelServerConfig`` (``--model_config_file``), ``BatchingParameters``
(``--batching_parameters_file``) and ``MonitoringConfig`` (``--monitoring_config_file``). A file that does not
parse raises ``ConfigError`` with protobuf's message (line, column, what was expected), which is how a generated
config gets checked. The model list is validated as ``ServerCore`` does (unique names, a platform, absolute base
paths), and each model's version policy picks the versions to serve from its base path as
``FileSystemStoragePathSource`` does. Pure: no TensorFlow, no server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tests.tfserving.protos import batching_parameters_class, monitoring_config_class

# shared_batch_scheduler.h: QueueOptions::input_batch_size_limit when BatchingParameters has no max_batch_size.
DEFAULT_INPUT_BATCH_SIZE_LIMIT = 1000
# prometheus_exporter.cc: PrometheusExporter::kPrometheusPath, used when prometheus_config.path is empty.
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


class ConfigError(Exception):
    """A config file TF Serving would refuse (its message, as the real server would report it)."""


def parse_text_proto(text: str, message_class: Any, source: str) -> Any:
    message = message_class()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ConfigError(f"Invalid protobuf file: '{source}': {error}") from error
    return message


def read_text_proto(path: Path | str, message_class: Any) -> Any:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"Invalid protobuf file: '{path}': {error}") from error
    return parse_text_proto(text, message_class, str(path))


def read_model_server_config(path: Path | str) -> Any:
    return read_text_proto(path, model_server_config_pb2.ModelServerConfig)


def read_batching_parameters(path: Path | str) -> Any:
    return read_text_proto(path, batching_parameters_class())


def read_monitoring_config(path: Path | str) -> Any:
    return read_text_proto(path, monitoring_config_class())


def single_model_config(name: str, base_path: Path | str) -> Any:
    """``--model_name``/``--model_base_path`` without a config file (server.cc ``BuildSingleModelConfig``)."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name, model.base_path, model.model_platform = name, str(base_path), "tensorflow"
    return config


@dataclass(frozen=True)
class ModelEntry:
    """One model of the config: where its versions are and which of them to serve."""

    name: str
    base_path: Path
    policy: Any  # FileSystemStoragePathSourceConfig.ServableVersionPolicy
    labels: dict[str, int] = field(default_factory=dict)


def model_entries(config: Any) -> list[ModelEntry]:
    """The models of a ``ModelServerConfig``, refused as ``ServerCore`` refuses them."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ConfigError("custom_model_config is not supported (by this stand-in; TF Serving needs a loader too)")
    entries: list[ModelEntry] = []
    for model in config.model_config_list.config:
        if any(entry.name == model.name for entry in entries):
            raise ConfigError(f"Illegal to list model {model.name} multiple times in config list")
        platform = model.model_platform or ("tensorflow" if model.model_type == 1 else "")
        if not platform:
            raise ConfigError(
                "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                f"ModelServerConfig::model_platform, model name is {model.name}"
            )
        if platform != "tensorflow":
            raise ConfigError(f"PlatformConfigMap has no entry for platform {platform}")
        if "://" not in model.base_path and not model.base_path.startswith("/"):
            raise ConfigError(
                f"Expected model {model.name} to have an absolute path or URI; got base_path()={model.base_path}"
            )
        if "://" in model.base_path:
            raise ConfigError(f"model {model.name}: only local base paths are served (by this stand-in)")
        entries.append(ModelEntry(model.name, Path(model.base_path), model.model_version_policy,
                                  dict(model.version_labels)))  # fmt: skip
    return entries


def version_dirs(base_path: Path) -> dict[int, Path]:
    """Version directories under a base path: any child whose name parses as an integer (``00000123`` is 123)."""
    try:
        children = sorted(base_path.iterdir())
    except OSError:
        return {}
    versions: dict[int, Path] = {}
    for child in children:
        name = child.name.strip()
        if name.lstrip("+-").isdigit() and child.is_dir():
            versions.setdefault(int(name), child)
    return versions


def aspired_versions(policy: Any, available: list[int]) -> list[int]:
    """The versions a policy serves out of those on disk: ``latest`` (the highest ``num_versions``, at least 1;
    the default), ``all``, or ``specific`` (those listed that exist)."""
    ordered = sorted(available)
    choice = policy.WhichOneof("policy_choice") if policy is not None else None
    if choice == "all":
        return ordered
    if choice == "specific":
        return sorted(set(policy.specific.versions) & set(ordered))
    count = max(policy.latest.num_versions, 1) if choice == "latest" else 1
    return ordered[-count:]


def input_batch_size_limit(batching: Any | None) -> int | None:
    """The largest request (rows) the batching queue takes: None without ``--enable_batching``."""
    if batching is None:
        return None
    return batching.max_batch_size.value if batching.HasField("max_batch_size") else DEFAULT_INPUT_BATCH_SIZE_LIMIT


def batch_refusal(first_dimensions: list[int | None], limit: int | None) -> str | None:
    """Why TF Serving's batching layer would refuse a request with these inputs' 0th dimensions, or None.

    ``Queue::ValidateBatchTaskQueueCapacity`` (tensorflow/core/kernels/batching_util/shared_batch_scheduler.h)
    refuses a task larger than ``input_batch_size_limit``, which ``GetQueueOptions``
    (tensorflow_serving/servables/tensorflow/bundle_factory_util.h) sets to ``max_batch_size``, with
    INVALID_ARGUMENT, whether or not ``enable_large_batch_splitting`` is on (splitting only cuts what fits).
    """
    if limit is None:
        return None
    sizes = set(first_dimensions)
    if None in sizes or len(sizes) > 1:
        return "Batching Run() input tensors must have equal 0th-dimension size"
    size = next(iter(sizes), 0)
    if size is not None and size > limit:
        return f"Task size {size} is larger than maximum input batch size {limit}"
    return None


def prometheus_path(monitoring: Any | None) -> str | None:
    """Where the REST port serves Prometheus metrics, or None when the monitoring config does not enable it."""
    if monitoring is None or not monitoring.prometheus_config.enable:
        return None
    return monitoring.prometheus_config.path or DEFAULT_PROMETHEUS_PATH
