"""The gate's settings: which policy decides, and the thresholds and weights it decides by."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GateConfig", "Policy"]

Policy = Literal["audit", "signals", "cascade", "majority", "consensus"]


class GateConfig(BaseModel):
    """Thresholds and weights; `dualmem calibrate` fits them on labelled questions."""

    model_config = ConfigDict(extra="forbid")

    policy: Policy = "cascade"
    combine: Literal["any", "weighted"] = "weighted"
    entropy_threshold: float = 0.5
    coverage_threshold: float = 0.5
    consistency_threshold: float = 0.5
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
