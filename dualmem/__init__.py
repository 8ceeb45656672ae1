"""dualmem: dual-process long-term memory for LLM agents."""

from importlib.metadata import PackageNotFoundError, version

from .config import Config
from .errors import (
    ConfigError,
    DualMemError,
    InvalidInputError,
    LLMError,
    LLMReplyError,
    ModelNotFoundError,
    ScopeError,
    StorageError,
)
from .memory import AddResult, DualMemory, ReindexResult
from .types import Answer, Evidence, Fact, GateReport, Memory, Scope, SignalResult, Turn, Usage

try:
    __version__ = version("dualmem")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AddResult",
    "Answer",
    "Config",
    "ConfigError",
    "DualMemError",
    "DualMemory",
    "Evidence",
    "Fact",
    "GateReport",
    "InvalidInputError",
    "LLMError",
    "LLMReplyError",
    "Memory",
    "ModelNotFoundError",
    "ReindexResult",
    "Scope",
    "ScopeError",
    "SignalResult",
    "StorageError",
    "Turn",
    "Usage",
    "__version__",
]
