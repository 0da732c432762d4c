"""kinfer touches only the topics it created, on the bed's real broker: a topic that existed before a pipeline
keeps its configs while the pipeline runs and survives the pipeline's deletion with ``deletionPolicy: Delete``."""

from __future__ import annotations

from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

from tests.operator.bed import Bed
from tests.operator.conftest import OperatorProcess
from tests.polling import wait_until


def topic_overrides(bed: Bed, topic: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = bed.admin.describe_configs([resource])[resource].result(30)
    return {e.name: str(e.value) for e in entries.values() if not e.is_default and e.value is not None}


def test_a_topic_that_existed_before_keeps_its_configs_and_survives_delete(bed: Bed, operator: OperatorProcess) -> None:
    manifest = bed.manifest("owner", deletionPolicy="Delete")
    manifest["spec"]["topics"]["input"].pop("config", None)  # the spec says nothing of retention
    theirs, ours_output, ours_dlq = bed.topic_names(manifest)
    bed.admin.create_topics([NewTopic(theirs, 2, 1, config={"retention.ms": "12345678"})])[theirs].result(30)
    bed.apply(manifest)
    status = bed.wait_ready("owner")["status"]
    assert sorted(status["createdTopics"]) == sorted([ours_output, ours_dlq]), status
    assert "existed before this pipeline" in bed.condition("owner", "TopicsReady")["message"]
    # Several passes later (the resync runs every few seconds here) the override is still there.
    wait_until(lambda: bed.event_reasons("owner").count("Created") >= 1, 30, "the pipeline's children")
    assert topic_overrides(bed, theirs).get("retention.ms") == "12345678"

    bed.delete_all_pipelines(timeout=60)
    wait_until(lambda: not bed.topic_partitions(ours_output, ours_dlq), 60, "the pipeline's own topics deleted")
    assert bed.topic_partitions(theirs) == {theirs: 2}, "a topic the pipeline did not create is never deleted"
    assert topic_overrides(bed, theirs).get("retention.ms") == "12345678"
