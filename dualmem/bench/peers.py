"""The LlamaIndex peer: LlamaIndex's own `Memory` over a benchmark conversation, read through
dualmem's reader prompt, with dualmem's LLM and embedder.

The conversation goes into one `llama_index.core.memory.Memory` (one LlamaIndex session per
conversation), session by session, one chat message per turn, carrying the same dated line
dualmem's raw-turn index shows its reader. The short-term FIFO flushes chunks of about
`FLUSH_TOKENS` into the memory blocks: a `VectorMemoryBlock` (one node per flushed chunk, over an
in-memory vector store) and, for `llamaindex:facts`, a `FactExtractionMemoryBlock` (one LLM call
per chunk). After the last turn the FIFO is flushed too, so the whole conversation is in the
blocks. A question is `Memory.aget(input=question)`: what LlamaIndex hands an agent. Its
retrieved messages (and facts) become the context lines of `answer_from`, the fast path's reader
call, so a comparison with dualmem isolates memory, not prompting.

Evidence: each retrieved message is mapped back to its turn id by its text, so evidence recall
is measured on the retrieved chunks. Extracted facts carry no provenance: they add no turn ids.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.llms import CustomLLM
from llama_index.core.memory import FactExtractionMemoryBlock, Memory, VectorMemoryBlock
from llama_index.core.storage.chat_store.sql import MessageStatus
from llama_index.core.vector_stores import SimpleVectorStore, VectorStoreQuery, VectorStoreQueryResult

from .._sync import run_sync
from ..answering.reader import answer_from
from ..llm.base import BaseLLM, ChatRequest
from ..tasks import Task
from ..tokens import encoding
from ..types import Turn, Usage
from .data import Conversation

__all__ = ["FACTS_MAX_TOKENS", "FLUSH_TOKENS", "TURNS_PER_NODE", "LlamaIndexPeer", "Retrieved"]

# A flushed chunk becomes one vector node: ~160 cl100k tokens is ~4 LoCoMo turns (42 tokens
# each on dev), which with LlamaIndex's <message> wrappers stays inside MiniLM's 256-token window.
FLUSH_TOKENS = 160
TURNS_PER_NODE = 4  # so k/4 nodes give the reader about the fast path's k turns
FACTS_MAX_TOKENS = 512  # room for a <facts> list of a chunk's facts
_MESSAGE = re.compile(r"<message role='[a-z_]+'>(.*?)</message>", re.S)
_FACT = re.compile(r"<fact>(.*?)</fact>", re.S)


class DualMemEmbedding(BaseEmbedding):
    """LlamaIndex's embedding interface over a dualmem embedding function (the index's own)."""

    _embed: Any = PrivateAttr()

    def __init__(self, embed: Any) -> None:
        super().__init__(model_name="dualmem", embed_batch_size=64)
        self._embed = embed

    def _vectors(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in v] for v in self._embed(texts)]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vectors([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vectors([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._vectors(texts)


class DualMemLLM(CustomLLM):
    """LlamaIndex's LLM interface over a dualmem `BaseLLM` (the benchmark's cached model): chat
    messages go through as they are, every call tagged `task` and its usage counted."""

    _llm: BaseLLM = PrivateAttr()
    _task: str = PrivateAttr()
    _usage: Usage = PrivateAttr(default_factory=Usage)

    def __init__(self, llm: BaseLLM, task: str) -> None:
        super().__init__()
        self._llm, self._task = llm, task

    @property
    def usage(self) -> Usage:
        return self._usage

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self._llm.context_tokens, num_output=FACTS_MAX_TOKENS,
            is_chat_model=True, model_name=self._llm.name,
        )

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        request = ChatRequest(
            task=self._task, max_tokens=FACTS_MAX_TOKENS,
            messages=[{"role": m.role.value, "content": m.content or ""} for m in messages],
        )
        completion = await self._llm.acomplete(request)
        self._usage = self._usage + completion.usage
        return ChatResponse(message=ChatMessage(role="assistant", content=completion.text))

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return run_sync(self.achat(messages, **kwargs))

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.chat([ChatMessage(role="user", content=prompt)]).message.content)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        raise NotImplementedError("LlamaIndex's memory blocks never stream")


class TextVectorStore(SimpleVectorStore):
    """LlamaIndex's in-memory `SimpleVectorStore`, keeping its nodes: `VectorMemoryBlock` needs a
    store that returns the stored text (`stores_text`), which the simple store does not."""

    stores_text: bool = True
    _nodes: dict[str, Any] = PrivateAttr(default_factory=dict)

    def add(self, nodes: Sequence[Any], **add_kwargs: Any) -> list[str]:
        self._nodes.update((n.node_id, n) for n in nodes)
        return super().add(nodes, **add_kwargs)

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        result = super().query(query, **kwargs)
        return VectorStoreQueryResult(
            nodes=[self._nodes[i] for i in result.ids or []], similarities=result.similarities, ids=result.ids
        )


@dataclass(frozen=True)
class Retrieved:
    """What the peer's memory gave for one question: the retrieved turns (ids in rank order,
    their lines) and the extracted facts, with the time it took."""

    turn_ids: list[str]
    lines: list[str]
    facts: list[str]
    seconds: float


class LlamaIndexPeer:
    """One conversation in LlamaIndex's `Memory`. `facts` adds the fact-extraction block (LLM
    calls at ingestion); `k` is the benchmark's top-k in turns."""

    def __init__(self, conv: Conversation, llm: BaseLLM | None, embed: Any, *, facts: bool, k: int) -> None:
        if facts and llm is None:
            raise ValueError("the fact-extraction block needs an LLM")
        self.conv, self.llm = conv, llm
        turns = [
            Turn(id=t.id, speaker=t.speaker, text=t.text, timestamp=t.timestamp)
            for s in conv.sessions for t in s.turns
        ]
        self.lines = [t.render() for t in turns]
        # a line names its turn; equal lines (a repeated "Bye!" on one day) name the first
        self.turn_of: dict[str, str] = {}
        for turn, line in zip(turns, self.lines, strict=True):
            self.turn_of.setdefault(line, turn.id)
        self.order = {t.id: i for i, t in enumerate(turns)}
        self.vector = VectorMemoryBlock(
            vector_store=TextVectorStore(), embed_model=DualMemEmbedding(embed),
            similarity_top_k=max(1, math.ceil(k / TURNS_PER_NODE)),
        )
        self.extractor = DualMemLLM(llm, Task.LLAMAINDEX_FACTS) if facts and llm else None
        self.facts = FactExtractionMemoryBlock(llm=self.extractor) if self.extractor else None
        blocks = [self.vector] + ([self.facts] if self.facts else [])
        self.memory = Memory.from_defaults(
            session_id=conv.id, memory_blocks=blocks,
            # the FIFO keeps under FLUSH_TOKENS and flushes chunks of at least FLUSH_TOKENS
            token_limit=2 * FLUSH_TOKENS, chat_history_token_ratio=0.5, token_flush_size=FLUSH_TOKENS,
            tokenizer_fn=lambda text: encoding().encode(text, disallowed_special=()),
        )
        self.stats: dict[str, Any] = {}

    async def aingest(self) -> dict[str, Any]:
        """Every turn into the memory, session by session, then the FIFO's rest into the blocks."""
        start = time.perf_counter()
        position = 0
        for session in self.conv.sessions:
            lines = self.lines[position : position + len(session.turns)]
            position += len(session.turns)
            await self.memory.aput_messages([ChatMessage(role="user", content=line) for line in lines])
        # Memory flushes only when the FIFO overflows: the last turns would stay short-term
        # chat history, out of the blocks; flush them as `Memory._manage_queue` does
        rest = await self.memory.aget_all(status=MessageStatus.ACTIVE)
        if rest:
            await self.memory.sql_store.archive_oldest_messages(self.memory.session_id, n=len(rest))
            await asyncio.gather(*(
                block.aput(rest, from_short_term_memory=True, session_id=self.memory.session_id)
                for block in self.memory.memory_blocks
            ))
        usage = self.extractor.usage if self.extractor else Usage()
        store = self.vector.vector_store
        assert isinstance(store, TextVectorStore)
        self.stats = {
            "turns": len(self.lines),
            "nodes": len(store.data.embedding_dict),
            "facts": len(self.facts.facts) if self.facts else None,
            "seconds": time.perf_counter() - start,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "calls": usage.calls,
        }
        return self.stats

    async def aretrieve(self, question: str) -> Retrieved:
        """`Memory.aget(input=question)`, its memory blocks read back into turns and facts."""
        start = time.perf_counter()
        messages = await self.memory.aget(input=question)
        text = "\n".join(m.content or "" for m in messages if m.role.value == "system")
        ids: dict[str, None] = {}
        for body in _MESSAGE.findall(text):
            if (turn := self.turn_of.get(body.strip())) is not None:
                ids.setdefault(turn, None)
        facts = [f.strip() for f in _FACT.findall(text) if f.strip()]
        turn_ids = list(ids)
        # chronological lines, as dualmem's reader shows its memories (`context_lines`)
        lines = [self.lines[self.order[t]] for t in sorted(turn_ids, key=self.order.__getitem__)]
        return Retrieved(turn_ids, lines, facts, time.perf_counter() - start)

    async def aanswer(self, question: str, *, facts: bool) -> dict[str, Any]:
        """The reader's answer over the retrieved turns (and, with `facts`, the facts first),
        as the `Record` fields it fills."""
        assert self.llm is not None
        retrieved = await self.aretrieve(question)
        lines = (retrieved.facts if facts else []) + retrieved.lines
        reading = await answer_from(self.llm, question, lines, task=Task.ANSWER)
        usage = reading.completion.usage
        return {
            "prediction": reading.text,
            "path": "fast",
            "reason": "peer: LlamaIndex Memory " + ("vector + fact blocks" if facts else "vector block"),
            "usage": {"answer": usage},
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "calls": usage.calls,
            "latency": {"retrieve": retrieved.seconds, "answer": reading.seconds},
            "retrieved": retrieved.turn_ids,
            # every retrieved turn is read (`answer_from` shortens lines, never drops one)
            "context": sorted(retrieved.turn_ids, key=self.order.__getitem__),
        }
