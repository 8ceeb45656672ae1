"""`DualMemChatMessageHistory`: one session's messages, kept in dualmem's lossless history."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from dualmem import DualMemory, ScopedMemory, Turn
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)

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


# turn metadata key holding a message that is more than its text (tool calls, tool results)
_MESSAGE_KEY = "langchain_message"


# turn metadata key holding the id a message was added with (the turn id is derived from it)
_MESSAGE_ID = "message_id"


def turn_to_message(turn: Turn) -> BaseMessage:
    """A stored turn as a LangChain message, with the id it was added with."""
    saved = turn.metadata.get(_MESSAGE_KEY)
    if isinstance(saved, dict):  # tool traffic, stored whole: back exactly as it was
        return messages_from_dict([saved])[0]
    cls = _MESSAGE_OF_ROLE.get(turn.role)
    message_id = turn.metadata.get(_MESSAGE_ID, turn.id)
    if cls is None:
        return ChatMessage(content=turn.text, role=turn.role, name=turn.speaker, id=message_id)
    return cls(content=turn.text, name=turn.speaker, id=message_id)


def turn_id(session_id: str, message_id: str, occurrence: int = 0) -> str:
    """The turn id of a message: turn ids are unique per user, but a client may reuse a message
    id in another session, or give several messages of one batch the same id. Re-adding a
    message (same session, id and place among its namesakes) finds the same turn."""
    key = json.dumps([session_id, message_id, occurrence], ensure_ascii=False)
    return "lc-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def only_questions(text: str) -> bool:
    """Whether every sentence of the text is a question: it asks, and states no fact."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    return bool(sentences) and all(s.endswith("?") for s in sentences)


def _is_tool_traffic(message: BaseMessage) -> bool:
    return isinstance(message, ToolMessage) or (isinstance(message, AIMessage) and bool(message.tool_calls))


def message_to_turn(message: BaseMessage, *, tools: bool = False) -> dict[str, Any] | None:
    """A message as a dualmem message dict, or None when there is nothing to store.

    `tools=False` drops tool results and keeps only the words of a tool-calling AI message
    (a model API refuses a tool result whose call is missing, and a recall tool's output must
    not come back as new memories). `tools=True` stores tool traffic whole, so that
    `turn_to_message` gives back the exact message (tool_call_id, tool_calls) for the API.
    """
    text = message.text
    metadata: dict[str, Any] = {}
    if _is_tool_traffic(message):
        if tools:
            metadata[_MESSAGE_KEY] = message_to_dict(message)
            calls = message.tool_calls if isinstance(message, AIMessage) else []
            described = (f"[called tool {c['name']}({json.dumps(c['args'])})]" for c in calls)
            text = text.strip() or " ".join(described)
        elif isinstance(message, ToolMessage):
            return None
    if not text.strip():
        return None
    role = message.role if isinstance(message, ChatMessage) else _ROLE_OF_TYPE.get(message.type)
    turn: dict[str, Any] = {"role": role or message.type, "content": text, "metadata": metadata}
    if message.name:
        turn["speaker"] = message.name
    if message.id:  # re-adding the same message is then a no-op (ids are unique per user)
        turn["id"] = metadata[_MESSAGE_ID] = message.id
    if isinstance(message, HumanMessage) and only_questions(text):
        # kept in the history, not searchable: it states no fact, and would outrank the fact
        metadata["searchable"] = False
    return turn


class DualMemChatMessageHistory(BaseChatMessageHistory):
    """The messages of one session, read from and written to a `DualMemory`.

    Added messages are stored losslessly and indexed (facts are extracted when the memory's
    config says so), so what is said in one session can be recalled in later ones.
    `add_messages` returns once the messages are stored: a chain that saves history after
    each reply must not wait seconds for extraction, so it runs in dualmem's background
    worker (`background=False` waits for it; `memory.flush()` waits later).
    `clear()` forgets this session only; the user's other sessions stay.
    A user message made only of questions is stored but not searchable (it states no fact and
    would outrank the fact it asks about); `HumanMessage(name="Maya")` stores it as said by
    Maya, so that questions naming her find it.
    Tool traffic is left out by default: tool results are dropped and a tool-calling AI
    message keeps only its words, so `messages` never holds a tool result without its call
    (which a chat model API refuses). `tool_messages=True` keeps both, whole and exact.

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
        tool_messages: bool = False,
    ) -> None:
        self.memory = memory
        self.user_id, self.agent_id, self.session_id = user_id, agent_id, session_id
        self.extract = extract
        self.background = background
        self.tool_messages = tool_messages
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
        turns, seen = [], Counter[str]()
        for m in messages:
            turn = message_to_turn(m, tools=self.tool_messages)
            if turn is None:
                continue
            # unique per session and place, not per user (see `turn_id`); a message without
            # an id gets one, which `messages` gives back, so re-adding it is a no-op
            message_id = m.id or str(uuid.uuid4())
            turn["id"] = turn_id(self.session_id, message_id, seen[message_id])
            turn["metadata"][_MESSAGE_ID] = message_id
            seen[message_id] += 1
            turns.append(turn)
        return turns

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
