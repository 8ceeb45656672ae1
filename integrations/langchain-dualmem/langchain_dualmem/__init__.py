"""LangChain integration for dualmem: retriever, chat message history and agent tools."""

from .chat_history import DualMemChatMessageHistory
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
    "DualMemRecallTool",
    "DualMemRememberTool",
    "DualMemRetriever",
    "DualMemStore",
    "create_recall_tool",
    "create_remember_tool",
]
