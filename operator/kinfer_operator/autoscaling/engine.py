"""One pipeline's autoscaler: lag reading in, decision out (pure: no clients; time comes with the reading).

``PipelineAutoscaler.step`` runs every poll: effective lag per partition (``lag``), progress and stuck
partitions (``progress``), the replica arithmetic (``replicas``), then the stabilization windows and the
scale-to-zero activation. The operator serves ``Decision.metric_value`` to the HPA as the external metric:
it is exactly ``desired * lagThreshold``, so the HPA's own ``ceil(metric / target)`` lands on our count —
partition caps, stuck partitions, drain time and serving back-pressure included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kinfer_operator.autoscaling.lag import LagReading, lag_by_partition, top_partitions
from kinfer_operator.autoscaling.progress import GroupProgress
from kinfer_operator.autoscaling.replicas import (
    Activation,
    ReplicaInputs,
    Stabilizer,
    desired_replicas,
    drain_seconds,
)
from kinfer_runtime.spec import AutoscalingSpec, InferencePipelineSpec, OffsetReset


@dataclass(frozen=True)
class Decision:
    topic: str
    total_lag: int  # every partition, stuck ones included
    scaling_lag: int  # what drives scale-out: stuck partitions left out
    lag_by_partition: dict[int, int]
    top_partitions: list[tuple[int, int]]
    stuck_partitions: tuple[int, ...]
    partitions: int
    partitions_with_lag: int
    current_replicas: int
    uncapped_replicas: int  # what lag and drain time alone ask for
    recommended_replicas: int  # after caps and bounds, before stabilization
    desired_replicas: int  # after the stabilization windows
    capped_by_partitions: bool
    held_by_serving: bool
    active: bool
    scale_to: int | None  # set the Deployment to this directly (to/from zero), else None
    per_replica_rate: float | None
    arrival_rate: float | None
    drain_seconds: float | None
    metric_value: int  # what the external metrics API serves for the HPA (AverageValue target = threshold)
    serving_demand_value: int  # consumers wanted without the serving hold * threshold (the TF Serving HPA's)
    time: float


def read_committed(spec: InferencePipelineSpec) -> bool:
    """librdkafka reads committed by default; only an explicit override makes the group read uncommitted."""
    return spec.kafka.config.get("isolation.level", "read_committed") != "read_uncommitted"


@dataclass
class PipelineAutoscaler:
    """Memory of one pipeline across polls; rebuild it with ``configure`` when the spec changes."""

    autoscaling: AutoscalingSpec
    reset: OffsetReset = OffsetReset.EARLIEST
    read_committed: bool = True
    progress: GroupProgress = field(default_factory=GroupProgress)
    stabilizer: Stabilizer = field(default_factory=Stabilizer)
    activation: Activation = field(default_factory=Activation)

    def __post_init__(self) -> None:
        self._apply(self.autoscaling)

    @classmethod
    def for_spec(cls, spec: InferencePipelineSpec) -> PipelineAutoscaler:
        scaler = cls(spec.autoscaling)
        scaler.configure(spec)
        return scaler

    def configure(self, spec: InferencePipelineSpec) -> None:
        """Take a new spec while keeping the measured history (rates, stuck counters, windows)."""
        self.reset = spec.consumer.auto_offset_reset
        self.read_committed = read_committed(spec)
        self._apply(spec.autoscaling)

    def _apply(self, auto: AutoscalingSpec) -> None:
        self.autoscaling = auto
        self.progress.stuck_polls = auto.stuck_partition_polls
        self.stabilizer.up_seconds = auto.scale_up_stabilization_seconds
        self.stabilizer.down_seconds = auto.scale_down_stabilization_seconds
        self.activation.activation_threshold = auto.activation_lag_threshold
        self.activation.cooldown_seconds = auto.cooldown_seconds

    def step(self, reading: LagReading, current_replicas: int, serving_ready: bool = True) -> Decision:
        auto = self.autoscaling
        lags = lag_by_partition(reading, self.reset, self.read_committed)
        self.progress.observe(reading, lags, current_replicas, self.read_committed)
        self.progress.forget_partitions_not_in(set(lags))
        stuck = self.progress.stuck
        scaling_lags = {p: lag for p, lag in lags.items() if p not in stuck}
        scaling_lag = sum(scaling_lags.values())
        with_lag = sum(1 for lag in scaling_lags.values() if lag > 0)
        inputs = ReplicaInputs(
            scaling_lag=scaling_lag,
            lag_threshold=auto.lag_threshold,
            partitions=len(lags),
            partitions_with_lag=with_lag,
            min_replicas=auto.min_replicas,
            max_replicas=auto.max_replicas,
            current_replicas=current_replicas,
            limit_to_partitions_with_lag=auto.limit_to_partitions_with_lag,
            target_drain_seconds=auto.target_drain_seconds,
            per_replica_rate=self.progress.per_replica_rate,
            arrival_rate=self.progress.arrival_rate,
            serving_ready=serving_ready,
        )
        decision = desired_replicas(inputs)
        desired = self.stabilizer.recommend(reading.time, decision.desired, current_replicas)
        total_lag = sum(lags.values())
        scale_to = self.activation.target(reading.time, total_lag, current_replicas, desired, auto.min_replicas)
        return Decision(
            topic=reading.topic,
            total_lag=total_lag,
            scaling_lag=scaling_lag,
            lag_by_partition=lags,
            top_partitions=top_partitions(lags),
            stuck_partitions=tuple(sorted(stuck)),
            partitions=len(lags),
            partitions_with_lag=sum(1 for lag in lags.values() if lag > 0),
            current_replicas=current_replicas,
            uncapped_replicas=decision.uncapped,
            recommended_replicas=decision.desired,
            desired_replicas=desired,
            capped_by_partitions=decision.capped_by_partitions,
            held_by_serving=decision.held_by_serving,
            active=self.activation.is_active(total_lag),
            scale_to=scale_to,
            per_replica_rate=self.progress.per_replica_rate,
            arrival_rate=self.progress.arrival_rate,
            drain_seconds=drain_seconds(
                total_lag, current_replicas, self.progress.per_replica_rate, self.progress.arrival_rate
            ),
            metric_value=desired * auto.lag_threshold,
            serving_demand_value=max(decision.unheld, desired) * auto.lag_threshold,
            time=reading.time,
        )
