"""Client-side load balancing over every TF Serving pod: gRPC ``round_robin`` across the addresses a name
resolves to, re-resolved in the background.

One gRPC channel to a ClusterIP Service holds one HTTP/2 connection, which kube-proxy pins to one pod: extra TF
Serving replicas would get no load. The operator's TF Serving Service is headless, so its name resolves to the
ready pods' addresses. This module resolves the name itself, opens a channel over those addresses
(``ipv4:a:port,b:port``) with gRPC's ``round_robin`` policy (one connection per pod, calls spread in turn, a pod
that fails is skipped), and resolves again every ``RERESOLVE_SECONDS`` on a daemon thread. When the set of
addresses changes (pods added by scaling out, pods gone), a new channel over the new set is opened, given a
moment to connect, and swapped in; the old one is closed once calls in flight on it are past their deadline. The
hot path only reads the current stub: no DNS lookup, no lock.

gRPC's own ``dns:///`` resolver is not enough on its own: it resolves again only when a connection fails, so
pods added while all connections are healthy would never be called. It is used only until the first resolution
here succeeds (e.g. no pod is ready yet and the name resolves to nothing).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import grpc

log = logging.getLogger(__name__)

RERESOLVE_SECONDS = 15.0  # how often the name is resolved again (CoreDNS answers headless names with a 5 s TTL)
CONNECT_WAIT_SECONDS = 5.0  # how long a new channel may take to connect before it is swapped in anyway
ROUND_ROBIN = ("grpc.lb_policy_name", "round_robin")

Address = tuple[str, int]
Resolver = Callable[[str, int], list[Address]]


def split_endpoint(endpoint: str) -> Address:
    """``host:port`` or ``[v6 address]:port`` → (host, port)."""
    host, separator, port = endpoint.rpartition(":")
    if not separator or not port.isdigit() or not host:
        raise ValueError(f"TF Serving endpoint {endpoint!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def pick_addresses(addresses: list[Address]) -> list[Address]:
    """Unique and sorted, IPv4 only when there is any (one gRPC target holds one address family)."""
    unique = sorted(set(addresses))
    v4 = [a for a in unique if ipaddress.ip_address(a[0]).version == 4]
    return v4 or unique


def resolve_addresses(host: str, port: int) -> list[Address]:
    """Every address the name resolves to now (blocking DNS: never call it on the hot path)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return pick_addresses([(str(info[4][0]), port) for info in infos])


def grpc_target(addresses: list[Address]) -> str:
    """gRPC's static-address target for one address family: ``ipv4:a:p,b:p`` or ``ipv6:[a]:p,[b]:p``."""
    if not addresses:
        raise ValueError("no address to call")
    if ipaddress.ip_address(addresses[0][0]).version == 4:
        return "ipv4:" + ",".join(f"{host}:{port}" for host, port in addresses)
    return "ipv6:" + ",".join(f"[{host}]:{port}" for host, port in addresses)


class AddressWatch:
    """Pure bookkeeping of one name's address set: ``poll()`` resolves once and says whether the set changed.

    A failed or empty resolution keeps the last known set (a DNS hiccup or a moment with no ready pod must not
    tear down working connections); it is logged once per streak of failures.
    """

    def __init__(self, host: str, port: int, resolve: Resolver) -> None:
        self.host, self.port, self.resolve = host, port, resolve
        self.current: list[Address] | None = None
        self.failing = False

    def poll(self) -> list[Address] | None:
        """The new address list when it differs from the current one (it becomes current), else None."""
        try:
            found = pick_addresses(self.resolve(self.host, self.port))
        except OSError as error:
            found, reason = [], repr(error)
        else:
            reason = "no address"
        if not found:
            if not self.failing:
                log.warning("TF Serving name %s resolves to nothing (%s); keeping %s", self.host, reason, self.current)
            self.failing = True
            return None
        self.failing = False
        if found == self.current:
            return None
        self.current = found
        return found


