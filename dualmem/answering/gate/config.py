"""The gate's settings: which policy decides, and the thresholds and weights it decides by."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GateConfig", "Policy"]

Policy = Literal["audit", "signals", "cascade", "majority", "consensus", "learned", "entropy"]


class GateConfig(BaseModel):
    """Thresholds and weights; `dualmem calibrate` fits them on labelled questions."""

    model_config = ConfigDict(extra="forbid")

    policy: Policy = "cascade"
    combine: Literal["any", "weighted"] = "weighted"
    entropy_threshold: float = 0.5
    coverage_threshold: float = 0.5
    consistency_threshold: float = 0.5
    sufficiency_threshold: float = 0.5
    recency_threshold: float = 0.5
    aggregation_threshold: float = 0.75
    # evidence signals whose failure escalates under every signal policy, whatever the score:
    # they judge what a fitted weight sees too rarely to learn (a "now" question answered from
    # older evidence, a list answered with one item)
    vetoes: list[Literal["sufficiency", "recency", "aggregation"]] = Field(
        default_factory=lambda: ["recency", "aggregation"]
    )
    model: str | None = Field(None, description="a fitted gate model file; None: the packaged one")
    learned_threshold: float | None = Field(None, description="P(wrong) to escalate at; None: the model's")
    weights: dict[str, float] = Field(
        default_factory=lambda: {"entropy": 0.15, "coverage": 0.6, "consistency": 0.25}
    )
    score_threshold: float = 0.55
    band_low: float = 0.5
    band_high: float = 0.7
    samples: int = 0
    sample_temperature: float = 0.7
    on_unavailable: Literal["ignore", "escalate"] = "ignore"
    tiered: bool = True
