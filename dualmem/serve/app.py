"""The REST API over `DualMemory`, and the inspector page, in one ASGI app.

Each /v1 route mirrors one public method and is a thin adapter: the scope's ids come as query
parameters on every call (`memory.scoped(...)` checks them, so a call without one is a 422),
the body's shape is a pydantic model (so `/openapi.json` documents it), and the library checks
the values before anything is written. Routes are `async` and await the `a*` methods: the
library's blocking work already runs in threads, so the event loop stays free.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException

from ..errors import ConfigError
from ..memory import AddResult, DualMemory, ReindexResult
from ..scoped import ScopedMemory
from ..types import Answer, Memory, Mode, Policy, Scope, StrategyName, Turn
from .guard import ServeSettings, protect, require_key

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
# the page loads only its own files: no CDN, no inline script, nothing framed elsewhere
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(_Body):
    """One message, as `DualMemory.add` takes it (`content`, or `text`)."""

    content: str | None = None
    text: str | None = None
    role: str | None = Field(None, description="user (default), assistant, ...")
    speaker: str | None = Field(None, description="who spoke, e.g. a name")
    timestamp: str | float | None = Field(None, description="ISO-8601 or epoch seconds")
    id: str | None = Field(None, description="a turn id (default: a new UUID); re-adding an id adds nothing")
    metadata: dict[str, Any] | None = None


class AddRequest(_Body):
    messages: list[Message]
    timestamp: str | float | None = Field(None, description="date of messages that carry none")
    extract: bool | None = Field(
        None, description="extract facts (default: the server's config) or index raw turns"
    )
    background: bool = Field(False, description="return once stored; extract in a worker")


class SearchRequest(_Body):
    query: str
    k: int | None = Field(None, description="how many memories (default: the config's top_k)")


class AnswerRequest(_Body):
    question: str
    k: int | None = None
    mode: Mode = "gated"
    policy: Policy | None = Field(None, description="the gate's policy (default: the config's)")
    tiered: bool | None = None
    deliberate: bool = Field(True, description="false: run the gate but keep the fast answer")
    strategy: StrategyName | None = Field(None, description="System 2's strategy (default: the config's)")


class ReindexRequest(_Body):
    extract: bool | None = None


class Deleted(BaseModel):
    deleted: bool


class Forgotten(BaseModel):
    turns: int
    memories: int


class Info(BaseModel):
    version: str
    demo: Scope | None = Field(description="the scope `serve --demo` loaded")
    runs: list[str] = Field(description="benchmark output folders this server can show")


def scoped(
    request: Request,
    user_id: Annotated[str | None, Query(description="scope: the user (the hard partition)")] = None,
    agent_id: Annotated[str | None, Query(description="scope: the agent")] = None,
    session_id: Annotated[str | None, Query(description="scope: the session")] = None,
) -> ScopedMemory:
    """The memory bound to the call's scope; at least one id is required (`ScopeError`)."""
    memory: DualMemory = request.app.state.memory
    return memory.scoped(user_id=user_id, agent_id=agent_id, session_id=session_id)


Scoped = Annotated[ScopedMemory, Depends(scoped)]
api = APIRouter(prefix="/v1")


@api.post("/turns", status_code=201, tags=["write"])
async def add(body: AddRequest, memory: Scoped) -> AddResult:
    """Store messages losslessly, then index them (`DualMemory.add`)."""
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    return await memory.aadd(
        messages, timestamp=body.timestamp, extract=body.extract, background=body.background
    )


@api.get("/turns", tags=["read"])
async def history(
    memory: Scoped, since: str | None = None, until: str | None = None,
    limit: Annotated[int | None, Query(description="the oldest n")] = None,
    last: Annotated[int | None, Query(description="the newest n")] = None,
) -> list[Turn]:
    """The scope's raw turns in the order they were added (`DualMemory.history`)."""
    return await memory.ahistory(since=since, until=until, limit=limit, last=last)


@api.get("/memories", tags=["read"])
async def memories(memory: Scoped, limit: int | None = None) -> list[Memory]:
    """Every memory of the scope, oldest first (`DualMemory.get_all`)."""
    return await memory.aget_all(limit=limit)


