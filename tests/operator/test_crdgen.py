"""The generated CRD: committed file in sync with the spec model, structural, and carrying what the API needs."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from kinfer_operator.crd import generate as crdgen
from kinfer_operator.crd.openapi import structural_schema, walk


def test_committed_crd_matches_the_spec_model() -> None:
    committed = crdgen.CRD_FILE.read_text()
    assert committed == crdgen.render_crd(), "crds/ is stale: run `kinfer crdgen --write`"


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text(crdgen.render_crd().replace("shortNames", "shortNamez"))
    assert crdgen.main(["--check", "--file", str(stale)]) == 1
    fresh = tmp_path / "fresh.yaml"
    assert crdgen.main(["--write", "--file", str(fresh)]) == 0
    assert crdgen.main(["--check", "--file", str(fresh)]) == 0


def test_schema_is_structural() -> None:
    schema = crdgen.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, path
        assert "title" not in node, path
        free = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
        assert "type" in node or free, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_defaults_enums_and_nesting() -> None:
    spec = crdgen.spec_schema()
    consumer = spec["properties"]["consumer"]
    assert consumer["default"] == {}  # so the API server fills consumer.* defaults when consumer is omitted
    assert consumer["properties"]["maxBatchSize"]["default"] == 256
    assert consumer["properties"]["delivery"]["enum"] == ["atLeastOnce", "exactlyOnce"]
    assert spec["properties"]["serving"]["properties"]["mode"]["enum"] == ["embedded", "tfserving"]
    assert spec["properties"]["deletionPolicy"]["default"] == "Retain"
    assert spec["properties"]["model"]["properties"]["version"]["nullable"] is True
    assert "default" not in spec["properties"]["model"]["properties"]["version"]  # no `default: null`
    assert set(spec["required"]) == {"kafka", "topics", "model"}
    assert spec["properties"]["kafka"]["properties"]["config"]["additionalProperties"] == {"type": "string"}


def test_cel_rules_and_subresources() -> None:
    crd = crdgen.build_crd()
    version = crd["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r["rule"] for r in spec["properties"]["model"]["x-kubernetes-validations"]]
    assert any("Pinned" in rule for rule in rules)
    rules = [r["rule"] for r in spec["properties"]["autoscaling"]["x-kubernetes-validations"]]
    assert rules == ["!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas"]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.consumer.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.labelSelector",
    }
    assert "status" in version["subresources"]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Ready",
        "Replicas",
        "Partitions",
        "Lag",
        "Model version",
        "Rollout",
        "Age",
    ]
    assert crd["spec"]["names"]["shortNames"] == ["ipl"]


def test_status_schema_has_no_kopf_leftovers() -> None:
    status = crdgen.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert "x-kubernetes-preserve-unknown-fields" not in status  # kopf keeps progress in annotations
    assert status["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


class _Union(BaseModel):
    either: float | str | None = Field(default=None, description="A number or a name.")
    port: int | str = 80
    strictly_positive: float = Field(default=1.0, gt=0)


def test_unions_become_free_or_int_or_string() -> None:
    schema = structural_schema(_Union.model_json_schema(by_alias=True))
    either = schema["properties"]["either"]
    assert either["x-kubernetes-preserve-unknown-fields"] is True and either["nullable"] is True
    assert "number, string" in either["description"]
    port = schema["properties"]["port"]
    assert port["x-kubernetes-int-or-string"] is True and port["default"] == 80
    assert schema["properties"]["strictly_positive"] == {
        "type": "number",
        "default": 1.0,
        "minimum": 0,
        "exclusiveMinimum": True,
    }


def test_rendered_yaml_parses_back() -> None:
    text = crdgen.render_crd()
    assert text.startswith("# Generated")
    assert yaml.safe_load(text) == crdgen.build_crd()
