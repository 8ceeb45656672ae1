"""`DualMemRetriever`: dualmem's hybrid memory search as a llama-index retriever."""

from __future__ import annotations

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle

from dualmem import DualMemory, InvalidInputError, run_sync

from .utils import memory_node

__all__ = ["DualMemRetriever"]


class DualMemRetriever(BaseRetriever):
    """The k memories most relevant to a query, as nodes (id = memory id, score = similarity).

    Node metadata: `memory_id`, `source_turn_ids`, `event_date`, `user_id`/`agent_id`/
    `session_id`, `created_at`/`updated_at`; only `event_date` is shown to the LLM.

    ```python
    retriever = DualMemRetriever(memory, user_id="alice", k=5)
    nodes = retriever.retrieve("Where does Alice live?")
    ```
    """

    def __init__(
        self,
        memory: DualMemory,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        k: int | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        # bad ids and k fail here, not on first use
        self.scoped_memory = memory.scoped(user_id=user_id, agent_id=agent_id, session_id=session_id)
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise InvalidInputError(f"k must be a positive integer or None, got {k!r}")
        self.memory = memory
        self.k = k
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return run_sync(self._aretrieve(query_bundle))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        memories = await self.scoped_memory.asearch(query_bundle.query_str, k=self.k)
        return [memory_node(m) for m in memories]
