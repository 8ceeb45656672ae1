"""dualmem as llama-index chat memory: `DualMemMemory` (a `BaseMemory`) and `DualMemBlock`.

Async methods await `DualMemory`'s `a*` methods. Each sync method runs its async twin on
dualmem's background loop, exactly as `DualMemory`'s own sync methods do, so both share one
implementation and the sync API also works inside a running event loop.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.bridge.pydantic import BaseModel, ConfigDict, Field, model_validator
from llama_index.core.memory import BaseMemory, BaseMemoryBlock

from dualmem import BaseLLM, DualMemory, Mode, ScopedMemory, run_sync

from .utils import (
    Context,
    arecall,
    last_user_text,
    recent_chat,
    to_chat_message,
    to_dualmem_messages,
)

__all__ = ["DualMemBlock", "DualMemFields", "DualMemMemory"]

CONTEXT_HEADER = "Long-term memory about this user, from earlier conversations:"
#: the session of a `DualMemMemory` given none: pass `session_id` to keep conversations apart
DEFAULT_SESSION = "chat"


# every DualMemory these classes were given, by data directory: what a deserialised object
# (e.g. an agent's memory restored from a saved workflow Context) is bound to again
_OPEN: weakref.WeakValueDictionary[str, DualMemory] = weakref.WeakValueDictionary()


class DualMemFields(BaseModel):
    """The `DualMemory` and the scope every class of this package works in.

    Serialisable by reference: a dump holds `data_dir` and the scope, not the store, and
    loading it binds to the `DualMemory` of that directory already open in this process, or
    opens one there (configured from the environment, as `DualMemory(path=...)` is).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    memory: DualMemory = Field(exclude=True, description="The dualmem store.")
    data_dir: str | None = Field(default=None, description="The store's data directory (its reference).")
    # strict: dualmem refuses an id that is not a str (b"alice" is not coerced to "alice")
    user_id: str | None = Field(default=None, strict=True, description="Whose memories (the hard partition).")
    agent_id: str | None = Field(default=None, strict=True, description="Which agent's memories.")
    session_id: str | None = Field(default=None, strict=True, description="Narrows to one conversation.")
    k: int | None = Field(default=None, ge=1, description="Memories to retrieve (None: config.top_k).")

    @model_validator(mode="before")
    @classmethod
    def _bind(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        memory, data_dir = data.get("memory"), data.get("data_dir")
        if isinstance(memory, DualMemory):
            data_dir = str(memory.config.data_dir)
            _OPEN.setdefault(data_dir, memory)
            return {**data, "data_dir": data_dir}
        if memory is None and data_dir:
            memory = _OPEN.get(data_dir) or _OPEN.setdefault(data_dir, DualMemory(path=data_dir))
            return {**data, "memory": memory}
        return data

    @model_validator(mode="after")
    def _check_scope(self) -> DualMemFields:
        self.scoped_memory  # noqa: B018 - bad ids fail here, not on first use
        return self

    @property
    def scoped_memory(self) -> ScopedMemory:
        """The memory bound to this object's scope (read on each use: the fields may change)."""
        return self.memory.scoped(user_id=self.user_id, agent_id=self.agent_id, session_id=self.session_id)


class _ChatFields(DualMemFields):
    """What the two chat memories (DualMemMemory, DualMemBlock) share."""

    context: Context = Field(default="memories", description="Recall memories, or dualmem's answer.")
    mode: Mode = Field(default="gated", description="`DualMemory.answer` mode when context='answer'.")
    tool_messages: bool = Field(
        default=False,
        description="Also store tool calls and results (they are then indexed as memories too).",
    )
    user_name: str | None = Field(
        default=None,
        description="The user's name: their messages are stored as said by it, so that a question "
        "naming the user finds them.",
    )


class DualMemMemory(_ChatFields, BaseMemory):
    """Chat memory for chat engines and agents, backed by dualmem.

    Every message put is stored in dualmem's lossless history (and indexed as memories) under
    `user_id`/`agent_id` and this chat's `session_id` ("chat" unless given, so that a memory
    rebuilt for each request continues the same conversation). `get` returns the session's last
    `recent_messages` messages and, first, a system message with what dualmem recalls for the
    input (or, without input, for the latest user message) from *all* the user's sessions:
    the relevant memories (`context="memories"`) or dualmem's answer (`context="answer"`).
    Tool calls and tool results are left out unless `tool_messages=True`: a recall tool's
    output must not come back as new memories. With extraction on (dualmem's default), a put
    returns once the messages are stored and extraction runs in dualmem's background worker
    (`background=False` waits for it).

    ```python
    from dualmem import DualMemory
    from llama_index.core.chat_engine import SimpleChatEngine
    from llama_index.memory.dualmem import DualMemMemory

    memory = DualMemMemory.from_memory(DualMemory(), user_id="alice")
    chat = SimpleChatEngine.from_defaults(llm=llm, memory=memory)
    ```
    """

    # deterministic, so that a memory rebuilt for each request continues the same chat
    session_id: str | None = Field(default=DEFAULT_SESSION, strict=True, description="This conversation.")
    recent_messages: int = Field(default=20, ge=0, description="Session messages `get` returns.")
    background: bool = Field(
        default=True, description="Extract in dualmem's background worker; a put only stores."
    )

    @classmethod
    def class_name(cls) -> str:
        return "DualMemMemory"

    @classmethod
    def from_defaults(  # type: ignore[override]
        cls, *, path: str | Path | None = None, llm: BaseLLM | None = None, **fields: Any
    ) -> DualMemMemory:
        """A new `DualMemory(path=path, llm=llm)` (local model, ~/.dualmem by default)."""
        memory = DualMemory(path=path, llm=llm)
        try:
            return cls(memory=memory, **fields)
        except Exception:
            memory.close()  # a bad field: nobody else holds this store to close it
            raise

    @classmethod
    def from_memory(cls, memory: DualMemory, **fields: Any) -> DualMemMemory:
        """Share an existing `DualMemory` (one store can serve many users and sessions)."""
        return cls(memory=memory, **fields)

    async def aget(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        recent = recent_chat(await self.scoped_memory.ahistory(), self.recent_messages)
        chat = [to_chat_message(t) for t in recent]
        query = input.content if isinstance(input, ChatMessage) else input
        query = query or last_user_text(chat)
        if not query:
            return chat
        recalled = await arecall(
            self.scoped_memory, query, context=self.context, k=self.k, mode=self.mode,
            shown=frozenset(t.id for t in recent),
        )
        if not recalled:
            return chat
        return [ChatMessage(role=MessageRole.SYSTEM, content=f"{CONTEXT_HEADER}\n{recalled}"), *chat]

    async def aget_all(self) -> list[ChatMessage]:
        return [to_chat_message(t) for t in await self.scoped_memory.ahistory()]

    async def aput(self, message: ChatMessage) -> None:
        await self.aput_messages([message])

    async def aput_messages(self, messages: list[ChatMessage]) -> None:
        # one add per batch: dualmem extracts from the batch together, with the recent turns
        converted = to_dualmem_messages(messages, tools=self.tool_messages, user_name=self.user_name)
        if converted:
            await self.scoped_memory.aadd(converted, background=self.background)

    async def aset(self, messages: list[ChatMessage]) -> None:
        """Replace this session's messages (and the memories that came from them). A bad
        message raises `InvalidInputError` and leaves the session as it was."""
        converted = to_dualmem_messages(messages, tools=self.tool_messages, user_name=self.user_name)
        await self.areset()
        if converted:
            await self.scoped_memory.aadd(converted, background=self.background)

    async def areset(self) -> None:
        """Forget this session only; the user's other sessions stay."""
        await self.scoped_memory.adelete_all()

    def get(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        return run_sync(self.aget(input, **kwargs))

    def get_all(self) -> list[ChatMessage]:
        return run_sync(self.aget_all())

    def put(self, message: ChatMessage) -> None:
        run_sync(self.aput(message))

    def put_messages(self, messages: list[ChatMessage]) -> None:
        run_sync(self.aput_messages(messages))

    def set(self, messages: list[ChatMessage]) -> None:
        run_sync(self.aset(messages))

    def reset(self) -> None:
        run_sync(self.areset())


class DualMemBlock(_ChatFields, BaseMemoryBlock[str]):
    """dualmem as a long-term block of llama-index's `Memory` (what agents use by default).

    `Memory` keeps the recent chat itself and flushes older messages to this block, which stores
    them in dualmem (under `session_id`, else the `Memory`'s session). Before each LLM call the
    block recalls, for the latest user message, the relevant memories or dualmem's answer.

    ```python
    from llama_index.core.memory import Memory
    block = DualMemBlock(memory=DualMemory(), user_id="alice")
    memory = Memory.from_defaults(session_id="chat-1", memory_blocks=[block])
    ```
    """

    name: str = Field(default="dualmem", description="The block's name in the memory template.")
    description: str | None = Field(default="Long-term memories of the user, recalled by dualmem.")

    async def _aget(self, messages: list[ChatMessage] | None = None, **block_kwargs: Any) -> str:
        query = last_user_text(messages or [])
        if not query:
            return ""
        return await arecall(self.scoped_memory, query, context=self.context, k=self.k, mode=self.mode)

    async def _aput(self, messages: list[ChatMessage]) -> None:
        converted = to_dualmem_messages(messages, tools=self.tool_messages, user_name=self.user_name)
        if not converted:
            return
        # `Memory` stamps its session on the messages it flushes
        session = self.session_id or messages[0].additional_kwargs.get("session_id")
        scoped = self.memory.scoped(user_id=self.user_id, agent_id=self.agent_id, session_id=session)
        await scoped.aadd(converted)