class BalancedChannel:
    """The current round-robin channel to a name's addresses; ``on_channel`` gets each new channel.

    ``start()`` resolves synchronously once and starts the re-resolving thread; ``refresh()`` is one
    re-resolution (what the thread runs every ``reresolve_seconds``); ``close()`` stops the thread and closes
    every channel. ``channel_factory(target, options)`` is ``grpc.insecure_channel`` (a seam for tests).
    """

    def __init__(
        self,
        endpoint: str,
        options: list[tuple[str, Any]],
        on_channel: Callable[[Any], None],
        *,
        resolve: Resolver = resolve_addresses,
        reresolve_seconds: float = RERESOLVE_SECONDS,
        retire_after_seconds: float = 5.0,
        connect_wait_seconds: float = CONNECT_WAIT_SECONDS,
        channel_factory: Callable[[str, list[tuple[str, Any]]], Any] | None = None,
    ) -> None:
        host, port = split_endpoint(endpoint)
        self.endpoint = endpoint
        self.watch = AddressWatch(host, port, resolve)
        self.options = [*options, ROUND_ROBIN]
        self.on_channel = on_channel
        self.reresolve_seconds = reresolve_seconds
        self.retire_after_seconds = retire_after_seconds
        self.connect_wait_seconds = connect_wait_seconds
        self.channel_factory = channel_factory or (lambda target, opts: grpc.insecure_channel(target, options=opts))
        self.channel: Any = None
        self.target = ""
        self.swaps = 0
        self._retiring: list[tuple[Any, threading.Timer]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one refresh or close at a time
        self._thread: threading.Thread | None = None

    def start(self) -> Any:
        """Open the first channel (over the resolved addresses, else gRPC's DNS resolver) and start watching."""
        addresses = self.watch.poll()
        target = grpc_target(addresses) if addresses else f"dns:///{self.endpoint}"
        with self._lock:
            self._install(self.channel_factory(target, self.options), target)
        if self.reresolve_seconds > 0:
            self._thread = threading.Thread(target=self._run, name="tfserving-resolve", daemon=True)
            self._thread.start()
        return self.channel

    def refresh(self) -> bool:
        """Resolve once; on a new address set, connect a new channel and swap it in. True when swapped."""
        addresses = self.watch.poll()
        if addresses is None or self._stop.is_set():
            return False
        target = grpc_target(addresses)
        channel = self.channel_factory(target, self.options)
        if self.connect_wait_seconds > 0:
            ready = grpc.channel_ready_future(channel)
            try:
                ready.result(timeout=self.connect_wait_seconds)
            except grpc.FutureTimeoutError:
                ready.cancel()
                log.warning("no TF Serving pod of %s connected within %.0f s; using it anyway", target,
                            self.connect_wait_seconds)  # fmt: skip
        with self._lock:
            if self._stop.is_set():
                channel.close()
                return False
            self._install(channel, target)
        return True

    def _install(self, channel: Any, target: str) -> None:
        old, self.channel, self.target = self.channel, channel, target
        self.on_channel(channel)
        if old is not None:
            self.swaps += 1
            log.info("TF Serving %s now at %s", self.endpoint, target)
            timer = threading.Timer(self.retire_after_seconds, old.close)  # calls in flight finish first
            timer.daemon = True
            timer.start()
            self._retiring = [(c, t) for c, t in self._retiring if t.is_alive()] + [(old, timer)]

    def _run(self) -> None:
        while not self._stop.wait(self.reresolve_seconds):
            try:
                self.refresh()
            except Exception:  # the watch must outlive any one failure
                log.exception("re-resolving TF Serving %s failed", self.endpoint)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.connect_wait_seconds + 5)
        with self._lock:
            for channel, timer in self._retiring:
                timer.cancel()
                channel.close()
            self._retiring.clear()
            if self.channel is not None:
                self.channel.close()
                self.channel = None
