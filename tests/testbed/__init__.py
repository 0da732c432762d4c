"""kinfer's local test bed: a real Kafka broker and a real Kubernetes control plane on loopback.

Built from the registries this machine reaches (``build.sh``: Maven Central and the Go module proxy), started
by :class:`TestBed` for ``make testbed-up`` and for the pytest session fixtures alike.
"""

from .bed import DEFAULT_ROOT, REPO_ROOT, TestBed, component_dir
from .kafka import KafkaBroker
from .process import StartError, free_port

__all__ = ["DEFAULT_ROOT", "REPO_ROOT", "KafkaBroker", "StartError", "TestBed", "component_dir", "free_port"]
