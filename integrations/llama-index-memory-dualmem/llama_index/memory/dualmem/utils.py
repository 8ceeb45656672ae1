"""Conversions between llama-index objects and dualmem's, shared by every class of the package."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock
from llama_index.core.schema import NodeWithScore, TextNode
from pydantic_core import PydanticSerializationError

from dualmem import (
    Fact,
    InvalidInputError,
    Memory,
    Mode,
    ScopedMemory,
    ScopeError,
    Turn,
    check_messages,
    format_memories,
)

__all__ = [
    "Context",
    "arecall",
    "fact_node",
    "last_user_text",
    "memory_node",
    "only_questions",
    "recent_chat",
    "to_chat_message",
    "to_dualmem_messages",
]

Context = Literal["memories", "answer"]

# llama-index roles -> the roles dualmem stores (and prompts show)
_ROLES = {
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "tool",
}
_TOOL_ROLES = (MessageRole.TOOL, MessageRole.FUNCTION)
# turn metadata key holding a message that is more than its text (tool calls, tool results)
_MESSAGE_KEY = "llama_index_message"
# the key `BaseMemoryBlock.aput` stamps on every message; not a reason to keep the whole message
_IGNORED_KWARGS = {"session_id"}


def _is_plain(message: ChatMessage) -> bool:
    return all(isinstance(b, TextBlock) for b in message.blocks) and not (
        set(message.additional_kwargs) - _IGNORED_KWARGS
    )


def _describe(message: ChatMessage) -> str:
    """Readable text for a message without text content (an assistant's tool calls)."""
    parts = []
    for block in message.blocks:
        if isinstance(block, ToolCallBlock):
            args = json.dumps(block.tool_kwargs, ensure_ascii=False, default=str)
            parts.append(f"[called tool {block.tool_name}({args})]")
        elif not isinstance(block, TextBlock):
            parts.append(f"[{block.block_type}]")
    return " ".join(parts)


def _is_tool_traffic(message: ChatMessage) -> bool:
    return (
        message.role in _TOOL_ROLES
        or any(isinstance(b, ToolCallBlock) for b in message.blocks)
        or "tool_calls" in message.additional_kwargs
    )


def only_questions(text: str) -> bool:
    """Whether every sentence of the text is a question: it asks, and states no fact."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    return bool(sentences) and all(s.endswith("?") for s in sentences)


def to_dualmem_messages(
    messages: Sequence[ChatMessage], *, tools: bool, user_name: str | None = None
) -> list[dict[str, Any]]:
    """ChatMessages -> dualmem message dicts; messages with nothing to store are skipped.

    `tools=False` drops tool results and keeps only the words of an assistant's tool-calling
    message: what a recall tool returns must not be stored (and indexed) as new memories.
    With `tools=True`, messages that carry more than text keep their full serialised form in
    the turn's metadata, so `to_chat_message` gives them back as they were (a chat model
    rejects a tool result whose call is missing).

    What a chat stores for search: a user message made only of questions is kept in the
    history but not searchable (it states no fact, and would outrank the fact it asks about);
    with `user_name`, user messages are stored as said by that name, so a question naming the
    user ("What is Maya's dog called?") finds them.

    Every message is checked as `DualMemory.add` would check it, and errors name it by its
    place in `messages`: a bad message raises `InvalidInputError` before anything is written
    (a `set` deletes the session only after this), not an AttributeError or halfway.
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidInputError(f"messages must be a list of ChatMessage, got {type(messages).__name__}")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, ChatMessage):
            raise InvalidInputError(f"message {i} must be a ChatMessage, got {type(message).__name__}")
        text = message.content or ""
        whole = not _is_plain(message)
        if not tools and _is_tool_traffic(message):
            if message.role in _TOOL_ROLES:
                continue
            whole = False
        elif not text.strip():
            text = _describe(message)
        if not text.strip():
            continue
        try:
            metadata: dict[str, Any] = {_MESSAGE_KEY: message.model_dump(mode="json")} if whole else {}
        except (PydanticSerializationError, TypeError, ValueError) as e:  # an object in additional_kwargs
            raise InvalidInputError(f"message {i} cannot be stored as JSON: {e}") from e
        turn = {"role": _ROLES.get(message.role, "user"), "content": text, "metadata": metadata}
        if message.role == MessageRole.USER:
            if only_questions(text):
                metadata["searchable"] = False
            if user_name:
                turn["speaker"] = user_name
        check_messages(turn, names=[f"message {i}"])
        out.append(turn)
    return out


