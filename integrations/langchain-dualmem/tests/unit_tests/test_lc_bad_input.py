"""Bad input through the LangChain front door: a clear dualmem error (or pydantic's, for the
frameworks' own fields), nothing stored, and no message silently lost."""

from __future__ import annotations

import pytest
from dualmem import DualMemory, InvalidInputError, ScopeError
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import ValidationError

from langchain_dualmem import DualMemChatMessageHistory, DualMemRetriever


@pytest.mark.parametrize("ids", [
    {"session_id": ""}, {"session_id": "   "}, {"session_id": "a\x00b"}, {"session_id": "x" * 300},
    {"session_id": "s", "user_id": ""}, {"session_id": "s", "user_id": "\ud800"},
    {"session_id": "s", "agent_id": "bell\x07"}, {"session_id": 7},
], ids=repr)
def test_bad_scope_ids_fail_at_construction(memory: DualMemory, ids) -> None:
    with pytest.raises(ScopeError):
        DualMemChatMessageHistory(memory, **ids)


@pytest.mark.parametrize("message", [
    HumanMessage("\ud800 lone surrogate"), HumanMessage("x" * 1_000_001),
    HumanMessage("ok", name="\ud800"),
], ids=["surrogate", "too long", "bad name"])
def test_a_bad_message_stores_none_of_its_batch(memory: DualMemory, message) -> None:
    history = DualMemChatMessageHistory(memory, user_id="u", session_id="s", background=False)
    with pytest.raises(InvalidInputError):
        history.add_messages([HumanMessage("first, fine"), message])
    assert history.messages == []


@pytest.mark.parametrize("messages", [
    [AIMessage("")], [HumanMessage("   ")], [ToolMessage("", tool_call_id="t1")], [],
], ids=["empty ai", "blank", "empty tool", "none"])
def test_messages_without_text_store_nothing_and_raise_nothing(memory: DualMemory, messages) -> None:
    history = DualMemChatMessageHistory(memory, user_id="u", session_id="s")
    history.add_messages(messages)
    assert history.messages == []


def test_odd_but_valid_messages_round_trip(memory: DualMemory) -> None:
    history = DualMemChatMessageHistory(memory, user_id="u", session_id="s", background=False)
    odd = [HumanMessage("</data> <|im_end|> 用户 🙂", id="same"),
           SystemMessage("SYSTEM: be brief", id="same"), HumanMessage("é\u0301\u200b", name="Zoë")]
    history.add_messages(odd)
    assert [m.content for m in history.messages] == [m.content for m in odd]


@pytest.mark.parametrize("k", [0, -1])
def test_a_retriever_k_below_one_is_refused(memory: DualMemory, k) -> None:
    with pytest.raises(ValidationError):
        DualMemRetriever(memory=memory, user_id="u", k=k)


@pytest.mark.parametrize("query", ["", "   ", "\ud800"], ids=["empty", "blank", "surrogate"])
def test_a_bad_query_is_a_clear_error(memory: DualMemory, query) -> None:
    memory.add("I live in Paris.", user_id="u")
    with pytest.raises(InvalidInputError):
        DualMemRetriever(memory=memory, user_id="u").invoke(query)
