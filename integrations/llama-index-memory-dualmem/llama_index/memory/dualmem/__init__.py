"""dualmem for LlamaIndex: chat memory, a memory block, a retriever and a gated query engine."""

from importlib.metadata import version

from llama_index.memory.dualmem.base import DualMemBlock, DualMemMemory
from llama_index.memory.dualmem.query_engine import DualMemQueryEngine
from llama_index.memory.dualmem.retriever import DualMemRetriever

__version__ = version("llama-index-memory-dualmem")  # the one place it is set: pyproject.toml

__all__ = ["__version__", "DualMemBlock", "DualMemMemory", "DualMemQueryEngine", "DualMemRetriever"]
