"""``kinfer operator``: run the operator (kopf, in-process) with its metrics and health server, the periodic resync
and autoscaling (the lag monitor and the external metrics API).

The same entry point serves the container image and local runs against any kubeconfig. kopf keeps its
progress and diff-base in ``kinfer.io/*`` annotations (not in status, which stays the operator's own API),
posts only warnings from its own logs as Events (the reconcile posts the Events that matter itself), and
uses the ``kinfer.io/finalizer`` finalizer. Peered replicas get distinct kopf priorities (kopf pauses *every*
operator that sees a peer of the same priority), and with only exact ``--namespace`` names kopf's cluster
scanning (listing namespaces and CRDs, which a namespaced identity may not do) is switched off. Flags and
metrics are described in docs/operator.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import kopf
from kubernetes import client, config

from kinfer_operator import __version__, metrics
from kinfer_operator.autoscaling import service as autoscaling
from kinfer_operator.builders import naming
from kinfer_operator.builders.network_policy import NetworkPolicies, parse_peers
from kinfer_operator.handlers import HandlerOptions, register
from kinfer_operator.k8s.client import Kube
from kinfer_operator.k8s.peering import ActiveReplica
from kinfer_operator.metrics import serve_http
from kinfer_operator.reconcile import Passes, Services
from kinfer_operator.resync import Resync
from kinfer_operator.status.preflight import AccessPolicy
from kinfer_runtime.observability.logs import configure_logging

logger = logging.getLogger("kinfer_operator")


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: list[str] = field(default_factory=list)
    all_namespaces: bool = False
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8080
    external_metrics_port: int = 6443
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    peering: str | None = None
    standalone: bool = False
    priority: int = 0
    lag_poll_seconds: float = 5.0
    reconcile_seconds: float = 30.0
    delete_give_up_seconds: float = 120.0
    access: AccessPolicy = field(default_factory=AccessPolicy)
    network_policies: NetworkPolicies | None = None


def parse_args(argv: list[str]) -> OperatorOptions:
    parser = argparse.ArgumentParser(prog="kinfer operator", description="Run the kinfer Kubernetes operator.")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument("--metrics-host", default="0.0.0.0", help="address of the /metrics and /healthz server")
    parser.add_argument("--metrics-port", type=int, default=8080)
    parser.add_argument("--external-metrics-port", type=int, default=6443)
    parser.add_argument("--tls-cert-file")
    parser.add_argument("--tls-key-file")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument("--peering", help="KopfPeering name, for several operator replicas (one active)")
    peering.add_argument("--standalone", action="store_true", help="no peering: this is the only operator")
    parser.add_argument(
        "--priority",
        type=int,
        help="kopf peering priority: the live peer with the highest one reconciles, the others stand by "
        f"(default: random in 1..{MAX_RANDOM_PRIORITY} unless --standalone, so replicas never tie)",
    )
    parser.add_argument("--lag-poll-seconds", type=float, default=5.0)
    parser.add_argument(
        "--reconcile-seconds", type=float, default=30.0, help="period of the drift-correcting reconcile timer"
    )
    parser.add_argument(
        "--delete-give-up-seconds",
        type=float,
        default=120.0,
        help="how long deletion retries an unreachable Kafka before keeping the topics",
    )
    parser.add_argument(
        "--allowed-bootstrap",
        action="append",
        default=[],
        help="host:port (with * wildcards) of a Kafka cluster pipelines may make the operator connect to "
        "(repeatable; none: any)",
    )
    parser.add_argument(
        "--allowed-connect-url",
        action="append",
        default=[],
        help="URL prefix of a Kafka Connect REST API pipelines may make the operator call (repeatable; none: only a "
        "Service in the pipeline's own namespace)",
    )
    parser.add_argument(
        "--secret-label", default="", help="label (key or key=value) every Secret a pipeline names must carry"
    )
    parser.add_argument(
        "--network-policies",
        action="store_true",
        help="give every pipeline's consumer and TF Serving pods a NetworkPolicy that admits only what they serve "
        "(needs get, list, create, patch, delete on networkpolicies)",
    )
    parser.add_argument(
        "--network-policy-metrics-from",
        metavar="JSON",
        help="with --network-policies: who may reach the pods' metrics ports, a JSON list of NetworkPolicyPeer "
        "objects (default: any source)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    network_policies = None
    if args.network_policy_metrics_from is not None and not args.network_policies:
        parser.error("--network-policy-metrics-from needs --network-policies")
    if args.network_policies:
        try:
            network_policies = NetworkPolicies(parse_peers(args.network_policy_metrics_from or "[]"))
        except ValueError as error:
            parser.error(f"--network-policy-metrics-from: {error}")
    configure_logging(args.log_level, component="operator")
    return OperatorOptions(
        namespaces=args.namespace,
        all_namespaces=args.all_namespaces or not args.namespace,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        external_metrics_port=args.external_metrics_port,
        tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_key_file,
        peering=args.peering,
        standalone=args.standalone,
        priority=default_priority(args.priority, args.standalone),
        lag_poll_seconds=args.lag_poll_seconds,
        reconcile_seconds=args.reconcile_seconds,
        delete_give_up_seconds=args.delete_give_up_seconds,
        access=AccessPolicy(tuple(args.allowed_bootstrap), tuple(args.allowed_connect_url), args.secret_label),
        network_policies=network_policies,
    )


MAX_RANDOM_PRIORITY = 2**31


def default_priority(given: int | None, standalone: bool) -> int:
    """The given priority, else a random one for a peered process (two equal ones would both pause).

    Without --standalone kopf peers even without --peering (through a "default" peering object if one exists).
    """
    if given is not None:
        return given
    return 0 if standalone else random.SystemRandom().randint(1, MAX_RANDOM_PRIORITY)


def exact_namespaces(options: OperatorOptions) -> bool:
    """Whether the operator watches only namespaces named exactly (no kopf glob, negation or list pattern).

    Then kopf needs no namespace listing to expand patterns; its CRD watch only notices CRDs added later,
    which the operator doesn't need (it serves one resource, discovered at start).
    """
    return (
        not options.all_namespaces
        and bool(options.namespaces)
        and not any(any(mark in ns for mark in "!*?,") for ns in options.namespaces)
    )


def kube_client() -> Kube:
    """In-cluster credentials when running in a pod, else the kubeconfig (``KUBECONFIG`` or ~/.kube/config)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = 32  # kopf runs sync handlers on a thread pool
    return Kube(client.ApiClient(configuration))


