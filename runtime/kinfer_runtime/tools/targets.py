"""Shared plumbing of the data tools (produce, replay, score): pipeline files, Kafka targets and client configs.

The tools take the same InferencePipeline YAML the runtime runs, so topic names and connection settings are
never typed twice; ``--bootstrap-servers`` and ``-X key=value`` override what the file says.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import yaml

from kinfer_runtime.kafka.settings import common_config, read_credentials
from kinfer_runtime.spec import InferencePipeline, parse_pipeline

BOOTSTRAP_ENV_VARS = ("KINFER_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS")


def load_pipeline_file(path: str | Path) -> InferencePipeline:
    """A validated InferencePipeline from a YAML file (the first document that is one)."""
    with open(path, encoding="utf-8") as stream:
        documents = [d for d in yaml.safe_load_all(stream) if isinstance(d, dict)]
    for document in documents:
        if document.get("kind") == "InferencePipeline":
            return parse_pipeline(document)
    raise ValueError(f"{path}: no InferencePipeline manifest in the file")


def add_kafka_arguments(parser: argparse.ArgumentParser, pipeline_positional: bool = False) -> None:
    """``--bootstrap-servers``, ``-X key=value`` and the pipeline file (positional or ``--pipeline``)."""
    if pipeline_positional:
        parser.add_argument("pipeline", help="InferencePipeline YAML (topics and Kafka connection)")
    else:
        parser.add_argument("--pipeline", help="InferencePipeline YAML: its input topic and Kafka connection")
    parser.add_argument(
        "--bootstrap-servers",
        help="host:port list (default: env KINFER_BOOTSTRAP_SERVERS, "
        "KAFKA_BOOTSTRAP_SERVERS, then the pipeline's spec.kafka)",
    )
    parser.add_argument(
        "-X", dest="config", action="append", default=[], metavar="KEY=VALUE", help="librdkafka setting, repeatable"
    )


def bootstrap_servers(explicit: str | None, pipeline: InferencePipeline | None) -> str:
    """The flag, else the environment, else the pipeline's; a ValueError if none is given."""
    if explicit:
        return explicit
    for name in BOOTSTRAP_ENV_VARS:
        if os.environ.get(name):
            return os.environ[name]
    if pipeline is not None:
        return pipeline.spec.kafka.bootstrap_servers
    raise ValueError("no Kafka given: pass --bootstrap-servers (or set KAFKA_BOOTSTRAP_SERVERS, or --pipeline)")


def pipeline_client_config(pipeline: InferencePipeline) -> dict[str, Any]:
    """librdkafka settings of the pipeline's spec.kafka, as the runtime builds them (security protocol, SASL and
    TLS from the mounted Secret files or env), plus ``spec.kafka.config``; a ValueError if credentials are missing.
    """
    config = common_config(pipeline, "", read_credentials(pipeline))
    config.pop("bootstrap.servers")
    config.update(pipeline.spec.kafka.config)
    return config


def parse_settings(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` → ``{"a": "1", "b": "x=y"}``; a pair without ``=`` is an error."""
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"-X {pair!r}: expected KEY=VALUE")
        settings[name] = value
    return settings


def client_config(
    bootstrap: str, pipeline_config: dict[str, Any], overrides: list[str], defaults: dict[str, str] | None = None
) -> dict[str, Any]:
    """defaults < the pipeline's settings < ``-X`` overrides, plus the bootstrap servers."""
    config: dict[str, Any] = dict(defaults or {})
    config.update(pipeline_config)
    config.update(parse_settings(overrides))
    config["bootstrap.servers"] = bootstrap
    return config


def resolve_target(args: argparse.Namespace, topic_role: str) -> tuple[str, str, dict[str, Any]]:
    """(topic, bootstrap servers, pipeline client settings) from ``--topic``/``--pipeline``/env."""
    pipeline = load_pipeline_file(args.pipeline) if getattr(args, "pipeline", None) else None
    topic = getattr(args, "topic", None)
    if not topic:
        if pipeline is None:
            raise ValueError("no topic given: pass --topic or --pipeline")
        topic = getattr(pipeline.spec.topics, topic_role).name
    bootstrap = bootstrap_servers(args.bootstrap_servers, pipeline)
    return topic, bootstrap, pipeline_client_config(pipeline) if pipeline is not None else {}
