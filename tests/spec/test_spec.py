"""The spec model accepts what users write, fills defaults, and rejects mistakes with a message saying what to fix."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kinfer_runtime.spec import Delivery, ServingMode, SpecError, parse_pipeline, parse_spec, uri_scheme

MANIFEST: dict[str, Any] = {
    "apiVersion": "kinfer.io/v1alpha1",
    "kind": "InferencePipeline",
    "metadata": {"name": "fraud", "namespace": "payments"},
    "spec": {
        "kafka": {"bootstrapServers": "kafka:9092"},
        "topics": {
            "input": {"name": "transactions", "partitions": 6},
            "output": {"name": "fraud-scores"},
            "deadLetter": {"name": "fraud-dlq"},
        },
        "model": {"name": "fraud", "uri": "pvc://models/fraud"},
        "consumer": {"maxBatchSize": 512},
    },
}


def with_spec(**changes: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(MANIFEST)
    for dotted, value in changes.items():
        node = manifest["spec"]
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return manifest


def problems(manifest: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as error:
        parse_pipeline(manifest)
    return str(error.value)


def test_minimal_manifest_gets_defaults() -> None:
    pipeline = parse_pipeline(MANIFEST)
    spec = pipeline.spec
    assert pipeline.metadata.namespace == "payments"
    assert spec.topics.input.partitions == 6
    assert spec.topics.output.partitions == 3
    assert spec.consumer.max_batch_size == 512
    assert spec.consumer.max_batch_wait_ms == 20
    assert spec.consumer.delivery == Delivery.AT_LEAST_ONCE.value
    assert spec.serving.mode == ServingMode.EMBEDDED.value
    assert spec.consumer_group("fraud") == "kinfer-fraud"
    assert spec.deletion_policy == "Retain"


def test_round_trip_through_wire_form_is_stable() -> None:
    spec = parse_pipeline(MANIFEST).spec
    wire = spec.to_wire()
    assert wire["consumer"]["maxBatchSize"] == 512
    assert wire["topics"]["deadLetter"]["name"] == "fraud-dlq"
    assert parse_spec(wire) == spec


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"consumer__maxBatchSise": 10}, "spec.consumer.maxBatchSise: Extra inputs are not permitted"),
        ({"consumer__maxBatchSize": 0}, "spec.consumer.maxBatchSize: Input should be greater than or equal to 1"),
        ({"serving__mode": "onnx"}, "spec.serving.mode: Input should be 'embedded' or 'tfserving'"),
        ({"model__uri": "ftp://host/model"}, "unknown scheme 'ftp'"),
        ({"model__versionPolicy": "Pinned"}, "model.versionPolicy is Pinned: set model.version"),
        ({"topics__output__name": "transactions"}, "topics.input and topics.output are both 'transactions'"),
        ({"topics__shadow": {"name": "transactions"}}, "topics.input and topics.shadow are both 'transactions'"),
        ({"topics__input__name": "bad topic!"}, "spec.topics.input.name: String should match pattern"),
        ({"kafka__securityProtocol": "SASL_SSL"}, "needs kafka.sasl"),
        ({"kafka__config": {"sasl.password": "hunter2"}}, "must not carry credentials (sasl.password)"),
        ({"autoscaling__minReplicas": 5, "autoscaling__maxReplicas": 2}, "minReplicas (5) is above maxReplicas (2)"),
        (
            {"consumer__delivery": "exactlyOnce", "kafka__config": {"isolation.level": "read_uncommitted"}},
            "exactlyOnce reads with isolation.level=read_committed",
        ),
        ({"preprocessing__hook": "not a hook"}, "spec.preprocessing.hook: String should match pattern"),
    ],
)
def test_mistakes_are_rejected_with_what_to_fix(changes: dict[str, Any], expected: str) -> None:
    assert expected in problems(with_spec(**changes))


def test_feature_rules() -> None:
    bad: dict[str, Any] = {"name": "country", "type": "categorical"}
    assert "give it a vocabulary" in problems(with_spec(preprocessing__features=[bad]))
    bad = {"name": "amount", "scaling": "standard", "mean": 1.0}
    assert "set mean and std" in problems(with_spec(preprocessing__features=[bad]))
    bad = {"name": "window", "type": "array", "shape": [0, 3]}
    assert "at least 1" in problems(with_spec(preprocessing__features=[bad]))
    good: dict[str, Any] = {"name": "window", "type": "array", "shape": [32, 3]}
    features = parse_pipeline(with_spec(preprocessing__features=[good])).spec.preprocessing.features
    assert features is not None and features[0].shape == [32, 3]


def test_wrong_kind_is_rejected() -> None:
    manifest = copy.deepcopy(MANIFEST)
    manifest["kind"] = "Deployment"
    assert "expected apiVersion kinfer.io/v1alpha1, kind InferencePipeline" in problems(manifest)


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [("pvc://claim/models/fraud", "pvc"), ("s3://bucket/x", "s3"), ("/models/fraud", "file"), ("models/x", "")],
)
def test_uri_scheme(uri: str, scheme: str) -> None:
    assert uri_scheme(uri) == scheme


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"consumer": {"resources": {"requests": {"memory": "lots"}}}}, "'lots' is not a quantity"),
        ({"consumer": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}}, "above limits.cpu"),
        ({"serving": {"mode": "tfserving", "tfserving": {"grpcPort": 8500, "restPort": 8500}}}, "needs two ports"),
        (
            {
                "consumer": {"maxBatchSize": 2048},
                "serving": {"mode": "tfserving", "tfserving": {"batching": {"maxBatchSize": 512}}},
            },
            "would refuse the consumers' larger requests",
        ),
        ({"preprocessing": {"features": [{"name": "amount"}, {"name": "amount"}]}}, "repeated: amount"),
    ],
)
def test_what_would_fail_later_is_refused_now(changes: dict[str, Any], problem: str) -> None:
    """A rule the API server, TF Serving or the runtime would enforce only after the children exist."""
    manifest = copy.deepcopy(MANIFEST)
    manifest["spec"].update(changes)
    with pytest.raises(SpecError) as refused:
        parse_pipeline(manifest)
    assert problem in str(refused.value)
