"""A LlamaIndex agent that remembers the user across sessions, with dualmem.

Session 1: the user tells a `FunctionAgent` about themselves; `DualMemMemory` stores the chat in
dualmem. Session 2: a new chat (new session, empty chat history): the memory puts what dualmem
recalls from session 1 in front of the model, and the agent asks its `recall` tool (a
`DualMemQueryEngine`: the gated answer) before replying. Then the query engine is used directly.

    .venv/bin/python examples/llamaindex_agent.py           # offline: scripted agent and memory model
    .venv/bin/python examples/llamaindex_agent.py --local   # dualmem uses the real local model
    OPENAI_API_KEY=... [OPENAI_BASE_URL=...] [OPENAI_MODEL=...] \\
        .venv/bin/python examples/llamaindex_agent.py        # a real agent model (see below)

Needs `pip install ./integrations/llama-index-memory-dualmem`. For a real agent model also
`pip install llama-index-llms-openai` (OpenAI) or `llama-index-llms-openai-like` (any
OpenAI-compatible server given by OPENAI_BASE_URL: vLLM, Ollama, llama.cpp server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.agent.workflow import AgentInput, AgentOutput, FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms import LLM
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import QueryEngineTool
from llama_index.memory.dualmem import DualMemMemory, DualMemQueryEngine

from dualmem import ChatRequest, DualMemory
from dualmem.testing import ScriptedLLM, ScriptedReply

USER = "alice"
SESSION_1 = "I'm Alice. I moved to Lisbon in March 2024 and I adopted a dog called Pixel."
SESSION_2 = "Remind me, where do I live these days?"
SYSTEM_PROMPT = (
    "You are a helpful assistant with long-term memory. Use the `recall` tool for anything "
    "the user told you in earlier conversations."
)


def scripted_model(session: int) -> LLM:
    """What a tool-calling model would do in each session, replayed offline."""

    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        if session == 1:
            return ChatMessage(role="assistant", content="Nice to meet you, Alice! I'll remember that.")
        if messages[-1].role == MessageRole.TOOL:  # the recall tool answered
            return ChatMessage(role="assistant", content=f"You live in {messages[-1].content}.")
        call = ToolCallBlock(tool_call_id="call-1", tool_name="recall",
                             tool_kwargs={"input": "Where does Alice live?"})
        return ChatMessage(role="assistant", blocks=[call])

    return MockFunctionCallingLLM(response_generator=respond, is_chat_model=True)


def openai_model(session: int) -> LLM:
    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    try:
        if base_url := os.environ.get("OPENAI_BASE_URL"):
            from llama_index.llms.openai_like import OpenAILike

            return OpenAILike(model=model, api_base=base_url, api_key=os.environ["OPENAI_API_KEY"],
                              is_chat_model=True, is_function_calling_model=True)
        from llama_index.llms.openai import OpenAI

        return OpenAI(model=model)
    except ImportError as e:
        raise SystemExit(f"{e}: pip install llama-index-llms-openai (or llama-index-llms-openai-like)") from e


def offline_memory(path: str) -> DualMemory:
    """dualmem with a scripted reader; the retrieval (local embeddings + BM25) is real."""

    def answer(request: ChatRequest) -> ScriptedReply:
        # answers only from the memories in its prompt, like a real reader
        memories, _, question = request.messages[-1]["content"].rpartition("Question:")
        for word, (fact, reply) in {"live": ("Lisbon", "Lisbon"), "dog": ("Pixel", "Pixel")}.items():
            if word in question and fact in memories:
                return ScriptedReply(reply, confidence=0.95)
        return ScriptedReply("I don't know", confidence=0.3)

    return DualMemory(path=path, llm=ScriptedLLM(by_task={"answer": answer}), extract=False)


async def run_session(memory: DualMemory, llm: LLM, session_id: str, text: str) -> str:
    engine = DualMemQueryEngine(memory=memory, user_id=USER)  # mode="gated"
    recall = QueryEngineTool.from_defaults(
        engine, name="recall", description="Answer a question about the user from long-term memory."
    )
    agent = FunctionAgent(tools=[recall], llm=llm, system_prompt=SYSTEM_PROMPT)
    chat_memory = DualMemMemory.from_memory(memory, user_id=USER, session_id=session_id)
    print(f"  user: {text}")
    handler = agent.run(user_msg=text, memory=chat_memory)
    shown = False
    async for event in handler.stream_events():
        if isinstance(event, AgentInput) and not shown:
            shown = True
            context = [m.content or "" for m in event.input[1:] if m.role == MessageRole.SYSTEM]
            print("  memory context given to the model:")
            print(textwrap.indent("\n".join(context) or "(none)", "    "))
        elif isinstance(event, ToolCallResult):
            print(f"  agent calls {event.tool_name}({event.tool_kwargs}) -> {event.tool_output.content}")
    output: AgentOutput = await handler
    reply = str(output.response.content)
    print(f"  assistant: {reply}")
    return reply


def show_query_engine(memory: DualMemory) -> None:
    response = DualMemQueryEngine(memory=memory, user_id=USER).query("What is my dog called?")
    meta = response.metadata
    print(f"  answer: {response.response!r}  path={meta['path']}  reason: {meta['reason']}")
    if meta["gate"]:
        print(f"  gate: policy={meta['gate']['policy']} passed={meta['gate']['passed']}")
    for node in response.source_nodes[:3]:
        print(f"  source ({node.score:.2f}): {node.node.get_content()}")


def main(argv: Sequence[str] | None = None, model_factory: Callable[[int], LLM] | None = None) -> str:
    """Run both sessions and the query engine; returns the agent's reply in session 2."""
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
        asyncio.run(run_session(memory, model_factory(1), "session-1", SESSION_1))
        print("session 2 (new chat, no chat history)")
        reply = asyncio.run(run_session(memory, model_factory(2), "session-2", SESSION_2))
        print("query engine")
        show_query_engine(memory)
        memory.close()
    return reply


if __name__ == "__main__":
    main()
