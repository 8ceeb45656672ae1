"""A LangChain agent that remembers the user across sessions, with dualmem.

Session 1: the user tells the agent about themselves; the agent saves it with the `remember`
tool and the transcript goes to `DualMemChatMessageHistory`. Session 2: a fresh agent (no
chat history) answers from memory with the `recall_memory` tool.

    .venv/bin/python examples/langchain_agent.py           # offline: scripted agent and memory model
    .venv/bin/python examples/langchain_agent.py --local   # dualmem's real local model (minutes on CPU)
    OPENAI_API_KEY=... [OPENAI_BASE_URL=...] [OPENAI_MODEL=...] \\
        .venv/bin/python examples/langchain_agent.py        # real agent model (pip install langchain-openai)

Needs `pip install ./integrations/langchain-dualmem langchain`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_dualmem import DualMemChatMessageHistory, create_recall_tool, create_remember_tool

from dualmem import DualMemory
from dualmem.testing import ScriptedLLM

USER = "alice"
SESSION_1 = "I'm Alice. I moved to Lisbon in March 2024 and I adopted a dog called Pixel."
SESSION_2 = "Remind me, where do I live these days?"


class ScriptedToolModel(GenericFakeChatModel):
    """Replays scripted messages (incl. tool calls); fake models lack bind_tools, so add it."""

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kw: Any) -> ScriptedToolModel:
        return self


def _call(name: str, args: dict[str, str]) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call_{name}", "type": "tool_call"}])


def scripted_model(session: int) -> BaseChatModel:
    """What a tool-calling model would do in each session, replayed offline."""
    script = {
        1: [_call("remember", {"text": "Alice moved to Lisbon in March 2024 and has a dog called Pixel."}),
            AIMessage("Nice to meet you, Alice! I'll remember that.")],
        2: [_call("recall_memory", {"question": "Where does Alice live?"}),
            AIMessage("You live in Lisbon (you moved there in March 2024).")],
    }[session]
    return ScriptedToolModel(messages=iter(script))


def openai_model(session: int) -> BaseChatModel:
    from langchain.chat_models import init_chat_model  # needs the langchain-openai package

    return init_chat_model(os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), model_provider="openai",
                           base_url=os.environ.get("OPENAI_BASE_URL"))


def offline_memory(path: str) -> DualMemory:
    # the memory's own model is scripted too: the retrieval (embeddings + BM25) is real
    llm = ScriptedLLM(by_task={"answer": lambda request: "Lisbon"})
    return DualMemory(path=path, llm=llm, extract=False)


def run_session(memory: DualMemory, model: BaseChatModel, session_id: str, text: str) -> list[BaseMessage]:
    tools = [create_recall_tool(memory, user_id=USER),
             create_remember_tool(memory, user_id=USER, session_id=session_id)]
    agent = create_agent(model, tools=tools, system_prompt=(
        "You are a helpful assistant with long-term memory. Save facts the user tells you "
        "with `remember`; use `recall_memory` for anything from earlier conversations."))
    messages = agent.invoke({"messages": [HumanMessage(text)]})["messages"]
    # keep the conversation (not the tool results, which would echo memory back into memory)
    history = DualMemChatMessageHistory(memory, user_id=USER, session_id=session_id)
    history.add_messages([m for m in messages if not isinstance(m, ToolMessage)])
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls:
            print(f"  agent calls {m.tool_calls[0]['name']}({m.tool_calls[0]['args']})")
        elif isinstance(m, ToolMessage):
            print("  tool ->", str(m.content).replace("\n", " | "))
            if m.artifact:  # the recall tool's artifact is the full Answer: show its evidence
                print("  evidence:", [mem["text"] for mem in m.artifact["memories"][:2]])
        else:
            print(f"  {m.type}: {m.text}")
    return messages


def main(argv: Sequence[str] | None = None,
         model_factory: Callable[[int], BaseChatModel] | None = None) -> list[BaseMessage]:
    """Run both sessions; returns the messages of session 2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="use the real local model in dualmem")
    parser.add_argument("--data-dir", help="where dualmem stores data (default: a temp dir)")
    args = parser.parse_args(argv)
    use_openai = model_factory is None and bool(os.environ.get("OPENAI_API_KEY"))
    model_factory = model_factory or (openai_model if use_openai else scripted_model)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.data_dir or tmp
        # with --local or an OpenAI key, DualMemory's own defaults (Config.from_env) pick the model
        memory = DualMemory(path=path) if args.local or use_openai else offline_memory(path)
        print("session 1")
        run_session(memory, model_factory(1), "session-1", SESSION_1)
        print("session 2 (new agent, no chat history)")
        messages = run_session(memory, model_factory(2), "session-2", SESSION_2)
        memory.close()
    return messages


if __name__ == "__main__":
    main()
