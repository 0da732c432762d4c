"""`kinfer operator` options → kopf settings: distinct peering priorities, no cluster scanning for exact namespaces."""

from __future__ import annotations

import pytest

from kinfer_operator.main import MAX_RANDOM_PRIORITY, exact_namespaces, operator_settings, parse_args


def test_peered_replicas_get_distinct_random_priorities_unless_given() -> None:
    priorities = {parse_args(["--peering", "kinfer"]).priority for _ in range(20)}
    assert len(priorities) > 1, "two replicas of the chart (same args) must not tie"
    assert all(1 <= p <= MAX_RANDOM_PRIORITY for p in priorities)
    assert {parse_args([]).priority for _ in range(20)} - {0}, "kopf may peer without --peering too"
    assert parse_args(["--peering", "kinfer", "--priority", "7"]).priority == 7
    assert parse_args(["--standalone"]).priority == 0
    assert operator_settings(parse_args(["--peering", "kinfer", "--priority", "42"])).peering.priority == 42


@pytest.mark.parametrize(
    ("args", "exact"),
    [
        (["--namespace", "team-a"], True),
        (["-n", "team-a", "-n", "team-b"], True),
        (["--namespace", "team-*"], False),
        (["--namespace", "!kube-system"], False),
        (["--namespace", "team-a,team-b"], False),
        (["--namespace", "team-?"], False),
        (["--all-namespaces"], False),
        ([], False),
    ],
)
def test_cluster_scanning_is_off_only_for_exact_namespaces(args: list[str], exact: bool) -> None:
    options = parse_args(args)
    assert exact_namespaces(options) is exact
    assert operator_settings(options).scanning.disabled is exact


def test_readyz_is_false_while_the_metrics_api_cannot_serve() -> None:
    import urllib.error
    import urllib.request

    from kinfer_operator.autoscaling.monitor import LagMonitor
    from kinfer_operator.autoscaling.service import AutoscalingService
    from kinfer_operator.metrics import serve_http

    broken = AutoscalingService(LagMonitor(None), server=None, serving_wanted=True)
    assert broken.ready() == (False, "the external metrics API did not start (see the log)")
    assert AutoscalingService(LagMonitor(None), server=None).ready() == (True, "ok"), "not asked to serve: ready"
    server = serve_http("127.0.0.1", 0, broken.ready)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/readyz", timeout=5)
        assert refused.value.code == 503 and b"did not start" in refused.value.read()
        assert urllib.request.urlopen(f"{url}/healthz", timeout=5).status == 200, "alive all the same"
    finally:
        server.shutdown()
