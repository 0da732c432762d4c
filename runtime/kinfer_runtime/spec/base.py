"""What every part of the spec model shares: the API's names, the patterns of names, the base class (camelCase on
the wire, unknown fields rejected) and the error that lists what to fix."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

API_GROUP = "kinfer.io"
API_VERSION = "v1alpha1"
KIND = "InferencePipeline"
PLURAL = "inferencepipelines"

# Kubernetes object names (RFC 1123 label), and Kafka topic names (legal characters, at most 249).
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
TOPIC_PATTERN = r"^[a-zA-Z0-9._-]{1,249}$"
HOOK_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"
MODEL_URI_SCHEMES = ("pvc", "s3", "gs", "file")


class SpecModel(BaseModel):
    """Base of every spec class: camelCase aliases, unknown fields rejected (a typo is an error, not a no-op), and
    enumerated fields that hold their Enum member whether the manifest set them or the default did."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The camelCase dict a manifest would hold, without unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# A Kubernetes resource quantity (k8s.io/apimachinery/pkg/api/resource): "500m", "0.5", "1Gi", "1e3".
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$")
_SUFFIX: dict[str, int | Decimal] = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "n": Decimal("1e-9"),
    "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
    "E": 10**18,
}  # fmt: skip


def quantity_value(text: str) -> Decimal:
    """The value of a quantity QUANTITY matched (for comparing a request with its limit)."""
    match = QUANTITY.match(text.strip())
    assert match is not None, text
    number, suffix = Decimal(match.group(1)), match.group(3) or ""
    if suffix[:1] in "eE" and suffix:
        return number.scaleb(int(suffix[1:]))
    return number * Decimal(_SUFFIX.get(suffix, 1))


class ResourcesSpec(SpecModel):
    """Container resources, as in a Pod spec (``nvidia.com/gpu`` allowed in limits)."""

    requests: dict[str, str] = Field(
        default_factory=dict,
        description="Resources reserved for the container by the scheduler, by name, e.g. cpu: 500m, memory: 1Gi.",
    )
    limits: dict[str, str] = Field(
        default_factory=dict,
        description="Most the container may use, by name, e.g. memory: 2Gi; GPUs go here as nvidia.com/gpu: 1.",
    )

    @model_validator(mode="after")
    def _quantities(self) -> ResourcesSpec:
        """What the API server would refuse at pod creation, refused here (the Deployment would never get a pod)."""
        problems = [
            f"{kind}.{name}: {value!r} is not a quantity (e.g. 500m, 0.5, 1Gi)"
            for kind, values in (("requests", self.requests), ("limits", self.limits))
            for name, value in values.items()
            if not QUANTITY.match(str(value).strip())
        ]
        if not problems:
            problems += [
                f"requests.{name} {value} is above limits.{name} {self.limits[name]}"
                for name, value in self.requests.items()
                if name in self.limits and quantity_value(value) > quantity_value(self.limits[name])
            ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TolerationSpec(SpecModel):
    """A toleration, as in a Pod spec: lets the pods onto nodes with a matching taint."""

    key: str | None = Field(default=None, description="Taint key; empty with operator Exists matches every taint.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Equal compares value; Exists any.")
    value: str | None = Field(default=None, description="Taint value to match (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches every effect."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="NoExecute only: how long the pods stay on a node after the taint appears."
    )


class PlacementSpec(SpecModel):
    """Which nodes the pods may run on (dedicated node pools, GPU nodes), as in a Pod spec."""

    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the pods require, e.g. kubernetes.io/arch: amd64."
    )
    tolerations: list[TolerationSpec] = Field(
        default_factory=list, description="Taints the pods tolerate, e.g. a GPU node pool's."
    )

    def pod_fields(self) -> dict[str, Any]:
        """The Pod spec fields for this placement (none when nothing is asked)."""
        fields: dict[str, Any] = {}
        if self.node_selector:
            fields["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            fields["tolerations"] = [toleration.to_wire() for toleration in self.tolerations]
        return fields


class SpecError(ValueError):
    """A manifest that can't work, with messages that say what to fix (one per problem)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def describe_validation_error(error: Any, prefix: str = "") -> list[str]:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-after"))
        path = ".".join(p for p in (prefix, location) if p)
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{path}: {message}" if path else message)
    return problems
