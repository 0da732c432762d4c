"""Helpers for the operator's test-bed tests: pipeline manifests, polling, children, topics and Events."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from confluent_kafka.admin import AdminClient
from kubernetes import client

from tests.operator.pipelines import FRAUD, deep_update, sample_manifest
from tests.polling import wait_until

RECONCILE_SECONDS = 3
GROUP, VERSION, PLURAL = "kinfer.io", "v1alpha1", "inferencepipelines"


class Bed:
    """One test's view of the bed: its namespace, the Kubernetes API and the shared broker."""

    def __init__(self, testbed: Any, api: Any, bootstrap: str, namespace: str):
        self.testbed, self.api, self.bootstrap, self.namespace = testbed, api, bootstrap, namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    # --- manifests -------------------------------------------------------------------------------------------

    def manifest(
        self, name: str, sample: Any = FRAUD, partitions: int = 2, as_sample: bool = False, **spec_changes: Any
    ) -> dict[str, Any]:
        """A sample with this bed's broker, topics unique to the test and small partition counts; unless
        ``as_sample``, the model path is inside the image and no resources are requested (nothing to provision)."""
        manifest = sample_manifest(sample)
        manifest["metadata"] = {"name": name, "namespace": self.namespace}
        spec = manifest["spec"]
        if not as_sample:
            spec["model"] = {"name": spec["model"]["name"], "uri": f"/models/{spec['model']['name']}"}
            spec.get("consumer", {}).pop("resources", None)
            spec.get("serving", {}).get("tfserving", {}).pop("resources", None)
        spec["kafka"]["bootstrapServers"] = self.bootstrap
        for role in ("input", "output", "deadLetter"):
            topic = spec["topics"][role]
            topic["name"] = f"{self.namespace}.{name}.{role}"
            topic["partitions"] = 1 if role == "deadLetter" else partitions
        deep_update(spec, copy.deepcopy(spec_changes))
        return manifest

    def apply(self, *manifests: dict[str, Any]) -> None:
        text = yaml.safe_dump_all(list(manifests))
        self.testbed.kubectl("apply", "-n", self.namespace, "-f", "-", input=text)

    def apply_result(self, manifest: dict[str, Any]) -> Any:
        return self.testbed.kubectl(
            "apply", "-n", self.namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False
        )

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec})

    # --- reading ---------------------------------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
            return obj
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def pipelines(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)[
            "items"
        ]
        return items

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        obj = self.get(name) or {}
        for condition in (obj.get("status") or {}).get("conditions") or []:
            if condition["type"] == kind:
                return dict(condition)
        return {}

    def is_ready(self, name: str) -> bool:
        obj = self.get(name) or {}
        status = obj.get("status") or {}
        generation = obj.get("metadata", {}).get("generation")
        return self.condition(name, "Ready").get("status") == "True" and status.get("observedGeneration") == generation

    def wait_ready(self, name: str, timeout: float = 90) -> dict[str, Any]:
        wait_until(lambda: self.is_ready(name), timeout, f"pipeline {name} Ready")
        obj = self.get(name)
        assert obj is not None
        return obj

    def wait_reason(self, name: str, kind: str, reason: str, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any]:
            condition = self.condition(name, kind)
            return condition if condition.get("reason") == reason else {}

        try:
            return wait_until(reached, timeout, f"{name} {kind} reason {reason}")
        except AssertionError as timeout_error:
            obj = self.get(name) or {}
            raise AssertionError(f"{timeout_error}; the pipeline's status: {obj.get('status')}") from None

    def children(self, name: str) -> dict[str, dict[str, Any]]:
        """The pipeline's children by "Kind/name", found by label (what a duplicate would show up in)."""
        selector = f"kinfer.io/pipeline={name}"
        found: dict[str, dict[str, Any]] = {}
        listings = [
            ("ConfigMap", self.core.list_namespaced_config_map(self.namespace, label_selector=selector)),
            ("Service", self.core.list_namespaced_service(self.namespace, label_selector=selector)),
            ("Deployment", self.apps.list_namespaced_deployment(self.namespace, label_selector=selector)),
        ]
        for kind, listing in listings:
            for item in listing.items:
                found[f"{kind}/{item.metadata.name}"] = self.api.sanitize_for_serialization(item)
        return found

    def replica_sets(self, deployment: str) -> list[Any]:
        items = self.apps.list_namespaced_replica_set(self.namespace).items
        return [rs for rs in items if any(ref.name == deployment for ref in rs.metadata.owner_references or [])]

    def events(self, name: str) -> list[Any]:
        selector = f"involvedObject.name={name},involvedObject.kind=InferencePipeline"
        items: list[Any] = self.core.list_namespaced_event(self.namespace, field_selector=selector).items
        return items

    def event_reasons(self, name: str) -> list[str]:
        return [event.reason for event in self.events(name)]

    # --- Kafka -----------------------------------------------------------------------------------------------

    def topic_partitions(self, *names: str) -> dict[str, int]:
        metadata = self.admin.list_topics(timeout=10)
        return {
            n: len(metadata.topics[n].partitions)
            for n in names
            if n in metadata.topics and metadata.topics[n].error is None
        }

    def topic_names(self, manifest: dict[str, Any]) -> list[str]:
        topics = manifest["spec"]["topics"]
        return [topics[role]["name"] for role in ("input", "output", "deadLetter")]

    # --- cleanup ---------------------------------------------------------------------------------------------

    def delete_all_pipelines(self, timeout: float) -> None:
        for obj in self.pipelines():
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, obj["metadata"]["name"])
        try:
            wait_until(lambda: not self.pipelines(), timeout, "pipelines deleted")
        except AssertionError:
            for obj in self.pipelines():  # never leave a namespace stuck on our finalizer
                patch = {"metadata": {"finalizers": None}}
                self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, obj["metadata"]["name"], patch
                )
            raise

    def make_bound_claim(self, name: str) -> None:
        """A PVC bound to a hostPath PV, so pods mounting a pvc:// model can be scheduled."""
        pv_name = f"{self.namespace}-{name}"
        self.core.create_persistent_volume(
            {
                "metadata": {"name": pv_name},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadOnlyMany"],
                    "hostPath": {"path": f"/tmp/{pv_name}"},
                    "storageClassName": "",
                    "claimRef": {"namespace": self.namespace, "name": name},
                },
            }
        )
        self.core.create_namespaced_persistent_volume_claim(
            self.namespace,
            {
                "metadata": {"name": name},
                "spec": {
                    "accessModes": ["ReadOnlyMany"],
                    "resources": {"requests": {"storage": "1Gi"}},
                    "storageClassName": "",
                    "volumeName": pv_name,
                },
            },
        )
        wait_until(
            lambda: self.core.read_namespaced_persistent_volume_claim(name, self.namespace).status.phase == "Bound",
            60,
            f"PVC {name} bound",
        )
