"""dualmem for LlamaIndex: chat memory, a memory block, a retriever and a gated query engine."""

from llama_index.memory.dualmem.base import DualMemBlock, DualMemMemory
from llama_index.memory.dualmem.query_engine import DualMemQueryEngine
from llama_index.memory.dualmem.retriever import DualMemRetriever

__all__ = ["DualMemBlock", "DualMemMemory", "DualMemQueryEngine", "DualMemRetriever"]
