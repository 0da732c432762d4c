"""Moved to the package ``tests.tfserving`` (a test stand-in for TF Serving, not the real server); this name
stays for existing callers. ``python -m tests.tfserving_server`` takes tensorflow_model_server's flags."""

from tests.tfserving import ConfigError, ServingError, StartError, TfServingTestServer
from tests.tfserving.cli import main

__all__ = ["ConfigError", "ServingError", "StartError", "TfServingTestServer", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
