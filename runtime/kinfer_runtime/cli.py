"""The ``kinfer`` command: one entry point for the runtime, the operator and the data tools.

Each subcommand lives in its own module with a ``main(argv) -> int``; this file only dispatches, importing the
module lazily so that ``kinfer produce`` does not pay for TensorFlow and the runtime image needs no kopf.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "kinfer_runtime.pipeline.entrypoint",
        "run an InferencePipeline's consumer (locally or as the container entrypoint)",
    ),
    "operator": ("kinfer_operator.main", "run the Kubernetes operator"),
    "produce": ("kinfer_runtime.tools.produce", "send JSONL or CSV records to a topic"),
    "replay": ("kinfer_runtime.tools.replay", "re-inject dead-lettered records into the input topic"),
    "score": ("kinfer_runtime.tools.score", "score a file or a topic range with a pipeline's preprocessing and model"),
    "demo": ("kinfer_runtime.tools.demo", "run the fraud-detection demo on a local broker"),
    "kafka": ("kinfer_runtime.tools.local_kafka", "run a single-node Kafka broker on this machine"),
    "crdgen": (
        "kinfer_operator.crd.generate",
        "print or write the InferencePipeline CRD (from the spec model)",
    ),
}


def version() -> str:
    """The installed distribution's version (pyproject.toml), the same for every part of kinfer."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("kinfer")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def usage() -> str:
    lines = ["usage: kinfer COMMAND [ARGS...]   |   kinfer --version", "", "commands:"]
    lines += [f"  {name:<10} {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    lines += ["", "kinfer COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("--version", "version"):
        print(f"kinfer {version()}")
        return 0
    command, rest = args[0], args[1:]
    if command not in SUBCOMMANDS:
        print(f"kinfer: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[command][0])
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())
