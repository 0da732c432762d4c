"""Client-side load balancing of the tfserving predictor over every TF Serving pod (predictors/balancing.py).

The pure parts (endpoint parsing, address choice, gRPC targets, when a re-resolution changes the channel) are
tested with fakes. Then three TF Serving stand-ins (tests/tfserving/, not the real server) on 127.0.0.1-3, one
port, behind one name given by a hosts-style resolver: both first servers get Predict calls, a third added later
gets calls once the name is resolved again, and one removed gets no more. No assertion measures time: waits are
bounded polls for a state, and load spreading is checked by counting calls.
"""

from __future__ import annotations

import random
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kinfer_runtime.predictors.balancing import (
    AddressWatch,
    BalancedChannel,
    grpc_target,
    pick_addresses,
    resolve_addresses,
    split_endpoint,
)
from kinfer_runtime.predictors.tfserving import TfServingPredictor, balances_by_default
from kinfer_runtime.spec import TfServingSpec
from tests.tfserving import TfServingTestServer

MODELS = Path(__file__).resolve().parents[2] / "models"
NAME = "tfserving.kinfer.test"


def test_endpoints_split_into_host_and_port() -> None:
    assert split_endpoint("fraud-tfserving.ns1.svc:8500") == ("fraud-tfserving.ns1.svc", 8500)
    assert split_endpoint("[fd00::1]:8500") == ("fd00::1", 8500)
    for bad in ("no-port", "host:", ":8500", "host:http"):
        with pytest.raises(ValueError):
            split_endpoint(bad)


def test_addresses_are_unique_sorted_and_of_one_family() -> None:
    mixed = [("10.0.0.2", 8500), ("fd00::1", 8500), ("10.0.0.1", 8500), ("10.0.0.2", 8500)]
    assert pick_addresses(mixed) == [("10.0.0.1", 8500), ("10.0.0.2", 8500)]
    assert pick_addresses([("fd00::2", 8500), ("fd00::1", 8500)]) == [("fd00::1", 8500), ("fd00::2", 8500)]
    assert grpc_target([("10.0.0.1", 8500), ("10.0.0.2", 8500)]) == "ipv4:10.0.0.1:8500,10.0.0.2:8500"
    assert grpc_target([("fd00::1", 8500)]) == "ipv6:[fd00::1]:8500"
    with pytest.raises(ValueError):
        grpc_target([])


def test_dns_resolution_lists_every_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        assert host == NAME
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.0.7", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.0.3", port)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::7", port, 0, 0)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert resolve_addresses(NAME, 8500) == [("10.1.0.3", 8500), ("10.1.0.7", 8500)]


def test_the_watch_reports_changes_and_keeps_the_last_set_through_failures() -> None:
    answers: list[Any] = [["10.0.0.1"], ["10.0.0.1"], ["10.0.0.2", "10.0.0.1"], OSError("NXDOMAIN"), [], ["10.0.0.1"]]

    def resolve(host: str, port: int) -> list[tuple[str, int]]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return [(ip, port) for ip in answer]

    watch = AddressWatch(NAME, 8500, resolve)
    assert watch.poll() == [("10.0.0.1", 8500)]
    assert watch.poll() is None  # unchanged
    assert watch.poll() == [("10.0.0.1", 8500), ("10.0.0.2", 8500)]  # scaled out
    assert watch.poll() is None and watch.current == [("10.0.0.1", 8500), ("10.0.0.2", 8500)]  # DNS failed
    assert watch.poll() is None and watch.current == [("10.0.0.1", 8500), ("10.0.0.2", 8500)]  # no address
    assert watch.poll() == [("10.0.0.1", 8500)]  # scaled in


class FakeChannel:
    def __init__(self, target: str) -> None:
        self.target, self.closed = target, False

    def close(self) -> None:
        self.closed = True


def test_a_changed_address_set_swaps_the_channel_and_retires_the_old_one() -> None:
    hosts: dict[str, list[str]] = {NAME: []}
    made: list[FakeChannel] = []
    installed: list[FakeChannel] = []

    def factory(target: str, options: list[tuple[str, Any]]) -> FakeChannel:
        assert ("grpc.lb_policy_name", "round_robin") in options
        made.append(FakeChannel(target))
        return made[-1]

    balanced = BalancedChannel(
        f"{NAME}:8500",
        [("grpc.max_reconnect_backoff_ms", 2000)],
        installed.append,
        resolve=lambda host, port: [(ip, port) for ip in hosts[host]],
        reresolve_seconds=0,  # no thread: refresh() by hand
        retire_after_seconds=3600,
        connect_wait_seconds=0,
        channel_factory=factory,
    )
    balanced.start()
    assert installed[-1].target == f"dns:///{NAME}:8500"  # nothing resolved yet: gRPC's own DNS resolver
    hosts[NAME] = ["10.0.0.1", "10.0.0.2"]
    assert balanced.refresh() is True
    assert installed[-1].target == "ipv4:10.0.0.1:8500,10.0.0.2:8500"
    assert balanced.refresh() is False and len(made) == 2  # same set: no new channel
    hosts[NAME] = ["10.0.0.3", "10.0.0.2", "10.0.0.1"]
    assert balanced.refresh() is True
    assert installed[-1].target == "ipv4:10.0.0.1:8500,10.0.0.2:8500,10.0.0.3:8500"
    assert balanced.swaps == 2
    assert not any(channel.closed for channel in made)  # retired channels wait for calls in flight
    balanced.close()
    assert all(channel.closed for channel in made)
    assert balanced.refresh() is False


