"""How many consumers a pipeline needs: pure arithmetic from lag, rates and the spec's bounds.

Order of the steps (each one documented in ``docs/autoscaling.md``):
1. by lag: ``ceil(scaling lag / lagThreshold)`` — a ceiling, so it never over- or under-shoots by one;
2. by drain time (optional): the fewest replicas ``n`` with ``lag / (n * per-replica rate - arrival rate)
   ≤ targetDrainSeconds``, using the measured rates; the larger of 1. and 2. wins;
3. capped at the partitions (or at the partitions with lag): more consumers than partitions sit idle. The
   cap is applied to the replica count itself, so unlike KEDA's integer-division cap the result can never be
   partitions + 1;
4. bounded by max and min replicas (min may be 0: scale to zero is the operator's, see ``activation``);
5. held at the current count while the model server isn't Ready (more consumers would only queue on it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaInputs:
    scaling_lag: int  # lag of the partitions that more consumers can help (stuck ones left out)
    lag_threshold: int
    partitions: int
    partitions_with_lag: int
    min_replicas: int
    max_replicas: int
    current_replicas: int
    limit_to_partitions_with_lag: bool = False
    target_drain_seconds: float | None = None
    per_replica_rate: float | None = None
    arrival_rate: float | None = None
    serving_ready: bool = True


@dataclass(frozen=True)
class ReplicaDecision:
    desired: int  # what the pipeline should run now (before stabilization)
    uncapped: int  # what lag and drain time alone ask for
    cap: int  # the partition cap that applied
    capped_by_partitions: bool
    held_by_serving: bool
    unheld: int  # the count without the serving hold (what TF Serving should get ready for)


def replicas_for_lag(lag: int, threshold: int) -> int:
    return math.ceil(lag / threshold) if lag > 0 else 0


def replicas_for_drain(lag: int, target_seconds: float, per_replica_rate: float, arrival_rate: float) -> int:
    """Fewest replicas that drain ``lag`` within ``target_seconds`` while records keep arriving."""
    if lag <= 0 or per_replica_rate <= 0:
        return 0
    return math.ceil((lag / target_seconds + max(0.0, arrival_rate)) / per_replica_rate)


def drain_seconds(lag: int, replicas: int, per_replica_rate: float | None, arrival_rate: float | None) -> float | None:
    """Estimated seconds until the lag is consumed at the current size; None when unknown or never."""
    if lag <= 0:
        return 0.0
    if not per_replica_rate or replicas <= 0:
        return None
    net = replicas * per_replica_rate - (arrival_rate or 0.0)
    return lag / net if net > 0 else None


def desired_replicas(inputs: ReplicaInputs) -> ReplicaDecision:
    wanted = replicas_for_lag(inputs.scaling_lag, inputs.lag_threshold)
    if inputs.target_drain_seconds and inputs.per_replica_rate:
        wanted = max(
            wanted,
            replicas_for_drain(
                inputs.scaling_lag, inputs.target_drain_seconds, inputs.per_replica_rate, inputs.arrival_rate or 0.0
            ),
        )
    cap = inputs.partitions_with_lag if inputs.limit_to_partitions_with_lag else inputs.partitions
    cap = max(cap, 1) if inputs.partitions > 0 else 0
    within_max = min(wanted, inputs.max_replicas)
    capped = within_max > cap
    desired = max(min(within_max, cap), inputs.min_replicas)
    unheld, held = desired, False
    if not inputs.serving_ready and desired > inputs.current_replicas:
        desired, held = max(inputs.current_replicas, inputs.min_replicas), True
    return ReplicaDecision(desired, wanted, cap, capped, held, unheld)


@dataclass
class Stabilizer:
    """HPA-style stabilization windows over our own recommendations (what makes a wobbling lag not flap).

    Scale-up takes the *smallest* recommendation of the last ``up_seconds`` (0: at once), scale-down the
    *largest* of the last ``down_seconds``, so a lag oscillating around a threshold settles on the upper
    count instead of toggling (the same rule as the HPA's ``behavior``, kubernetes.io HPA docs).
    """

    up_seconds: float = 0.0
    down_seconds: float = 300.0
    _history: list[tuple[float, int]] | None = None

    def recommend(self, now: float, raw: int, current: int) -> int:
        history = self._history if self._history is not None else []
        history.append((now, raw))
        horizon = now - max(self.up_seconds, self.down_seconds)
        self._history = history = [(t, r) for t, r in history if t >= horizon]
        up_floor = min(r for t, r in history if t >= now - self.up_seconds)
        down_ceiling = max(r for t, r in history if t >= now - self.down_seconds)
        if raw > current:
            return max(current, up_floor)
        if raw < current:
            return min(current, down_ceiling)
        return current


@dataclass
class Activation:
    """Scale to and from zero, as KEDA does it: the operator, not the HPA, moves between 0 and 1+.

    Active while the total lag (stuck partitions included: they still need a consumer to be dead-lettered)
    is above ``activation_threshold``. A pipeline with ``minReplicas: 0`` that has been inactive for
    ``cooldown_seconds`` goes to 0; one at 0 that turns active wakes at once with its desired count.
    """

    activation_threshold: int = 0
    cooldown_seconds: float = 300.0
    last_active: float | None = None

    def target(self, now: float, total_lag: int, current: int, desired: int, min_replicas: int) -> int | None:
        """The replica count to set directly, or None to leave scaling to the HPA."""
        active = self.is_active(total_lag)
        if active or self.last_active is None:
            self.last_active = now  # the cooldown counts from the last active poll (or the first poll seen)
        if min_replicas > 0:
            return None
        if current == 0:
            return max(1, desired) if active else None
        if not active and now - self.last_active >= self.cooldown_seconds:
            return 0
        return None

    def is_active(self, total_lag: int) -> bool:
        return total_lag > self.activation_threshold
