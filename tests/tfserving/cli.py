"""``python -m tests.tfserving``: the stand-in started like ``tensorflow_model_server``, with its flags.

Takes the flags the operator passes (``tfserving_args`` in operator/kinfer_operator/builders/tfserving.py) in TF
Serving's spelling, ``--flag=value`` or ``--flag value``, booleans also bare:

  --port --rest_api_port --model_config_file --model_config_file_poll_wait_seconds --monitoring_config_file
  --enable_model_warmup --enable_batching --batching_parameters_file --model_name --model_base_path
  --file_system_poll_wait_seconds

Flags of TF Serving that only tune the real server (threads, load retries, session parallelism, ...) are
accepted and ignored; any other flag is refused, as tensorflow_model_server refuses an unknown flag. The checks
and messages of server.cc come first (a gRPC port, a model, no batching file without --enable_batching); then
every config file is parsed with TF Serving's protos, and a file that does not parse ends the process with exit
code 255 (tensorflow_model_server's main returns -1) and "Failed to start server. Error: ..." naming the file
and protobuf's parse error. Unlike TF Serving, which reads the monitoring file after loading the models, the
stand-in reads all files first. ``--rest_api_port=0`` (TF Serving's default) means no REST API.
``--enable_model_warmup`` is accepted, but warm-up records (assets.extra/tf_serving_warmup_requests) are not
replayed. Binds 0.0.0.0, as TF Serving does. Ends cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from tests.tfserving import config as cfg
from tests.tfserving.protos import batching_parameters_class
from tests.tfserving.server import StartError, TfServingTestServer

IGNORED_FLAGS = (
    "rest_api_num_threads", "rest_api_timeout_in_ms", "num_load_threads", "num_unload_threads",
    "max_num_load_retries", "load_retry_interval_micros", "tensorflow_session_parallelism",
    "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism", "saved_model_tags",
    "grpc_channel_arguments", "enable_signature_method_name_check", "xla_cpu_compilation_enabled",
    "per_process_gpu_memory_fraction", "allow_version_labels_for_unavailable_models", "enable_model_warmup",
)  # fmt: skip
EXIT_FAILED_START = 255


def _flag_bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value!r}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tensorflow_model_server (kinfer test stand-in)",
        description="A test stand-in for TensorFlow Serving: not the real server.",
    )
    p.add_argument("--port", type=int, default=8500)
    p.add_argument("--rest_api_port", "--rest-port", dest="rest_api_port", type=int, default=0)
    p.add_argument("--model_name", "--model-name", dest="model_name", default="default")
    p.add_argument("--model_base_path", "--model-base-path", dest="model_base_path", default="")
    p.add_argument("--model_config_file", default="")
    p.add_argument("--model_config_file_poll_wait_seconds", type=int, default=0)
    p.add_argument("--file_system_poll_wait_seconds", type=int, default=1)
    p.add_argument("--monitoring_config_file", default="")
    p.add_argument("--enable_batching", type=_flag_bool, nargs="?", const=True, default=False)
    p.add_argument("--batching_parameters_file", default="")
    p.add_argument("--grpc_socket_path", default="")
    for flag in IGNORED_FLAGS:
        p.add_argument(f"--{flag}", nargs="?", const="true", default=None, help=argparse.SUPPRESS)
    return p


def build_server(args: argparse.Namespace) -> TfServingTestServer:
    """The server the flags describe; raises StartError or ConfigError as tensorflow_model_server would fail."""
    if args.grpc_socket_path:
        raise StartError("--grpc_socket_path is not supported by this stand-in")
    if args.port == 0:
        raise StartError("At least one of server_options.grpc_port or server_options.grpc_socket_path must be set.")
    if not args.model_base_path and not args.model_config_file:
        raise StartError("Both server_options.model_base_path and server_options.model_config_file are empty!")
    batching = None
    if args.enable_batching:  # without a file, TF Serving batches with the scheduler's defaults
        file = args.batching_parameters_file
        batching = cfg.read_batching_parameters(file) if file else batching_parameters_class()()
    elif args.batching_parameters_file:
        raise StartError(
            "server_options.batching_parameters_file is set without setting server_options.enable_batching to true."
        )
    rest_port: int | None = args.rest_api_port or None
    if rest_port == args.port:
        logging.error("server_options.http_port cannot be same as grpc_port. Skipped exporting HTTP/REST API.")
        rest_port = None
    monitoring = cfg.read_monitoring_config(args.monitoring_config_file) if args.monitoring_config_file else None
    return TfServingTestServer(
        args.model_base_path or None,
        args.model_name,
        grpc_port=args.port,
        rest_port=rest_port,
        host="0.0.0.0",
        model_config_file=args.model_config_file or None,
        model_config_poll_seconds=args.model_config_file_poll_wait_seconds,
        batching=batching,
        monitoring=monitoring,
        file_system_poll_seconds=args.file_system_poll_wait_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s tfserving-standin: %(message)s")
    args = parser().parse_args(argv)
    ignored = [flag for flag in IGNORED_FLAGS if getattr(args, flag) is not None]
    if ignored:
        logging.info("accepted and ignored by the stand-in: %s", ", ".join(f"--{f}" for f in ignored))
    stopped = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if not stopped.is_set() and started.is_set():
            stopped.set()
        else:  # still loading or waiting for a model version: leave at once
            raise SystemExit(128 + signum)

    started = threading.Event()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = build_server(args).start(wait_seconds=None)
    except (StartError, cfg.ConfigError) as error:
        print(f"Failed to start server. Error: {error}", file=sys.stderr, flush=True)
        return EXIT_FAILED_START
    started.set()
    versions = {name: server.manager.available_versions(name) for name in server.manager.model_names()}
    logging.info("Running gRPC ModelServer at 0.0.0.0:%d ...", server.grpc_port)
    if server.rest_port is not None:
        logging.info("Exporting HTTP/REST API at:0.0.0.0:%d ...", server.rest_port)
    logging.info("serving %s (a test stand-in for TF Serving, not the real server)", versions)
    stopped.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
