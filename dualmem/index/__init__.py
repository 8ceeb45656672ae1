"""The memory index: extracted memories with embeddings, derived from the history."""

from .base import MemoryIndex
from .chroma import ChromaMemoryIndex

__all__ = ["ChromaMemoryIndex", "MemoryIndex"]
