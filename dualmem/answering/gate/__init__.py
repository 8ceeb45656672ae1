"""The quality gate: signals, D-Mem's audit, policies and calibration."""

from ...config import GateConfig
from ...types import Policy
from .policy import GateOutcome, run_gate
from .signals import Passage, consistency, coverage, entropy, looks_like_refusal

__all__ = [
    "GateConfig",
    "GateOutcome",
    "Passage",
    "Policy",
    "consistency",
    "coverage",
    "entropy",
    "looks_like_refusal",
    "run_gate",
]
