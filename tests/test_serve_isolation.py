"""Tenant isolation through the HTTP layer: the property and targeted tests of
`test_isolation.py`, run against `dualmem serve`'s API instead of the Python object.

`HTTPMemory` offers the `DualMemory` methods those tests call, each one a request to the app
(scope ids as query parameters, memory ids percent-encoded in the path), so every operation,
result and prompt is checked against the same model of what each scope may see, with the
same crafted ids (quotes, SQL, "$or", "user:x", "../../etc/passwd", unicode, 256 characters).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import TypeAdapter

from dualmem import Answer, DualMemory, Memory, ScopeError, Turn
from dualmem.memory import AddResult, ReindexResult
from dualmem.serve import create_app
from dualmem.testing import ScriptedLLM
from tests.serve_client import Client, serving
from tests.test_isolation import (  # the tests themselves, collected again here with this world
    CHECKED,
    EchoModel,
    World,
    test_no_operation_crosses_scopes,  # noqa: F401
    test_same_turn_id_in_two_partitions_stays_apart,  # noqa: F401
    test_scopes_differing_in_one_id,  # noqa: F401
)


class HTTPMemory:
    """The `DualMemory` calls of the isolation tests, made over the REST API."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _call(self, method: str, path: str, scope: dict[str, Any], expected: int = 200, **kw: Any) -> Any:
        ids = {k: v for k, v in scope.items() if v is not None}
        response = self.client.request(method, path, params=ids, **kw)
        if response.status_code != expected:
            raise HTTPError(response)
        return response.json()

    def add(self, message: Any, **scope: Any) -> AddResult:
        message = {"content": message} if isinstance(message, str) else message
        body = self._call("POST", "/v1/turns", scope, 201, json={"messages": [message]})
        return TypeAdapter(AddResult).validate_python(body)

    def search(self, query: str, **scope: Any) -> list[Memory]:
        return [
            Memory.model_validate(m) for m in self._call("POST", "/v1/search", scope, json={"query": query})
        ]

    def answer(
        self, question: str, *, mode: str = "gated", policy: str | None = None, **scope: Any
    ) -> Answer:
        body = {"question": question, "mode": mode, "policy": policy}
        try:
            return Answer.model_validate(self._call("POST", "/v1/answer", scope, json=body))
        except HTTPError as e:  # the library's ScopeError, as the API says it
            if e.response.status_code == 422 and "nothing is stored for" in e.response.json()["detail"]:
                raise ScopeError(e.response.json()["detail"]) from e
            raise

    def _memory(self, method: str, memory_id: str, scope: dict[str, Any]) -> Any:
        try:
            return self._call(method, f"/v1/memories/{quote(memory_id, safe='')}", scope)
        except HTTPError as e:
            if e.response.status_code == 404 and "no memory" in e.response.json()["detail"]:
                return None
            raise

    def get(self, memory_id: str, **scope: Any) -> Memory | None:
        found = self._memory("GET", memory_id, scope)
        return Memory.model_validate(found) if found else None

    def delete(self, memory_id: str, **scope: Any) -> bool:
        return self._memory("DELETE", memory_id, scope) == {"deleted": True}

    def delete_all(self, **scope: Any) -> dict[str, int]:
        return self._call("DELETE", "/v1/scope", scope)

    def reindex(self, *, extract: bool | None = None, **scope: Any) -> ReindexResult:
        body = self._call("POST", "/v1/reindex", scope, json={"extract": extract})
        return TypeAdapter(ReindexResult).validate_python(body)

    def history(self, **scope: Any) -> list[Turn]:
        return [Turn.model_validate(t) for t in self._call("GET", "/v1/turns", scope)]

    def get_all(self, **scope: Any) -> list[Memory]:
        return [Memory.model_validate(m) for m in self._call("GET", "/v1/memories", scope)]


class HTTPError(AssertionError):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
        )
        self.response = response


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    echo = EchoModel()
    llm = ScriptedLLM(default=echo)
    memory = DualMemory(path=tmp_path_factory.mktemp("isolation-http"), llm=llm, extract=False)
    before = dict(CHECKED)
    with serving(create_app(memory)) as client:
        yield World(HTTPMemory(client), llm, echo)  # type: ignore[arg-type]
    memory.close()
    done = {k: CHECKED[k] - before[k] for k in CHECKED}
    print(
        f"\n[isolation over HTTP] examples={done['examples']} operations={done['operations']} "
        f"results checked={done['results']} prompts checked={done['prompts']} leaks=0"
    )
