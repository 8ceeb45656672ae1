"""dualmem: dual-process long-term memory for LLM agents."""

from importlib.metadata import PackageNotFoundError, version

from ._sync import run_sync
from .answering.reader import context_lines as format_memories
from .config import Config, DeliberationConfig, ExtractionConfig, GateConfig
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
from .history.base import HistoryStore, TurnQuery
from .index.base import MemoryIndex
from .inputs import check_messages
from .llm.base import BaseLLM, ChatRequest, Completion
from .memory import AddResult, DualMemory, ReindexResult
from .scoped import ScopedMemory
from .types import (
    Answer,
    Evidence,
    Fact,
    GateReport,
    Memory,
    Mode,
    Policy,
    Scope,
    SignalResult,
    Turn,
    Usage,
)

try:
    __version__ = version("dualmem")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "__version__",
    "AddResult",
    "Answer",
    "BaseLLM",
    "ChatRequest",
    "check_messages",
    "Completion",
    "Config",
    "ConfigError",
    "DeliberationConfig",
    "DualMemError",
    "DualMemory",
    "Evidence",
    "ExtractionConfig",
    "Fact",
    "format_memories",
    "GateConfig",
    "GateReport",
    "HistoryStore",
    "InvalidInputError",
    "LLMError",
    "LLMReplyError",
    "Memory",
    "MemoryIndex",
    "Mode",
    "ModelNotFoundError",
    "Policy",
    "ReindexResult",
    "run_sync",
    "Scope",
    "ScopedMemory",
    "ScopeError",
    "SignalResult",
    "StorageError",
    "Turn",
    "TurnQuery",
    "Usage",
]
