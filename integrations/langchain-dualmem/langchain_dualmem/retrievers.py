"""`DualMemRetriever`: the top dualmem memories of a scope as LangChain `Document`s."""

from __future__ import annotations

from typing import Any, Self

from dualmem import Memory
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field, model_validator

from ._scope import Scoped

__all__ = ["DualMemRetriever", "memory_to_document"]


def memory_to_document(memory: Memory) -> Document:
    """One memory as a `Document`: its text, plus id, scores, provenance and scope as metadata.

    `score` is the ranking score the results are ordered by (descending); `cosine` is the
    embedding similarity to the query, which a keyword match may outrank."""
    return Document(
        id=memory.id,
        page_content=memory.text,
        metadata={
            **memory.metadata,
            "id": memory.id,
            "score": memory.relevance,  # the ranking score: documents come best first
            "cosine": memory.score,
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
    search_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="the vector-store convention: {'k': n} sets k"
    )

    @model_validator(mode="after")
    def _check_search_kwargs(self) -> Self:
        unknown = set(self.search_kwargs) - {"k"}
        if unknown:
            raise ValueError(
                f"DualMemRetriever does not know search_kwargs {sorted(unknown)}: only 'k' "
                "(the scope is user_id/agent_id/session_id; the search is always hybrid)"
            )
        if "k" in self.search_kwargs:
            k = self.search_kwargs["k"]
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise ValueError(f"search_kwargs['k'] must be a positive integer, got {k!r}")
            self.k = k
        return self

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