# `:path`: a memory's id is its turn's, which may be any string, slashes included (percent-encode it)
class _AnyText(Convertor[str]):
    """A memory id is any text, newlines too: Starlette's `path` convertor (".*") stops at a
    newline, which made such an id "no such route" instead of the memory or a 404 for it."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("text", _AnyText())


@api.get("/memories/{memory_id:text}", tags=["read"])
async def get_memory(memory_id: str, memory: Scoped) -> Memory:
    """One memory of the scope (`DualMemory.get`); 404 when the scope has no such memory."""
    found = await memory.aget(memory_id)
    if found is None:
        raise _no_memory(memory_id, memory.scope)
    return found


@api.delete("/memories/{memory_id:text}", tags=["forget"])
async def delete_memory(memory_id: str, memory: Scoped) -> Deleted:
    """Delete one memory of the scope; its turns stay (`DualMemory.delete`)."""
    if not await memory.adelete(memory_id):
        raise _no_memory(memory_id, memory.scope)
    return Deleted(deleted=True)


def _no_memory(memory_id: str, scope: Scope) -> HTTPException:
    ids = ", ".join(f"{k}={v!r}" for k, v in scope.model_dump(exclude_none=True).items())
    return HTTPException(404, f"no memory {memory_id!r} in scope {ids}: list them with GET /v1/memories")


@api.post("/search", tags=["read"])
async def search(body: SearchRequest, memory: Scoped) -> list[Memory]:
    """The k memories most relevant to the query, best first, with scores (`DualMemory.search`)."""
    return await memory.asearch(body.query, k=body.k)


@api.post("/answer", tags=["read"])
async def answer(body: AnswerRequest, memory: Scoped) -> Answer:
    """Answer from memory with the full trace: path, gate signals, evidence, cost (`DualMemory.answer`)."""
    return await memory.aanswer(body.question, **body.model_dump(exclude={"question"}))


@api.delete("/scope", tags=["forget"])
async def forget(memory: Scoped) -> Forgotten:
    """Forget the scope: its turns and memories (`DualMemory.delete_all`)."""
    return Forgotten(**await memory.adelete_all())


@api.post("/reindex", tags=["write"])
async def reindex(memory: Scoped, body: ReindexRequest | None = None) -> ReindexResult:
    """Rebuild the scope's memories from its history (`DualMemory.reindex`)."""
    return await memory.areindex(extract=body.extract if body else None)


@api.get("/scopes", tags=["inspect"])
async def scopes(request: Request) -> list[Scope]:
    """The scopes with stored turns, for the inspector's picker: ids only, never their data."""
    memory: DualMemory = request.app.state.memory
    return await asyncio.to_thread(memory.history_store.scopes)


@api.get("/info", tags=["inspect"])
async def info(request: Request) -> Info:
    """What the page needs to start: the demo scope and the benchmark folders."""
    settings: ServeSettings = request.app.state.settings
    return Info(version=version("dualmem"), demo=settings.demo, runs=list(request.app.state.runs))


def create_app(memory: DualMemory, settings: ServeSettings | None = None, *, close: bool = False) -> FastAPI:
    """The ASGI app serving `memory`: the REST API under /v1, the page at /.

    The caller owns `memory`, unless `close` hands it to the server, which closes it when it
    stops. Without `settings`: loopback only, no key, no CORS, no benchmark folders.
    """
    settings = settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if close:
            await asyncio.to_thread(memory.close)

    # no /docs or /redoc: they load their scripts from a CDN; the schema stays at /openapi.json
    app = FastAPI(
        title="dualmem", version=version("dualmem"), docs_url=None, redoc_url=None,
        lifespan=lifespan,
        description="Dual-process long-term memory: the REST API of `DualMemory`. Every call "
        "takes the scope's ids (user_id, agent_id, session_id) as query parameters.",
    )
    app.state.memory = memory
    app.state.settings = settings
    protect(app, settings)
    guarded = [Depends(require_key)] if settings.api_key else []
    app.include_router(api, dependencies=guarded)
    app.state.runs = {}
    if settings.runs:
        try:  # the records' types live in the benchmark harness, which needs the bench extra
            from .runs import find_runs, router
        except ModuleNotFoundError as e:
            missing = (e.name or "a package").split(".")[0]
            raise ConfigError(f"browsing benchmark folders needs the bench extra ({missing} is not "
                              "installed): pip install 'dualmem[bench]'") from e
        app.state.runs = find_runs(settings.runs)
        app.include_router(router, dependencies=guarded)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
