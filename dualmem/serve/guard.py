"""What stands between a request and the memory: the API key, the allowed hosts, CORS, and
the one place where errors become HTTP answers.

Every error a client can cause is a 4xx whose `detail` says what to change; a rejected request
writes nothing, because validation (here and in the library) runs before any store is touched.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from ..errors import ConfigError, DualMemError, InvalidInputError, LLMError, StorageError
from ..inputs import MAX_TEXT_CHARS
from ..types import Scope

__all__ = ["LOOPBACK_HOSTS", "MAX_BODY_BYTES", "ServeSettings", "is_loopback", "protect", "require_key"]

# one message at `add`'s limit (MAX_TEXT_CHARS characters, up to 4 UTF-8 bytes each) and its
# JSON envelope fit; a larger body is refused before it is read to the end
MAX_BODY_BYTES = 4 * MAX_TEXT_CHARS + 64 * 1024
# the Host names a loopback server answers to: a page on another site that rebinds its DNS name
# to 127.0.0.1 still sends its own name, and is refused
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


@dataclass(frozen=True)
class ServeSettings:
    """How the app guards and what it shows, besides the memory itself.

    `api_key`: required on every /v1 call when set (`serve` insists on one off loopback).
    `allowed_hosts`: the Host headers accepted (None: any). `cors_origins`: origins allowed to
    call from a browser (none by default). `runs`: benchmark output folders the inspector may
    open. `demo`: the scope the page opens first.
    """

    api_key: str | None = None
    allowed_hosts: list[str] | None = field(default_factory=lambda: list(LOOPBACK_HOSTS))
    cors_origins: list[str] = field(default_factory=list)
    max_body: int = MAX_BODY_BYTES
    runs: list[Path] = field(default_factory=list)
    demo: Scope | None = None


_bearer = HTTPBearer(auto_error=False, description="the server's API key as a bearer token")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or the key in X-API-Key")


def require_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> None:
    """Accept the call only with the configured key (constant-time comparison)."""
    expected: str = request.app.state.settings.api_key
    given = bearer.credentials if bearer else header
    if given is None or not secrets.compare_digest(given.encode(), expected.encode()):
        what = "a wrong API key" if given else "no API key"
        raise HTTPException(
            401, f"{what}: send the server's key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


# library errors a client caused -> 422; the others are the server's or its model's
_STATUS: list[tuple[type[DualMemError], int, str]] = [
    (InvalidInputError, 422, ""),
    (LLMError, 502, "the model call failed: "),
    (StorageError, 503, "the memory store failed: "),
    (ConfigError, 503, "the server is not configured for this: "),
    (DualMemError, 500, ""),
]
_HTTP_HINTS = {
    404: "no such route: see /openapi.json for the API",
    405: "this route does not take that method: see /openapi.json",
}


def _too_large(limit: int) -> str:
    return f"the request body is over the limit of {limit} bytes: send fewer or shorter messages per call"


class BodyLimit:
    """Refuse a body over `limit` bytes: by its Content-Length before reading it, or once the
    chunks read pass the limit. (FastAPI's own `max_body_size` answers a bare "Content Too
    Large" in plain text, which does not say what to change.)"""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        declared = Headers(scope=scope).get("content-length", "") if scope["type"] == "http" else ""
        if declared.isdigit() and int(declared) > self.limit:
            await JSONResponse({"detail": _too_large(self.limit)}, status_code=413)(scope, receive, send)
            return
        read = 0

        async def limited() -> Message:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self.limit:  # raised inside the route's body read: the handlers answer it
                raise HTTPException(413, _too_large(self.limit))
            return message

        await self.app(scope, limited, send)


def _dualmem_error(request: Request, error: Exception) -> JSONResponse:
    status, prefix = next((status, prefix) for kind, status, prefix in _STATUS if isinstance(error, kind))
    return JSONResponse({"detail": prefix + str(error)}, status_code=status)


def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    detail = error.detail
    if detail in ("Not Found", "Method Not Allowed") and error.status_code in _HTTP_HINTS:
        detail = _HTTP_HINTS[error.status_code]
    return JSONResponse({"detail": detail}, status_code=error.status_code, headers=error.headers)


def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """One readable line per problem, each naming the field ("body.messages.0.content: ...")."""
    assert isinstance(error, RequestValidationError)
    problems = list(error.errors())
    if any(p["type"] == "json_invalid" for p in problems):
        where = next(p for p in problems if p["type"] == "json_invalid")
        return JSONResponse(
            {"detail": f"the request body is not valid JSON ({where['ctx']['error']} at character "
                       f"{where['loc'][-1]}): send one JSON object"}, status_code=400,
        )
    kind = request.headers.get("content-type", "")
    if request.method in ("POST", "PUT", "PATCH") and "json" not in kind:
        return JSONResponse(
            {"detail": f"the body must be JSON sent with 'Content-Type: application/json' "
                       f"(got {kind or 'no content type'})"}, status_code=415,
        )
    lines = [f"{'.'.join(str(part) for part in p['loc'])}: {p['msg']}" for p in problems]
    return JSONResponse({"detail": "; ".join(lines), "errors": _plain(problems)}, status_code=422)


def _plain(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The problems without their inputs (which may be megabytes) or exception objects."""
    return [{"loc": list(p["loc"]), "msg": p["msg"], "type": p["type"]} for p in problems]


def protect(app: FastAPI, settings: ServeSettings) -> None:
    """Install the body limit, the host check, CORS (only for the origins given) and the
    error handlers."""
    app.add_middleware(BodyLimit, limit=settings.max_body)
    if settings.allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"], allow_credentials=False,
        )
    app.add_exception_handler(DualMemError, _dualmem_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
