"""How a candidate model version is tried on live traffic beside the live one: ``spec.model.rollout``.

Canary: records whose key hashes below ``share`` are scored by the candidate instead of the live version (a key
always sees the same version; every output says which version scored it). Shadow: the candidate also scores
the sampled share of records, its predictions are only compared with the live ones (agreement metrics), and the
live version's predictions are the only ones published. Promote by pinning the candidate's version and removing
the rollout; roll back by removing the rollout. docs/models.md has the whole story.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from kinfer_runtime.spec.base import SpecModel


class RolloutMode(StrEnum):
    CANARY = "Canary"  # the candidate scores a share of keys, and its predictions are published
    SHADOW = "Shadow"  # the candidate scores a share of records beside the live version; compared, not published


class RolloutSpec(SpecModel):
    """A candidate version of the same model, tried beside the live version (model.version, Pinned)."""

    candidate_version: int = Field(
        ge=1,
        description="The version directory under model.uri to try; it must take the same inputs and give the "
        "same outputs as the live version (kinfer.json), or the runtime keeps serving the live one alone.",
    )
    mode: RolloutMode = Field(
        default=RolloutMode.CANARY,
        description="Canary: the candidate scores the records of a share of keys and its predictions are "
        "published (header kinfer.model.version says which version scored). Shadow: the candidate scores a "
        "share of records beside the live version; only the live predictions are published, the two are compared "
        "(kinfer_rollout_label_agreement_total, kinfer_rollout_score_difference).",
    )
    share: float = Field(
        default=0.1,
        gt=0.0,
        le=1.0,
        description="Canary: the share of keys routed to the candidate (by a hash of the key, so a key always "
        "sees the same version; a record without key by its partition and offset). Shadow: the share of records "
        "the candidate also scores, sampled the same way.",
    )
