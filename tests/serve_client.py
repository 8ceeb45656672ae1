"""httpx against the serve app's ASGI interface, for sync tests.

Starlette's `TestClient` percent-decodes the path a second time (`%252F` reaches the route as
`/`), which would turn ids holding `%XX` into other ids; httpx's own `ASGITransport` decodes
once, as uvicorn does. Its client is async, so sync tests call it through an anyio portal.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal


class Client:
    """`get`, `post`, `delete`, `options`, `request`: httpx's, answered by the app in-process."""

    def __init__(self, app: Any, base_url: str, portal: BlockingPortal) -> None:
        self._portal = portal
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(functools.partial(self._client.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)


@contextmanager
def serving(app: Any, base_url: str = "http://127.0.0.1") -> Iterator[Client]:
    with start_blocking_portal() as portal:
        client = Client(app, base_url, portal)
        try:
            yield client
        finally:
            portal.call(client._client.aclose)
