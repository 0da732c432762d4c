"""`apply_children` and a Service field fixed once set: a pipeline's own TF Serving Service made with a cluster IP
is deleted and created headless; a Service the pipeline does not own is never deleted, the refusal is reported.

The API's refusal (422, "may not change once set") is reproduced by a small stand-in of ``Kube.request`` with the
message kube-apiserver gives (builders/tfserving.py quotes it).
"""

from __future__ import annotations

from typing import Any

from kinfer_operator.builders import naming
from kinfer_operator.k8s.children import apply_children
from kinfer_operator.k8s.client import KubeError, object_path
from kinfer_operator.status.document import Event
from kinfer_operator.status.reasons import ConditionType
from tests.operator.fake_cluster import FakeKube

NS, UID = "team-a", "uid-1"
PATH = object_path("v1", "Service", NS, "fraud-tfserving")


class ImmutableClusterIp(FakeKube):
    """Refuses an apply that changes a live Service's clusterIP, as kube-apiserver does."""

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any] | None:
        live = self.objects.get(path)
        changed = live is not None and live["spec"].get("clusterIP") != (body or {}).get("spec", {}).get("clusterIP")
        if method == "PATCH" and changed:
            self.requests[method] += 1
            message = 'Service "fraud-tfserving" is invalid: spec.clusterIPs[0]: Invalid value: ["None"]: '
            raise KubeError(422, message + "may not change once set")
        return super().request(method, path, body=body, content_type=content_type, query=query)


def service(cluster_ip: str, owner_uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "fraud-tfserving",
            "namespace": NS,
            "labels": {naming.LABEL_COMPONENT: naming.COMPONENT_TFSERVING},
            "ownerReferences": [{"uid": owner_uid}],
        },
        "spec": {"clusterIP": cluster_ip, "ports": [{"name": "grpc", "port": 8500}]},
    }


def test_an_owned_service_with_a_cluster_ip_is_recreated_headless() -> None:
    kube = ImmutableClusterIp()
    kube.put(PATH, service("10.96.0.17", UID))
    events: list[Event] = []
    applied, failed = apply_children(kube, [service("None", UID)], {}, events)  # type: ignore[arg-type]
    assert failed == {}
    assert applied == {"Service/fraud-tfserving": "recreated"}
    assert kube.objects[PATH]["spec"]["clusterIP"] == "None"
    assert ("DELETE", PATH) in kube.log
    assert any("Service/fraud-tfserving" in event.message for event in events)


def test_a_service_owned_by_something_else_is_not_deleted() -> None:
    kube = ImmutableClusterIp()
    kube.put(PATH, service("10.96.0.17", "someone-else"))
    applied, failed = apply_children(kube, [service("None", UID)], {}, [])  # type: ignore[arg-type]
    assert applied == {}
    assert "may not change once set" in failed[ConditionType.SERVING_READY]
    assert kube.objects[PATH]["spec"]["clusterIP"] == "10.96.0.17"
    assert ("DELETE", PATH) not in kube.log
