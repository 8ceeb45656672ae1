"""`DualMemChatMessageHistory`: one session's messages, kept in dualmem's lossless history."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any

from dualmem import DualMemory, ScopedMemory, Turn
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage

__all__ = ["DualMemChatMessageHistory"]

# LangChain message type -> dualmem turn role (anything else keeps its own name)
_ROLE_OF_TYPE = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_MESSAGE_OF_ROLE: dict[str, type[BaseMessage]] = {
    "user": HumanMessage,
    "human": HumanMessage,
    "assistant": AIMessage,
    "ai": AIMessage,
    "system": SystemMessage,
}


_MESSAGE_ID = "message_id"  # the turn metadata key holding the LangChain message id


def turn_to_message(turn: Turn) -> BaseMessage:
    """A stored turn as a LangChain message, with the id the message was added with."""
    cls = _MESSAGE_OF_ROLE.get(turn.role)
    message_id = turn.metadata.get(_MESSAGE_ID, turn.id)
    if cls is None:
        return ChatMessage(content=turn.text, role=turn.role, name=turn.speaker, id=message_id)
    return cls(content=turn.text, name=turn.speaker, id=message_id)


def message_to_turn(message: BaseMessage, session_id: str) -> dict[str, Any] | None:
    """A message as a dualmem message dict, or None when it has no text (e.g. a bare tool call).

    Turn ids are unique per user, but a client may reuse a message id in another session,
    or give two different messages one id: the turn id is derived from the session, the
    message id and the content, so each of those is stored, while re-adding the same message
    to the same session is a no-op. A message without an id gets one (kept in the metadata).
    """
    text = message.text
    if not text.strip():
        return None
    role = message.role if isinstance(message, ChatMessage) else _ROLE_OF_TYPE.get(message.type)
    role = role or message.type
    message_id = message.id or str(uuid.uuid4())
    key = json.dumps([session_id, message_id, role, message.name, text], ensure_ascii=False)
    turn: dict[str, Any] = {
        "id": "lc-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32],
        "role": role, "content": text, "metadata": {_MESSAGE_ID: message_id},
    }
    if message.name:
        turn["speaker"] = message.name
    return turn


class DualMemChatMessageHistory(BaseChatMessageHistory):
    """The messages of one session, read from and written to a `DualMemory`.

    Added messages are stored losslessly and indexed (facts are extracted when the memory's
    config says so), so what is said in one session can be recalled in later ones.
    `add_messages` returns once the messages are stored: a chain that saves history after
    each reply must not wait seconds for extraction, so it runs in dualmem's background
    worker (`background=False` waits for it; `memory.flush()` waits later).
    `clear()` forgets this session only; the user's other sessions stay.

    ```python
    from langchain_dualmem import DualMemChatMessageHistory

    history = DualMemChatMessageHistory(memory, user_id="alice", session_id="s1")
    history.add_user_message("I moved to Paris in 2021.")
    history.messages            # [HumanMessage("I moved to Paris in 2021.")]
    ```
    """

    def __init__(
        self,
        memory: DualMemory,
        *,
        session_id: str,
        user_id: str | None = None,
        agent_id: str | None = None,
        extract: bool | None = None,
        background: bool = True,
    ) -> None:
        self.memory = memory
        self.user_id, self.agent_id, self.session_id = user_id, agent_id, session_id
        self.extract = extract
        self.background = background
        self.scoped_memory  # noqa: B018 - bad ids fail here, not on first use

    @property
    def scoped_memory(self) -> ScopedMemory:
        return self.memory.scoped(user_id=self.user_id, agent_id=self.agent_id, session_id=self.session_id)

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        return [turn_to_message(t) for t in self.scoped_memory.history()]

    async def aget_messages(self) -> list[BaseMessage]:
        return [turn_to_message(t) for t in await self.scoped_memory.ahistory()]

    def _turns(self, messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
        return [t for m in messages if (t := message_to_turn(m, self.session_id)) is not None]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        turns = self._turns(messages)
        if turns:
            self.scoped_memory.add(turns, extract=self.extract, background=self.background)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        turns = self._turns(messages)
        if turns:
            await self.scoped_memory.aadd(turns, extract=self.extract, background=self.background)

    def clear(self) -> None:
        self.scoped_memory.delete_all()

    async def aclear(self) -> None:
        await self.scoped_memory.adelete_all()
