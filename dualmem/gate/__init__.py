"""The quality gate: signals, D-Mem's audit, policies and calibration."""

from .policy import GateConfig, GateOutcome, Policy, run_gate
from .signals import consistency, coverage, entropy, is_refusal

__all__ = [
    "GateConfig",
    "GateOutcome",
    "Policy",
    "consistency",
    "coverage",
    "entropy",
    "is_refusal",
    "run_gate",
]
