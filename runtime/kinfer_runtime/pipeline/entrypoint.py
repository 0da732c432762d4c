"""``kinfer run PIPELINE.yaml``: run one InferencePipeline's consumer (locally, or as the container entrypoint).

Reads the manifest through the shared spec model, applies env and CLI overrides (CLI wins; docs/runtime.md),
serves ``/metrics``, ``/healthz`` and ``/readyz``, and runs the loop until SIGTERM or SIGINT, which stop fetching,
finish the batch in hand, flush, commit and close. Exit status: 0 after a clean stop, 1 on a fatal error, 2 for
a manifest that can't work.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import yaml

from kinfer_runtime.observability.health import HealthServer, LoopState
from kinfer_runtime.observability.logs import configure_logging, fields
from kinfer_runtime.observability.metrics import RuntimeMetrics
from kinfer_runtime.pipeline.runner import RunOptions, build_loop_parts, run_pipeline
from kinfer_runtime.spec import InferencePipeline, SpecError, parse_pipeline

log = logging.getLogger("kinfer.app")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kinfer run", description="Run an InferencePipeline's consumer.")
    parser.add_argument("pipeline", type=Path, help="InferencePipeline manifest (YAML)")
    parser.add_argument(
        "--bootstrap-servers", help="overrides spec.kafka.bootstrapServers (env KINFER_BOOTSTRAP_SERVERS)"
    )
    parser.add_argument("--model-path", type=Path, help="local model directory <dir>/<version>/saved_model.pb")
    parser.add_argument("--metrics-port", type=int, help="overrides spec.monitoring.metricsPort")
    parser.add_argument("--pod-name", help="static group membership id (env KINFER_POD_NAME)")
    parser.add_argument("--tfserving-endpoint", help="host:port of TF Serving (env KINFER_TFSERVING_ENDPOINT)")
    return parser.parse_args(argv)


def load_pipeline(path: Path) -> InferencePipeline:
    manifest = yaml.safe_load(path.read_text())
    if not isinstance(manifest, dict):
        raise SpecError([f"{path}: expected an InferencePipeline manifest (a YAML mapping)"])
    return parse_pipeline(manifest)


def resolve_options(args: argparse.Namespace, env: Mapping[str, str]) -> RunOptions:
    """CLI flags win over environment variables; unset ones fall back to the manifest (in the runner)."""
    return RunOptions(
        bootstrap_servers=args.bootstrap_servers or env.get("KINFER_BOOTSTRAP_SERVERS") or None,
        pod_name=args.pod_name or env.get("KINFER_POD_NAME") or None,
        model_path=args.model_path,
        tfserving_endpoint=args.tfserving_endpoint or env.get("KINFER_TFSERVING_ENDPOINT") or None,
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    configure_logging("INFO", component="runtime")
    try:
        pipeline = load_pipeline(args.pipeline)
    except (OSError, yaml.YAMLError, SpecError) as error:
        log.error("invalid pipeline manifest", extra=fields(path=str(args.pipeline), error=error))
        print(f"kinfer run: {args.pipeline}: {error}", file=sys.stderr)
        return 2
    meta = pipeline.metadata
    configure_logging(
        pipeline.spec.monitoring.log_level, component="runtime", pipeline=meta.name, namespace=meta.namespace
    )

    options = resolve_options(args, os.environ)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received: stopping", extra=fields(signal=signal.Signals(signum).name))
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    state = LoopState()
    metrics = RuntimeMetrics(meta.namespace, meta.name)
    port = args.metrics_port if args.metrics_port is not None else pipeline.spec.monitoring.metrics_port
    server = HealthServer(port, state, metrics.registry).start()
    log.info("serving /metrics /healthz /readyz", extra=fields(port=server.port))
    try:
        parts = build_loop_parts(pipeline, options, metrics=metrics, state=state)
        if stop.is_set():
            return 0
        counters = run_pipeline(parts, stop)
    except Exception:
        log.exception("pipeline failed")
        return 1
    finally:
        server.stop()
    log.info(
        "exiting",
        extra=fields(
            records_in=counters.records_in, records_out=counters.records_out, dead_lettered=counters.dead_lettered
        ),
    )
    return 0