def operator_settings(options: OperatorOptions) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=naming.ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=naming.ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = naming.FINALIZER
    # kopf would post an Event for every handler run ("Timer succeeded"): API writes on every idle pass.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 16
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.peering.standalone = options.standalone
    settings.peering.priority = options.priority
    # Otherwise kopf retries listing namespaces and CRDs (refused to a namespaced identity) for about a minute
    # before falling back to the exact namespaces, logging 403s all along.
    settings.scanning.disabled = exact_namespaces(options)
    if options.peering:
        settings.peering.name = options.peering
        settings.peering.mandatory = True
    return settings


def peering_name(options: OperatorOptions) -> str | None:
    """The peering object kopf meets its peers in: None when standalone; kopf's "default" when none is named."""
    if options.standalone:
        return None
    return options.peering or "default"


def build_registry(
    options: OperatorOptions, kube: Kube
) -> tuple[kopf.OperatorRegistry, Resync, Callable[[], tuple[bool, str]]]:
    """The kopf registry with every handler, the resync (started by ``run``), sharing one set of services, and the
    readiness answer of ``/readyz``."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: object) -> kopf.ConnectionInfo | None:
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    active = ActiveReplica(kube, peering_name(options), options.priority, list(options.namespaces))
    service = autoscaling.start(options, registry, kube, active.active)
    runtime_image = os.environ.get("KINFER_RUNTIME_IMAGE") or naming.DEFAULT_RUNTIME_IMAGE  # the chart's runtimeImage
    passes = Passes(
        Services(
            kube,
            monitor=service.monitor,
            runtime_image=runtime_image,
            access=options.access,
            network_policies=options.network_policies,
        )
    )
    register(registry, passes, HandlerOptions(options.delete_give_up_seconds))
    resync = Resync(passes.services, passes, active, [] if options.all_namespaces else options.namespaces,
                    options.reconcile_seconds, track_s=options.lag_poll_seconds)  # fmt: skip
    return registry, resync, service.ready


async def run(options: OperatorOptions) -> None:
    kube = kube_client()
    registry, resync, ready = build_registry(options, kube)
    server = serve_http(options.metrics_host, options.metrics_port, ready)
    metrics.OPERATOR_INFO.labels(__version__).set(1)
    resync.start()
    logger.info("metrics and health on %s:%d", *server.server_address[:2])
    if not options.standalone:
        logger.info("peering priority %d", options.priority)
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, request_stop)
    try:
        await kopf.operator(
            registry=registry,
            settings=operator_settings(options),
            standalone=options.standalone,
            peering_name=options.peering,
            clusterwide=options.all_namespaces,
            namespaces=options.namespaces,
            stop_flag=stop,
        )
    finally:
        resync.stop()
        server.shutdown()


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    asyncio.run(run(options))
    return 0
