"""Topic planning: create, grow, align configs, refuse decreases, re-create, adopt checks."""

from __future__ import annotations

from typing import Any

from kinfer_operator.kafka.topic_plan import TopicState, plan_topics
from tests.operator.pipelines import pipeline


def _state(name: str, partitions: int, configs: dict[str, str] | None = None, rf: int = 1) -> TopicState:
    return TopicState(name, partitions, rf, configs or {})


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
    plan = plan_topics(p.spec, _all(p))
    assert not plan.changes and not plan.refused and not plan.invalid
    assert plan.partitions == {"transactions": 6, "transactions-scored": 6, "transactions-dlq": 1}


def test_missing_topics_are_created_and_recreation_is_noticed() -> None:
    p = pipeline()
    plan = plan_topics(p.spec, {}, known_before=set())
    assert [t.name for t in plan.create] == ["transactions", "transactions-scored", "transactions-dlq"]
    assert plan.recreated == []
    observed = _all(p)
    del observed["transactions-scored"]
    plan = plan_topics(p.spec, observed, known_before={"transactions", "transactions-scored", "transactions-dlq"})
    assert [t.name for t in plan.create] == ["transactions-scored"] and plan.recreated == ["transactions-scored"]


def test_partitions_grow_but_never_shrink() -> None:
    p = pipeline(topics={"input": {"partitions": 8}})
    plan = plan_topics(p.spec, _all(p, transactions=_state("transactions", 6, {"retention.ms": "604800000"})))
    assert plan.increase == {"transactions": 8} and plan.partitions["transactions"] == 8
    smaller = pipeline(topics={"input": {"partitions": 2}})
    plan = plan_topics(
        smaller.spec, _all(smaller, transactions=_state("transactions", 6, {"retention.ms": "604800000"}))
    )
    assert plan.increase == {} and plan.partitions["transactions"] == 6
    assert len(plan.refused) == 1 and "decreasing to 2 is not supported" in plan.refused[0]


def test_configs_are_aligned_both_ways() -> None:
    p = pipeline()
    drifted = _state("transactions", 6, {"retention.ms": "1000", "cleanup.policy": "compact"})
    plan = plan_topics(p.spec, _all(p, transactions=drifted))
    assert plan.set_configs == {"transactions": {"retention.ms": "604800000"}}
    assert plan.delete_configs == {"transactions": ["cleanup.policy"]}


def test_replication_factor_change_is_refused() -> None:
    p = pipeline(topics={"output": {"replicationFactor": 3}})
    plan = plan_topics(p.spec, _all(p))
    assert any("replication factor" in r for r in plan.refused)


def test_adopted_topics_are_checked_not_changed() -> None:
    p = pipeline(topics={"input": {"mode": "Adopt", "partitions": 12, "config": {"retention.ms": "1"}}})
    plan = plan_topics(p.spec, _all(p, transactions=_state("transactions", 6, {"cleanup.policy": "compact"})))
    assert "transactions" not in plan.increase and "transactions" not in plan.set_configs
    assert "transactions" not in plan.delete_configs
    assert len(plan.invalid) == 1 and "has 6 partitions, fewer than the 12 asked" in plan.invalid[0]
    observed = _all(p)
    del observed["transactions"]
    plan = plan_topics(p.spec, observed)
    assert plan.create == [] and "does not exist" in plan.waiting[0]