def to_chat_message(turn: Turn) -> ChatMessage:
    saved = turn.metadata.get(_MESSAGE_KEY)
    if isinstance(saved, dict):
        return ChatMessage.model_validate(saved)
    role = turn.role if turn.role in MessageRole._value2member_map_ else MessageRole.USER
    return ChatMessage(role=role, content=turn.text)


def recent_chat(turns: list[Turn], n: int) -> list[Turn]:
    """The last n turns, never starting with a tool result cut off from its call."""
    recent = turns[-n:] if n > 0 else []
    while recent and _is_tool(recent[0]):
        recent = recent[1:]
    return recent


def _is_tool(turn: Turn) -> bool:
    return to_chat_message(turn).role in _TOOL_ROLES


def last_user_text(messages: Sequence[ChatMessage]) -> str | None:
    for message in reversed(messages):
        if message.role == MessageRole.USER and message.content and message.content.strip():
            return message.content
    return None


async def arecall(
    memory: ScopedMemory,
    query: str,
    *,
    context: Context,
    k: int | None,
    mode: Mode,
    shown: frozenset[str] = frozenset(),
) -> str:
    """What a model should be shown for `query`: memory lines, or dualmem's answer. '' if none.

    A chat's memories are recalled from every session of the user (or agent): the session only
    narrows the recent chat, and remembering earlier sessions is the point of long-term
    memory (a chat scoped by session alone recalls from that session). Memories made only
    from the turns in `shown` (the recent chat the model already sees) are left out.
    """
    memory = memory.widened()
    if context == "answer":
        try:
            answer = await memory.aanswer(query, k=k, mode=mode)
        except ScopeError:  # nothing stored for this scope yet (ids were checked on construction)
            return ""
        if not answer.found:
            return ""
        return f"Question: {query}\nAnswer from memory: {answer.text}"
    k = k or memory.memory.config.top_k
    # ask for more, as the shown ones are dropped after ranking
    memories = await memory.asearch(query, k=k + len(shown))
    memories = [m for m in memories if not (m.source_turn_ids and set(m.source_turn_ids) <= shown)][:k]
    return "\n".join(f"- {line}" for line in format_memories(memories))


def _node(text: str, metadata: dict[str, Any], score: float | None, id_: str | None = None) -> NodeWithScore:
    metadata = {key: value for key, value in metadata.items() if value is not None}
    hidden = [key for key in metadata if key not in ("event_date", "timestamp", "speaker")]
    node = TextNode(
        text=text,
        metadata=metadata,
        # ids and bookkeeping stay out of what the LLM reads and what gets embedded
        excluded_llm_metadata_keys=hidden,
        excluded_embed_metadata_keys=hidden,
        **({"id_": id_} if id_ else {}),
    )
    return NodeWithScore(node=node, score=score)


def memory_node(memory: Memory) -> NodeWithScore:
    """A dualmem memory as a node: id = memory id, its provenance and scope in the metadata."""
    return _node(
        memory.text,
        {
            **memory.metadata,
            "kind": "memory",
            "memory_id": memory.id,
            "source_turn_ids": memory.source_turn_ids,
            "event_date": memory.event_date,
            "user_id": memory.user_id,
            "agent_id": memory.agent_id,
            "session_id": memory.session_id,
            "created_at": memory.created_at.isoformat(),
            "updated_at": memory.updated_at.isoformat(),
        },
        memory.score,
        memory.id,
    )


def fact_node(fact: Fact) -> NodeWithScore:
    """A fact found by deliberation over the raw history, with the turns it came from."""
    return _node(
        fact.text,
        {"kind": "fact", "turn_ids": fact.turn_ids, "timestamp": fact.timestamp, "speaker": fact.speaker},
        fact.score,
    )