def test_which_endpoints_are_balanced() -> None:
    spec = TfServingSpec()
    assert balances_by_default("fraud-tfserving.ns1.svc:8500", spec)
    assert not balances_by_default("127.0.0.1:8500", spec)
    assert not balances_by_default("[::1]:8500", spec)
    external = TfServingSpec(endpoint="tfs.example:8500")  # spec.serving.tfserving.endpoint: one plain channel
    assert not balances_by_default("tfs.example:8500", external)


# -- three stand-ins behind one name ------------------------------------------------------------------------


def _bindable(host: str) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, 0))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("models") / "fraud"
    shutil.copytree(MODELS / "fraud" / "1", base / "1")
    return base


@pytest.fixture(scope="module")
def servers(model_dir: Path) -> Any:
    if not all(_bindable(f"127.0.0.{i}") for i in (1, 2, 3)):
        pytest.skip("127.0.0.2 and 127.0.0.3 are not usable on this machine's loopback")
    started: list[TfServingTestServer] = []
    try:
        for i in (1, 2, 3):  # one port for all, as a Service's port is the same on every pod
            port = started[0].grpc_port if started else 0
            started.append(TfServingTestServer(model_dir, "fraud", host=f"127.0.0.{i}", grpc_port=port).start())
        yield started
    finally:
        for server in started:
            server.stop()


def _inputs(rows: int) -> dict[str, np.ndarray]:
    return {"dense": np.zeros((rows, 18), np.float32), "merchant_category": np.zeros((rows, 1), np.int64)}


def _until(condition: Any, what: str, limit_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + limit_seconds  # a bound on waiting, not a measurement
    while not condition():
        assert time.monotonic() < deadline, f"still not {what}"
        time.sleep(0.05)


def _predict_until(predictor: TfServingPredictor, condition: Any, what: str, most: int = 300) -> None:
    """Predict until the condition holds (each call must succeed), at most ``most`` calls."""
    for _ in range(most):
        assert predictor.predict(_inputs(3)).outputs["fraud_probability"].shape == (3,)
        if condition():
            return
    pytest.fail(f"after {most} calls, still not {what}")


def test_calls_spread_over_every_address_and_follow_scaling(servers: list[TfServingTestServer], model_dir: Path):
    first, second, third = servers
    hosts = {NAME: ["127.0.0.1", "127.0.0.2"]}
    settings = TfServingSpec(timeout_ms=5000, max_retries=3, rest_fallback=False)
    predictor = TfServingPredictor(
        "fraud",
        f"{NAME}:{first.grpc_port}",
        settings,
        model_dir=model_dir,
        rng=random.Random(1),
        resolve=lambda host, port: [(ip, port) for ip in hosts[host]],
        reresolve_seconds=0.2,
    )
    assert predictor.balance
    predictor.load()
    try:
        assert predictor.ready()
        calls = [server.predict_calls for server in servers]
        _predict_until(
            predictor,
            lambda: first.predict_calls > calls[0] and second.predict_calls > calls[1],
            "answered by both servers",
        )
        assert third.predict_calls == calls[2]  # not in the name yet

        assert predictor.balancer is not None
        swaps = predictor.balancer.swaps
        hosts[NAME].append("127.0.0.3")  # scaled out
        _until(lambda: predictor.balancer is not None and predictor.balancer.swaps > swaps, "re-resolved")
        before = third.predict_calls
        _predict_until(predictor, lambda: third.predict_calls > before, "answered by the added server")

        swaps = predictor.balancer.swaps
        hosts[NAME].remove("127.0.0.1")  # scaled in
        _until(lambda: predictor.balancer is not None and predictor.balancer.swaps > swaps, "re-resolved")
        dropped = first.predict_calls
        counts = [second.predict_calls, third.predict_calls]
        for _ in range(30):
            predictor.predict(_inputs(2))
        assert first.predict_calls == dropped
        assert second.predict_calls > counts[0] and third.predict_calls > counts[1]
    finally:
        predictor.close()
