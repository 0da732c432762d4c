"""One reconcile pass at a time, against in-memory Kubernetes and Kafka (tests/operator/fake_cluster.py).

What is checked is the pass's own logic: what it creates on a first pass, that an idle pass writes nothing, that
an invalid spec creates nothing, that drift is restored and that a spec change prunes what is no longer wanted.
The same flows run against the real API server and broker in test_lifecycle.py.
"""

from __future__ import annotations

import copy
from typing import Any

from kinfer_operator.builders import naming
from kinfer_operator.builders.network_policy import NetworkPolicies
from kinfer_operator.k8s.client import object_path
from kinfer_operator.reconcile import Outcome, Services, reconcile
from tests.operator.fake_cluster import FakeKube, FakeTopics
from tests.operator.pipelines import FRAUD, SENSOR, deep_update, sample_manifest

NS = "team-a"


def body(path: Any = FRAUD, generation: int = 1, **spec_changes: Any) -> dict[str, Any]:
    manifest = sample_manifest(path)
    manifest["metadata"].update(namespace=NS, uid="uid-1", generation=generation)
    manifest["spec"]["kafka"] = {"bootstrapServers": "kafka.kafka.svc:9092"}  # no Secrets to look up
    manifest["spec"]["model"]["uri"] = "file:///opt/kinfer/models/" + manifest["spec"]["model"]["name"]
    manifest["spec"]["model"].pop("storageSecret", None)
    deep_update(manifest["spec"], spec_changes)
    return manifest


class Cluster:
    def __init__(self) -> None:
        self.kube, self.topics = FakeKube(), FakeTopics()
        self.services = Services(self.kube, topic_admin=lambda _kube, _pipeline: self.topics)  # type: ignore[arg-type]

    def run(self, pipeline: dict[str, Any]) -> Outcome:
        outcome = reconcile(self.services, pipeline)
        status = pipeline.setdefault("status", {})
        for key, value in outcome.status_patch.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
        return outcome

    def deployment(self, name: str) -> dict[str, Any]:
        return self.kube.objects[object_path("apps/v1", "Deployment", NS, name)]

    def roll_out(self, name: str) -> None:
        """What the Deployment controller and kubelets do: every replica updated and available."""
        deployment = self.deployment(name)
        replicas = deployment["spec"].get("replicas", 1)
        deployment["status"] = {"replicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas,
                                "observedGeneration": 1}  # fmt: skip
        deployment["metadata"]["generation"] = 1


def conditions(pipeline: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in pipeline["status"]["conditions"]}


def test_a_first_pass_creates_topics_and_children_then_an_idle_pass_writes_nothing() -> None:
    cluster, pipeline = Cluster(), body()
    first = cluster.run(pipeline)
    assert sorted(cluster.topics.topics) == ["transactions", "transactions-dlq", "transactions-scored"]
    assert {"ConfigMap/fraud-runtime", "Deployment/fraud-consumer"} <= set(first.applied)
    assert conditions(pipeline)["TopicsReady"] == ("True", "TopicsReady")
    assert conditions(pipeline)["ConsumersReady"] == ("False", "Creating")  # read before this pass created it
    cluster.roll_out(naming.consumer_name("fraud"))
    cluster.run(pipeline)
    assert conditions(pipeline)["Ready"] == ("True", "Reconciled")
    writes = cluster.kube.writes
    idle = cluster.run(pipeline)
    assert idle.status_patch == {} and idle.applied == {} and idle.events == []
    assert cluster.kube.writes == writes, "a pass that finds everything in place only reads"
    assert len(cluster.topics.executed) == 1


def test_an_invalid_spec_creates_nothing_and_says_what_to_fix() -> None:
    cluster = Cluster()
    pipeline = body(kafka={"securityProtocol": "SASL_SSL", "sasl": {"mechanism": "PLAIN", "secretName": "nope"}})
    outcome = cluster.run(pipeline)
    assert outcome.invalid and cluster.kube.writes == 0 and not cluster.topics.executed
    status, reason = conditions(pipeline)["Ready"]
    assert (status, reason) == ("False", "InvalidSpec")
    assert "nope" in pipeline["status"]["conditions"][0]["message"]


def test_a_child_edited_by_hand_is_restored_with_a_warning() -> None:
    cluster, pipeline = Cluster(), body()
    cluster.run(pipeline)
    path = object_path("apps/v1", "Deployment", NS, naming.consumer_name("fraud"))
    edited = copy.deepcopy(cluster.kube.objects[path])
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:latest"
    cluster.kube.put(path, edited)
    outcome = cluster.run(pipeline)
    assert outcome.applied.get("Deployment/fraud-consumer") == "restored"
    assert any(e.reason == "DriftCorrected" for e in outcome.events)
    image = cluster.kube.objects[path]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image != "someone/else:latest"


def test_a_spec_change_prunes_the_children_it_no_longer_wants() -> None:
    cluster, pipeline = Cluster(), body(SENSOR)
    cluster.run(pipeline)
    assert "InvalidSpec" not in str(pipeline["status"]), pipeline["status"]
    tfserving = object_path("apps/v1", "Deployment", NS, naming.tfserving_name(pipeline["metadata"]["name"]))
    assert tfserving in cluster.kube.objects
    pipeline["spec"]["serving"] = {"mode": "embedded"}
    pipeline["metadata"]["generation"] = 2
    outcome = cluster.run(pipeline)
    assert tfserving not in cluster.kube.objects
    assert any(e.reason == "Pruned" for e in outcome.events)


def test_network_policies_are_made_when_the_installation_asks_and_pruned_with_tfserving() -> None:
    cluster, pipeline = Cluster(), body(SENSOR)
    cluster.services.network_policies = NetworkPolicies()
    name = pipeline["metadata"]["name"]
    consumer = object_path("networking.k8s.io/v1", "NetworkPolicy", NS, naming.consumer_name(name))
    tfserving = object_path("networking.k8s.io/v1", "NetworkPolicy", NS, naming.tfserving_name(name))
    first = cluster.run(pipeline)
    assert {consumer, tfserving} <= set(cluster.kube.objects)
    assert list(first.applied)[:2] == [f"NetworkPolicy/{name}-consumer", f"NetworkPolicy/{name}-tfserving"]
    pipeline["spec"]["serving"] = {"mode": "embedded"}
    pipeline["metadata"]["generation"] = 2
    outcome = cluster.run(pipeline)
    assert consumer in cluster.kube.objects and tfserving not in cluster.kube.objects
    assert outcome.applied[f"NetworkPolicy/{name}-tfserving"] == "deleted"


def test_a_pass_that_read_the_status_before_the_last_write_keeps_the_created_topics() -> None:
    """The resync lists a pipeline before it takes its lock, and kopf writes a handler's status after it returns:
    a pass can start from a status older than the previous pass's write. It must not forget the topics that pass
    created (deletionPolicy Delete would keep them)."""
    cluster, stale = Cluster(), body()
    first = copy.deepcopy(stale)
    cluster.run(first)
    created = ["transactions", "transactions-dlq", "transactions-scored"]
    assert first["status"]["createdTopics"] == created
    late = cluster.run(copy.deepcopy(stale))  # this pass read the pipeline before the first pass's status landed
    stored = {**first["status"], **late.status_patch}  # the API server's merge patch of the late pass's status
    assert stored["createdTopics"] == created
