"""`dualmem mcp` with the MCP SDK's own client over stdio: every tool listed and called, the
scope defaults and errors, against a scripted model (tests/mcp_scripted_server.py) and through
the real `dualmem mcp` command (no model needed for the tools it calls)."""

from __future__ import annotations

import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

pytest.importorskip("mcp")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

SCRIPT = Path(__file__).with_name("mcp_scripted_server.py")
TOOLS = ["add_memory", "answer", "delete_memory", "forget", "get_history", "list_memories", "search_memory"]


@asynccontextmanager
async def connect(command: str, args: list[str], env: dict[str, str] | None = None):
    params = StdioServerParameters(command=command, args=args, env={**os.environ, **(env or {})})
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments):
    result = await session.call_tool(tool, arguments=arguments)
    if result.is_error:
        return RuntimeError("".join(c.text for c in result.content if c.type == "text"))
    structured = result.structured_content
    # a list comes back wrapped as {"result": [...]} (a dict is its own structure)
    return structured["result"] if set(structured) == {"result"} else structured


async def test_every_tool_over_stdio_with_a_scripted_model(tmp_path: Path) -> None:
    async with connect(sys.executable, [str(SCRIPT), str(tmp_path)]) as session:
        tools = (await session.list_tools()).tools
        assert sorted(t.name for t in tools) == TOOLS
        schema = next(t for t in tools if t.name == "answer").input_schema["properties"]
        assert {"question", "mode", "user_id", "agent_id", "session_id"} <= set(schema)

        added = await call(session, "add_memory", text="I moved to Lisbon in March 2024.",
                           user_id="alice", session_id="s1")
        assert len(added["turn_ids"]) == 1 and added["added"] == ["user: I moved to Lisbon in March 2024."]
        await call(session, "add_memory", text="My dog is called Pixel.", user_id="alice", session_id="s1")
        await call(session, "add_memory", text="I live in Oslo.", user_id="bob")

        # a query that shares a word with its memory: MiniLM finds "Where does Alice live?" about
        # as far from the Lisbon turn as from the dog's (cosines 0.18 and 0.19), a coin flip
        found = await call(session, "search_memory", query="Which city did Alice move to?", user_id="alice")
        assert "Lisbon" in found[0]["text"] and all("Oslo" not in m["text"] for m in found)
        assert [m["score"] for m in found] == sorted((m["score"] for m in found), reverse=True)

        answer = await call(session, "answer", question="Where does Alice live?", user_id="alice",
                            mode="fast")
        assert answer["text"] == "Lisbon" and answer["path"] == "fast"
        assert added["turn_ids"][0] in answer["evidence_turn_ids"]
        assert answer["tokens"]["calls"] == 1 and answer["tokens"]["total"] > 0
        gated = await call(session, "answer", question="Where does Alice live?", user_id="alice")
        assert gated["path"] in ("fast", "deliberate") and "reason" in gated

        history = await call(session, "get_history", user_id="alice", last=1)
        assert [t["text"] for t in history] == ["My dog is called Pixel."]
        memories = await call(session, "list_memories", user_id="alice")
        assert len(memories) == 2
        assert await call(session, "delete_memory", memory_id=memories[1]["id"], user_id="alice") == {
            "deleted": True}
        assert len(await call(session, "list_memories", user_id="alice")) == 1
        assert await call(session, "forget", turn_ids=added["turn_ids"], user_id="alice") == {
            "turns": 1, "memories": 1}
        assert await call(session, "forget", user_id="bob") == {"turns": 1, "memories": 1}
        assert await call(session, "list_memories", user_id="bob") == []


async def test_scope_defaults_and_errors(tmp_path: Path) -> None:
    async with connect(sys.executable, [str(SCRIPT), str(tmp_path)]) as session:
        error = await call(session, "add_memory", text="I like tea.")
        assert isinstance(error, RuntimeError) and "pass user_id" in str(error) and "--user-id" in str(error)
        error = await call(session, "add_memory", text="", user_id="alice")
        assert isinstance(error, RuntimeError) and "empty" in str(error)
        error = await call(session, "answer", question="Anything?", user_id="nobody")
        assert isinstance(error, RuntimeError) and "nothing is stored" in str(error)
        assert await call(session, "list_memories", user_id="alice") == []  # nothing written
    async with connect(sys.executable, [str(SCRIPT), str(tmp_path), "carol"]) as session:
        await call(session, "add_memory", text="I like tea.")
        assert [m["text"] for m in await call(session, "list_memories")] == ["user: I like tea."]
        assert await call(session, "list_memories", user_id="dave") == []  # an explicit id wins


async def test_the_dualmem_mcp_command_over_stdio(tmp_path: Path) -> None:
    """The real command: config from the environment, no model loaded by these tools."""
    env = {"DUALMEM_DATA_DIR": str(tmp_path), "DUALMEM_EXTRACT": "0", "DUALMEM_USER_ID": "alice"}
    command = str(Path(sys.executable).with_name("dualmem"))
    async with connect(command, ["mcp"], env) as session:
        assert sorted(t.name for t in (await session.list_tools()).tools) == TOOLS
        await call(session, "add_memory", text="My bib number is 4417.")
        assert (await call(session, "search_memory", query="bib 4417"))[0]["text"].endswith("4417.")
        assert [t["text"] for t in await call(session, "get_history")] == ["My bib number is 4417."]


async def test_the_dualmem_mcp_command_over_streamable_http_on_loopback(tmp_path: Path) -> None:
    import socket
    import subprocess

    import anyio
    from mcp.client.streamable_http import streamable_http_client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DUALMEM_DATA_DIR": str(tmp_path), "DUALMEM_EXTRACT": "0"}
    command = [str(Path(sys.executable).with_name("dualmem")), "mcp", "--transport", "http",
               "--port", str(port)]
    server = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):  # until it listens
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await anyio.sleep(0.1)
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            assert sorted(t.name for t in (await session.list_tools()).tools) == TOOLS
            await call(session, "add_memory", text="I keep bees.", user_id="alice")
            assert [m["text"] for m in await call(session, "list_memories", user_id="alice")] == [
                "user: I keep bees."]
    finally:
        server.terminate()
        server.wait(timeout=30)
