"""A LangChain v1 agent with dualmem behind both of its memory hooks.

- `store=DualMemStore(memory)`: the agent's tools read and write `runtime.store` (LangMem's
  convention: namespace ("memories", user_id)); the items are dualmem memories.
- `middleware=[DualMemMiddleware(memory)]`: before each model call the memories relevant to the
  user's message are recalled into the system prompt; after the run the exchange is saved.

The user is named per run in `config["configurable"]["user_id"]`, the session by `thread_id`.

    .venv/bin/python examples/langchain_v1_agent.py          # offline: scripted agent and memory model
    OPENAI_API_KEY=... [OPENAI_MODEL=...] .venv/bin/python examples/langchain_v1_agent.py

Needs `pip install ./integrations/langchain-dualmem` (it brings langchain and langgraph).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from langchain.agents import create_agent
from langchain.tools import ToolRuntime, tool
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_dualmem import DualMemMiddleware, DualMemStore

from dualmem import DualMemory
from dualmem.testing import ScriptedLLM


@tool
def save_preference(name: str, value: str, runtime: ToolRuntime) -> str:
    """Save one of the user's preferences (e.g. name="diet", value="vegetarian")."""
    user = runtime.config["configurable"]["user_id"]
    runtime.store.put(("memories", user), name, {"text": f"The user's {name} preference: {value}."})
    return f"Saved {name}."


@tool
def find_preferences(query: str, runtime: ToolRuntime) -> str:
    """Search the user's saved preferences."""
    user = runtime.config["configurable"]["user_id"]
    items = runtime.store.search(("memories", user), query=query, limit=3)
    return "\n".join(item.value["text"] for item in items) or "Nothing saved yet."


class ScriptedToolModel(GenericFakeChatModel):
    """Replays scripted messages (incl. tool calls); fake models lack bind_tools, so add it."""

    def bind_tools(self, tools: Sequence[Any], **kw: Any) -> ScriptedToolModel:
        return self


def _call(tool_name: str, **args: str) -> AIMessage:
    call = {"name": tool_name, "args": args, "id": f"call_{tool_name}", "type": "tool_call"}
    return AIMessage("", tool_calls=[call])


def scripted_model() -> BaseChatModel:
    """What a tool-calling model would do over the two runs, replayed offline."""
    return ScriptedToolModel(messages=iter([
        _call("save_preference", name="diet", value="vegetarian"),
        AIMessage("Noted: you're vegetarian."),
        _call("find_preferences", query="diet"),
        AIMessage("How about a mushroom risotto? It's vegetarian."),
    ]))


def openai_model() -> BaseChatModel:
    from langchain.chat_models import init_chat_model  # needs the langchain-openai package

    return init_chat_model(os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), model_provider="openai")


def main(
    path: str | None = None, model_factory: Callable[[], BaseChatModel] | None = None
) -> list[BaseMessage]:
    """Two runs of one agent for alice; returns the messages of the second."""
    online = model_factory is None and bool(os.environ.get("OPENAI_API_KEY"))
    model_factory = model_factory or (openai_model if online else scripted_model)
    with tempfile.TemporaryDirectory() as tmp:
        # the memory's own model is scripted offline: retrieval (embeddings + BM25) is real
        # (with an OpenAI key, DualMemory's own defaults pick its model from the environment)
        memory = DualMemory(path=path or tmp, extract=False,
                            llm=None if online else ScriptedLLM(default="vegetarian"))
        agent = create_agent(
            model_factory(),
            tools=[save_preference, find_preferences],
            store=DualMemStore(memory, fields=["text"]),  # index the text, not the JSON
            middleware=[DualMemMiddleware(memory)],
            system_prompt="You are a cooking assistant. Save the user's preferences.",
        )
        for thread, text in [("monday", "I'm vegetarian, please remember that."),
                             ("tuesday", "What should I cook tonight?")]:
            config = {"configurable": {"user_id": "alice", "thread_id": thread}}
            messages = agent.invoke({"messages": [{"role": "user", "content": text}]}, config)["messages"]
            print(f"[{thread}]", " | ".join(f"{m.type}: {m.text or m.tool_calls[0]['name']}"
                                            for m in messages if m.type != "system"))
        memory.flush()
        print("alice's memories:", [m.text for m in memory.get_all(user_id="alice")])
        memory.close()
    return messages


if __name__ == "__main__":
    main()
