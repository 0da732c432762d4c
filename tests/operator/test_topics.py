"""Topic planning: create, grow, align configs, refuse decreases, re-create, adopt checks, and ownership: only a
topic the pipeline created is reconfigured, re-created or deleted by it."""

from __future__ import annotations

from typing import Any

from kinfer_operator.kafka.topic_plan import TopicState, plan_topics, topics_to_delete
from tests.operator.pipelines import pipeline


def _state(name: str, partitions: int, configs: dict[str, str] | None = None, rf: int = 1) -> TopicState:
    return TopicState(name, partitions, rf, configs or {})


OURS = {"transactions", "transactions-scored", "transactions-dlq"}  # what the sample pipeline created


def _all(p: Any, **overrides: Any) -> dict[str, TopicState]:
    spec = p.spec.topics
    base = {
        spec.input.name: _state(spec.input.name, spec.input.partitions, dict(spec.input.config)),
        spec.output.name: _state(spec.output.name, spec.output.partitions),
        spec.dead_letter.name: _state(spec.dead_letter.name, spec.dead_letter.partitions),
    }
    base.update(overrides)
    return base


def test_nothing_to_do_when_topics_match() -> None:
    p = pipeline()
    plan = plan_topics(p.spec, _all(p), OURS)
    assert not plan.changes and not plan.refused and not plan.invalid
    assert plan.partitions == {"transactions": 6, "transactions-scored": 6, "transactions-dlq": 1}


def test_missing_topics_are_created_and_recreation_is_noticed() -> None:
    p = pipeline()
    plan = plan_topics(p.spec, {}, created=set())
    assert [t.name for t in plan.create] == ["transactions", "transactions-scored", "transactions-dlq"]
    assert plan.recreated == []
    observed = _all(p)
    del observed["transactions-scored"]
    plan = plan_topics(p.spec, observed, created=OURS)
    assert [t.name for t in plan.create] == ["transactions-scored"] and plan.recreated == ["transactions-scored"]


def test_partitions_grow_but_never_shrink() -> None:
    p = pipeline(topics={"input": {"partitions": 8}})
    plan = plan_topics(p.spec, _all(p, transactions=_state("transactions", 6, {"retention.ms": "604800000"})), OURS)
    assert plan.increase == {"transactions": 8} and plan.partitions["transactions"] == 8
    smaller = pipeline(topics={"input": {"partitions": 2}})
    plan = plan_topics(
        smaller.spec, _all(smaller, transactions=_state("transactions", 6, {"retention.ms": "604800000"})), OURS
    )
    assert plan.increase == {} and plan.partitions["transactions"] == 6
    assert len(plan.refused) == 1 and "decreasing to 2 is not supported" in plan.refused[0]


def test_configs_are_aligned_both_ways() -> None:
    p = pipeline()
    drifted = _state("transactions", 6, {"retention.ms": "1000", "cleanup.policy": "compact"})
    plan = plan_topics(p.spec, _all(p, transactions=drifted), OURS)
    assert plan.set_configs == {"transactions": {"retention.ms": "604800000"}}
    assert plan.delete_configs == {"transactions": ["cleanup.policy"]}


def test_replication_factor_change_is_refused() -> None:
    p = pipeline(topics={"output": {"replicationFactor": 3}})
    plan = plan_topics(p.spec, _all(p), OURS)
    assert any("replication factor" in r for r in plan.refused)


def test_adopted_topics_are_checked_not_changed() -> None:
    p = pipeline(topics={"input": {"mode": "Adopt", "partitions": 12, "config": {"retention.ms": "1"}}})
    plan = plan_topics(p.spec, _all(p, transactions=_state("transactions", 6, {"cleanup.policy": "compact"})), OURS)
    assert "transactions" not in plan.increase and "transactions" not in plan.set_configs
    assert "transactions" not in plan.delete_configs
    assert len(plan.invalid) == 1 and "has 6 partitions, fewer than the 12 asked" in plan.invalid[0]
    observed = _all(p)
    del observed["transactions"]
    plan = plan_topics(p.spec, observed, OURS)
    assert plan.create == [] and "does not exist" in plan.waiting[0]


def test_a_topic_that_existed_before_is_used_as_it_is() -> None:
    p = pipeline(topics={"input": {"partitions": 8}})
    theirs = _state("transactions", 6, {"retention.ms": "12345678", "cleanup.policy": "compact"})
    plan = plan_topics(p.spec, _all(p, transactions=theirs), created={"transactions-scored", "transactions-dlq"})
    assert plan.not_owned == ["transactions"] and "transactions" not in plan.owned
    assert "transactions" not in plan.increase and "transactions" not in plan.delete_configs, "nothing removed"
    assert plan.set_configs == {"transactions": {"retention.ms": "604800000"}}, "only what the spec lists is set"
    assert plan.partitions["transactions"] == 6 and not plan.refused


def test_a_topic_that_existed_before_is_not_recreated_or_deleted() -> None:
    p = pipeline()
    observed = _all(p)
    del observed["transactions"]
    plan = plan_topics(p.spec, observed, created={"transactions-scored"})
    assert plan.recreated == [], "a topic it never created is created anew, not re-created as its own"
    delete, kept = topics_to_delete(p.spec, {"createdTopics": ["transactions-scored", "elsewhere"]})
    assert delete == ["transactions-scored"] and kept == ["transactions", "transactions-dlq"]
    adopted = pipeline(topics={"output": {"mode": "Adopt"}})
    assert topics_to_delete(adopted.spec, {"createdTopics": sorted(OURS)})[0] == ["transactions", "transactions-dlq"]


def test_pipelines_that_ask_different_configs_of_one_topic_are_told_and_neither_changes_it() -> None:
    from kinfer_operator.kafka.claims import TopicClaims

    claims = TopicClaims()
    first = pipeline(namespace="a")
    same = pipeline(namespace="b")
    other = pipeline(namespace="c", topics={"input": {"config": {"retention.ms": "1"}}})
    assert claims.claim(first) == {} and claims.claim(same) == {}, "the same configs: sharing is fine"
    conflicts = claims.claim(other)
    assert list(conflicts) == ["transactions"] and "pipeline a/fraud" in conflicts["transactions"]
    assert "transactions" in claims.claim(first), "the earlier claimant is told too"
    plan = plan_topics(first.spec, _all(first, transactions=_state("transactions", 6, {"retention.ms": "9"})), OURS)
    plan.hold_configs(claims.claim(first))
    assert "transactions" not in plan.set_configs and plan.conflicts
    claims.release("c", "fraud")
    assert claims.claim(first) == {}
    adopted = pipeline(namespace="d", topics={"input": {"mode": "Adopt", "config": {"retention.ms": "2"}}})
    assert claims.claim(adopted) == {}, "an adopted topic's configs are never set: nothing to fight over"


def test_a_shadow_topic_is_planned_owned_and_deleted_like_the_others() -> None:
    p = pipeline(topics={"shadow": {"name": "transactions-shadow", "partitions": 6}})
    plan = plan_topics(p.spec, _all(p), OURS)
    assert [t.name for t in plan.create] == ["transactions-shadow"] and plan.partitions["transactions-shadow"] == 6
    ours = OURS | {"transactions-shadow"}
    plan = plan_topics(p.spec, _all(p, **{"transactions-shadow": _state("transactions-shadow", 6)}), ours)
    assert not plan.changes and "transactions-shadow" in plan.owned
    delete, _ = topics_to_delete(p.spec, {"createdTopics": sorted(ours)})
    assert "transactions-shadow" in delete
