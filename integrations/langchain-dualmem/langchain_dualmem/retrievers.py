"""`DualMemRetriever`: the top dualmem memories of a scope as LangChain `Document`s."""

from __future__ import annotations

from dualmem import Memory
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field

from ._scope import Scoped

__all__ = ["DualMemRetriever", "memory_to_document"]


def memory_to_document(memory: Memory) -> Document:
    """One memory as a `Document`: its text, plus id, score, provenance and scope as metadata."""
    return Document(
        id=memory.id,
        page_content=memory.text,
        metadata={
            **memory.metadata,
            "id": memory.id,
            "score": memory.score,
            "source_turn_ids": list(memory.source_turn_ids),
            "event_date": memory.event_date,
            "created_at": memory.created_at.isoformat(),
            "updated_at": memory.updated_at.isoformat(),
            "user_id": memory.user_id,
            "agent_id": memory.agent_id,
            "session_id": memory.session_id,
        },
    )


class DualMemRetriever(Scoped, BaseRetriever):
    """Retrieve the memories most relevant to a query (hybrid dense + BM25 search).

    Only the given scope is searched: a retriever for one user never returns another
    user's memories.

    ```python
    from dualmem import DualMemory
    from langchain_dualmem import DualMemRetriever

    memory = DualMemory()
    memory.add("I moved to Paris in 2021.", user_id="alice")
    retriever = DualMemRetriever(memory=memory, user_id="alice", k=5)
    docs = retriever.invoke("Where does Alice live?")        # or invoke(..., k=2)
    ```
    """

    k: int = Field(default=10, ge=1)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        found = self.scoped_memory.search(query, k=self.k if k is None else k)
        return [memory_to_document(m) for m in found]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        found = await self.scoped_memory.asearch(query, k=self.k if k is None else k)
        return [memory_to_document(m) for m in found]
