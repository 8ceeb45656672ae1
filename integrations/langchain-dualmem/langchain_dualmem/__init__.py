"""LangChain integration for dualmem: retriever, chat message history, agent tools, a LangGraph
store and an agent middleware."""

from importlib.metadata import version

from .chat_history import DualMemChatMessageHistory
from .middleware import DualMemMiddleware
from .retrievers import DualMemRetriever
from .store import DualMemStore
from .tools import (
    DualMemRecallTool,
    DualMemRememberTool,
    create_recall_tool,
    create_remember_tool,
)

__version__ = version("langchain-dualmem")  # the one place it is set: pyproject.toml

__all__ = [
    "__version__",
    "DualMemChatMessageHistory",
    "DualMemMiddleware",
    "DualMemRecallTool",
    "DualMemRememberTool",
    "DualMemRetriever",
    "DualMemStore",
    "create_recall_tool",
    "create_remember_tool",
]
