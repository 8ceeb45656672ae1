"""`dualmem mcp`: the memory as an MCP server (official `mcp` SDK), over stdio or streamable HTTP.

Tools: add_memory, search_memory, answer, get_history, list_memories, delete_memory, forget.
Every tool takes `user_id`/`agent_id`/`session_id`; the ones left out come from the server's
defaults (`--user-id`, ... or `DUALMEM_USER_ID`, ...). A call that ends with no scope at all
fails with a message naming what to pass. Errors of dualmem reach the client as tool errors
with their message; nothing is written on a rejected call.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, TypeVar

from .errors import ConfigError, DualMemError, ScopeError
from .memory import DualMemory
from .types import Answer, Memory, Mode, Turn

__all__ = ["build_server", "serve"]

P = ParamSpec("P")
T = TypeVar("T")
Transport = Literal["stdio", "http"]

INSTRUCTIONS = (
    "Long-term memory of earlier conversations. search_memory finds what was said (cheap); "
    "answer answers a question from memory and says how (fast path, or deliberation over the "
    "raw history when its quality gate doubts the fast answer). Save what the user tells you "
    "with add_memory."
)


def _mcp() -> Any:
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
        from mcp_types import ToolAnnotations
    except ImportError as e:
        raise ConfigError(f"dualmem mcp needs the MCP SDK ({e}): pip install 'dualmem[mcp]'") from e
    return MCPServer, ToolError, ToolAnnotations


def build_server(
    memory: DualMemory, *, user_id: str | None = None, agent_id: str | None = None,
    session_id: str | None = None,
) -> Any:
    """An `MCPServer` whose tools call `memory`, with these scope ids as the defaults."""
    MCPServer, ToolError, ToolAnnotations = _mcp()
    defaults = {"user_id": user_id, "agent_id": agent_id, "session_id": session_id}
    if any(defaults.values()):
        memory.scoped(**defaults)  # bad default ids fail at start, not on the first call
    server = MCPServer("dualmem", instructions=INSTRUCTIONS)

    def scope(ids: dict[str, str | None]) -> dict[str, str | None]:
        merged = {key: ids[key] if ids[key] is not None else defaults[key] for key in defaults}
        if not any(merged.values()):
            raise ScopeError(
                "no scope: pass user_id (or agent_id / session_id) in the tool arguments, or start "
                "the server with --user-id ... (or DUALMEM_USER_ID=...)"
            )
        return merged

    def tool(read_only: bool = False, destructive: bool = False):
        """Register a tool whose dualmem errors reach the client as readable tool errors."""
        def register(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
            @functools.wraps(fn)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                try:
                    return await fn(*args, **kwargs)
                except DualMemError as e:
                    raise ToolError(str(e)) from e

            hints = ToolAnnotations(read_only_hint=read_only, destructive_hint=destructive)
            server.add_tool(wrapper, annotations=hints)
            return fn
        return register

    @tool()
    async def add_memory(
        text: str, role: str = "user", speaker: str | None = None, user_id: str | None = None,
        agent_id: str | None = None, session_id: str | None = None, wait: bool = False,
    ) -> dict[str, Any]:
        """Store a message (what the user said, or a fact to remember) in long-term memory.
        It is stored at once; fact extraction runs in the background unless wait=true."""
        ids = scope({"user_id": user_id, "agent_id": agent_id, "session_id": session_id})
        message = {"role": role, "content": text, **({"speaker": speaker} if speaker else {})}
        result = await memory.aadd(message, **ids, background=not wait)
        return {
            "turn_ids": [t.id for t in result.turns], "added": [m.text for m in result.added],
            "updated": [m.text for m in result.updated], "pending": result.pending,
            "skipped_duplicates": result.skipped_duplicates, "error": result.error,
        }

    @tool(read_only=True)
    async def search_memory(
        query: str, k: int = 10, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """The memories most relevant to a query, best first (hybrid dense + keyword search;
        no model call). `score` is the ranking score, `cosine` the embedding similarity."""
        ids = scope({"user_id": user_id, "agent_id": agent_id, "session_id": session_id})
        return [_memory(m) for m in await memory.asearch(query, **ids, k=k)]

    @tool(read_only=True)
    async def answer(
        question: str, mode: Mode = "gated", user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """Answer a question from memory. mode: gated (default: the fast answer, checked by the
        quality gate and escalated to deliberation over the raw history when it fails), fast, full."""
        ids = scope({"user_id": user_id, "agent_id": agent_id, "session_id": session_id})
        return _answer(await memory.aanswer(question, **ids, mode=mode))

    @tool(read_only=True)
    async def get_history(
        last: int = 20, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """The newest raw messages of the scope, oldest first, exactly as stored."""
        ids = scope({"user_id": user_id, "agent_id": agent_id, "session_id": session_id})
        return [_turn(t) for t in await memory.ahistory(**ids, last=last)]

    @tool(read_only=True)
    async def list_memories(
        limit: int = 100, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every memory of the scope (at most `limit`), oldest first."""
        ids = scope({"user_id": user_id, "agent_id": agent_id, "session_id": session_id})
        return [_memory(m) for m in await memory.aget_all(**ids, limit=limit)]

    @tool(destructive=True)
    async def delete_memory(
        memory_id: str, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """Delete one memory by id (the messages it came from stay in the history)."""
        ids = scope({"user_id": user_id, "agent_id": agent_id, "session_id": session_id})
        return {"deleted": await memory.adelete(memory_id, **ids)}

    @tool(destructive=True)
    async def forget(
        turn_ids: list[str] | None = None, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, int]:
        """Forget for good: the given messages (turn_ids), or everything of the scope when none
        are given, with every memory made from them."""
        ids = scope({"user_id": user_id, "agent_id": agent_id, "session_id": session_id})
        if turn_ids is None:
            return await memory.adelete_all(**ids)
        return await memory.aforget(turn_ids, **ids)

    return server


def serve(
    memory: DualMemory, *, transport: Transport = "stdio", host: str = "127.0.0.1", port: int = 8765,
    user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None,
) -> None:
    """Run the server until it is stopped: stdio, or streamable HTTP at http://host:port/mcp."""
    server = build_server(memory, user_id=user_id, agent_id=agent_id, session_id=session_id)
    try:
        if transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=host, port=port)
    finally:
        memory.close()


def _memory(m: Memory) -> dict[str, Any]:
    return {
        "id": m.id, "text": m.text, "score": m.relevance, "cosine": m.score, "event_date": m.event_date,
        "source_turn_ids": m.source_turn_ids, "session_id": m.session_id,
        "created_at": m.created_at.isoformat(), "updated_at": m.updated_at.isoformat(),
    }


def _turn(t: Turn) -> dict[str, Any]:
    return {"id": t.id, "role": t.role, "speaker": t.speaker, "text": t.text,
            "timestamp": t.timestamp.isoformat(), "session_id": t.session_id}


def _answer(a: Answer) -> dict[str, Any]:
    usage = a.total_usage
    return {
        "text": a.reply, "found": a.found, "path": a.path, "reason": a.reason, "degraded": a.degraded,
        "evidence_turn_ids": a.evidence.turn_ids or [t for m in a.memories for t in m.source_turn_ids],
        "memory_ids": [m.id for m in a.memories],
        "tokens": {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens,
                   "total": usage.total_tokens, "calls": usage.calls},
    }
