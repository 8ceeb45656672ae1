"""LangChain integration for dualmem: retriever, chat message history, agent tools, a LangGraph
store and an agent middleware."""

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

__all__ = [
    "DualMemChatMessageHistory",
    "DualMemMiddleware",
    "DualMemRecallTool",
    "DualMemRememberTool",
    "DualMemRetriever",
    "DualMemStore",
    "create_recall_tool",
    "create_remember_tool",
]
