"""`dualmem serve`'s REST API through httpx against the ASGI app: every route, every error path.

Bad requests (malformed JSON, a missing scope, unknown ids, oversized bodies, a wrong key,
a wrong content type) get a 4xx whose message says what to change, never a 500, and leave
the stores exactly as they were. The scripted model answers; no real model runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from dualmem import Answer, DualMemory, Memory, Turn
from dualmem.bench.record import Record, Weighed
from dualmem.errors import ConfigError, LLMError
from dualmem.serve import ServeSettings, create_app
from dualmem.serve.runs import outcome
from dualmem.serve.server import settings_for, worker_app
from dualmem.testing import ScriptedLLM, ScriptedReply
from dualmem.types import Scope
from tests.serve_client import Client, serving

MAYA = {"user_id": "maya"}
PNG = bytes.fromhex(  # a 1x1 PNG: what the plot route serves is the folder's file, byte for byte
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db00000000049454e44ae426082"
)


def record(system: str, q: int, f1: float, **fields) -> str:
    base = dict(
        system=system,
        conversation="conv-1",
        q=q,
        category=1,
        category_name="multi-hop",
        question=f"question {q}?",
        gold="gold",
        prediction="answer",
        path="fast",
        f1=f1,
    )
    return Record(**{**base, **fields}).line()


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    """A benchmark output folder: a fast system, a gated one (each kind of escalation), a gate-only one."""
    run = tmp_path / "runs" / "dev-run"
    run.mkdir(parents=True)
    fast = lambda text, f1: Weighed(source="fast", text=text, f1=f1)  # noqa: E731
    s2 = lambda text, f1: Weighed(source="evidence", text=text, f1=f1, won=True)  # noqa: E731
    lines = [
        record("fast", 0, 0.0),
        record("fast", 1, 1.0),
        record("fast", 2, 1.0),
        record("fast", 3, 0.0),
        record("gated", 0, 1.0, escalated=True, path="deliberate", candidates=[fast("a", 0.0), s2("b", 1.0)]),
        record("gated", 1, 0.2, escalated=True, path="deliberate", candidates=[fast("a", 1.0), s2("b", 0.2)]),
        record("gated", 2, 1.0, escalated=True, path="deliberate", candidates=[fast("a", 1.0), s2("a", 1.0)]),
        record("gated", 3, 0.0, escalated=False),
        record("gate:signals", 0, 0.0, gate_escalate=True, gate_signals={"coverage": 0.2, "recency": None}),
        record("gate:signals", 1, 1.0, gate_escalate=True),
        record("gate:signals", 2, 1.0, gate_escalate=False),
        '{"system": "cut by a crash',
    ]
    (run / "questions.jsonl").write_text("\n".join(line.strip() for line in lines) + "\n\n")
    (run / "risk-coverage.png").write_bytes(PNG)
    return run


@pytest.fixture()
def memory(tmp_path: Path):
    llm = ScriptedLLM(
        by_task={"answer": lambda request: ScriptedReply("Biscuit", confidence=0.95)}, default="NONE"
    )
    m = DualMemory(path=tmp_path / "data", llm=llm, extract=False)
    yield m
    m.close()


@pytest.fixture()
def client(memory: DualMemory, run_dir: Path):
    app = create_app(memory, ServeSettings(runs=[run_dir.parent], demo=Scope(**MAYA)))
    with serving(app, base_url="http://127.0.0.1") as c:
        yield c


def add(client: Client, text: str, scope=MAYA, **message) -> dict:
    response = client.post("/v1/turns", params=scope, json={"messages": [{"content": text, **message}]})
    assert response.status_code == 201, response.text
    return response.json()


def stored(memory: DualMemory) -> tuple:
    """Everything the stores hold, to check that a rejected request wrote nothing."""
    scopes = sorted(memory.history_store.scopes(), key=repr)
    turns = [t.model_dump() for s in scopes for t in memory.history(**s.model_dump())]
    memories = sorted(m.id for s in scopes for m in memory.get_all(**s.model_dump()))
    return scopes, turns, memories


# ---------------------------------------------------------------- every route


def test_add_then_history_memories_get_search_answer(client: Client) -> None:
    body = add(client, "I adopted a beagle called Biscuit.", speaker="Maya", timestamp="2025-03-03T18:20:00")
    turn = Turn.model_validate(body["turns"][0])
    assert (turn.speaker, turn.user_id, turn.timestamp.isoformat()) == (
        "Maya",
        "maya",
        "2025-03-03T18:20:00+00:00",
    )
    assert [m["id"] for m in body["added"]] == [turn.id] and body["pending"] == [] and body["error"] is None
    add(client, "The vet is Dr. Okafor.", scope={**MAYA, "session_id": "s2"}, timestamp="2025-03-03T18:25:00")

    history = client.get("/v1/turns", params=MAYA).json()
    assert [t["text"] for t in history] == ["I adopted a beagle called Biscuit.", "The vet is Dr. Okafor."]
    assert [t["text"] for t in client.get("/v1/turns", params={**MAYA, "last": 1}).json()] == [
        "The vet is Dr. Okafor."
    ]
    assert [t["session_id"] for t in client.get("/v1/turns", params={**MAYA, "session_id": "s2"}).json()] == [
        "s2"
    ]

    listed = [Memory.model_validate(m) for m in client.get("/v1/memories", params=MAYA).json()]
    assert [m.source_turn_ids for m in listed][0] == [turn.id]
    got = client.get(f"/v1/memories/{turn.id}", params=MAYA)
    assert Memory.model_validate(got.json()).text == "Maya: I adopted a beagle called Biscuit."

    found = client.post("/v1/search", params=MAYA, json={"query": "beagle", "k": 1}).json()
    assert [m["id"] for m in found] == [turn.id] and found[0]["score"] > 0

    response = client.post(
        "/v1/answer", params=MAYA, json={"question": "What is the dog called?", "policy": "signals"}
    )
    answer = Answer.model_validate(response.json())
    assert (answer.text, answer.path, answer.mode, answer.gate.policy) == (
        "Biscuit",
        "fast",
        "gated",
        "signals",
    )
    assert {s.name for s in answer.gate.signals} >= {"entropy", "coverage", "consistency"}
    assert all(s.threshold is not None for s in answer.gate.signals if s.available)
    assert turn.id in answer.evidence.turn_ids and answer.usage["answer"].calls == 1
    assert set(answer.latency) >= {"retrieve", "answer", "gate"}


def test_answer_modes_and_deliberation_switch(client: Client) -> None:
    add(client, "Biscuit is my dog.")
    fast = client.post("/v1/answer", params=MAYA, json={"question": "Dog?", "mode": "fast"}).json()
    assert (fast["path"], fast["gate"]) == ("fast", None)
    gated = client.post(
        "/v1/answer", params=MAYA, json={"question": "Dog?", "deliberate": False, "k": 3}
    ).json()
    assert gated["path"] == "fast" and gated["gate"] is not None and len(gated["memories"]) == 1


def test_delete_memory_forget_scope_and_reindex(client: Client, memory: DualMemory) -> None:
    a = add(client, "First.")["turns"][0]["id"]
    add(client, "Second.")
    add(client, "Bob's own.", scope={"user_id": "bob"})
    assert client.delete(f"/v1/memories/{a}", params=MAYA).json() == {"deleted": True}
    assert client.get(f"/v1/memories/{a}", params=MAYA).status_code == 404
    assert len(client.get("/v1/turns", params=MAYA).json()) == 2  # its turn stays

    rebuilt = client.post("/v1/reindex", params=MAYA, json={"extract": False}).json()
    assert (rebuilt["scopes"], rebuilt["turns"], rebuilt["memories"], rebuilt["errors"]) == (1, 2, 2, [])
    assert client.get(f"/v1/memories/{a}", params=MAYA).status_code == 200
    assert client.post("/v1/reindex", params=MAYA).json()["memories"] == 2  # the body is optional

    assert client.delete("/v1/scope", params=MAYA).json() == {"turns": 2, "memories": 2}
    assert client.get("/v1/turns", params=MAYA).json() == []
    assert [t.text for t in memory.history(user_id="bob")] == ["Bob's own."]


def test_ids_with_slashes_and_odd_characters_round_trip(client: Client) -> None:
    scope = {"user_id": "user:a/b?c", "session_id": "line\nbreak"}
    for odd in ("../../etc/passwd #?%2F x/", "two\nlines", "tab\tand\r\nreturn\n"):
        add(client, "Odd ids.", scope=scope, id=odd)
        assert client.get(f"/v1/memories/{quote(odd, safe='')}", params=scope).json()["id"] == odd
        assert client.delete(f"/v1/memories/{quote(odd, safe='')}", params=scope).json() == {"deleted": True}
        # gone: the id's own 404, not "no such route"
        missing = client.get(f"/v1/memories/{quote(odd, safe='')}", params=scope)
        assert missing.status_code == 404 and "no memory" in missing.json()["detail"]


def test_scopes_info_schema_and_page(client: Client) -> None:
    add(client, "Hi.", scope={**MAYA, "session_id": "s1"})
    add(client, "Hi.", scope={"agent_id": "helper"})
    scopes = client.get("/v1/scopes").json()
    assert sorted(scopes, key=repr) == sorted(
        [
            {"user_id": "maya", "agent_id": None, "session_id": "s1"},
            {"user_id": None, "agent_id": "helper", "session_id": None},
        ],
        key=repr,
    )
    assert client.get("/v1/info").json() == {
        "version": "0.1.0",
        "demo": {**MAYA, "agent_id": None, "session_id": None},
        "runs": ["dev-run"],
    }
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) >= {
        "/v1/turns",
        "/v1/search",
        "/v1/answer",
        "/v1/memories/{memory_id}",
        "/v1/scope",
        "/v1/reindex",
        "/v1/runs/{name}",
    }
    answer_params = {p["name"] for p in schema["paths"]["/v1/answer"]["post"]["parameters"]}
    assert answer_params == {"user_id", "agent_id", "session_id"}
    assert client.get("/docs").status_code == 404  # Swagger UI would load scripts from a CDN
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/inspector.js", "/static/inspector.css"):
        assert client.get(asset).status_code == 200
    # every asset is local: no URL with a host in the page or its files
    text = page.text + client.get("/static/inspector.js").text + client.get("/static/inspector.css").text
    assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_no_cookies_and_no_cors_by_default(client: Client) -> None:
    add(client, "Hi.")
    origin = {"Origin": "https://evil.example"}
    for response in (
        client.get("/v1/turns", params=MAYA, headers=origin),
        client.get("/", headers=origin),
        client.options("/v1/turns", headers={**origin, "Access-Control-Request-Method": "GET"}),
    ):
        assert "set-cookie" not in response.headers
        assert "access-control-allow-origin" not in response.headers


def test_cors_only_for_the_origins_given(memory: DualMemory) -> None:
    app = create_app(memory, ServeSettings(cors_origins=["http://localhost:3000"]))
    with serving(app, base_url="http://127.0.0.1") as c:
        preflight = {"Access-Control-Request-Method": "POST"}
        ok = c.options("/v1/answer", headers={"Origin": "http://localhost:3000", **preflight})
        assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"
        other = c.options("/v1/answer", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers


# ---------------------------------------------------------------- benchmark folders


def test_runs_mark_right_wrong_and_what_escalations_did(client: Client) -> None:
    assert client.get("/v1/runs").json() == ["dev-run"]
    view = client.get("/v1/runs/dev-run").json()
    assert (view["total"], view["unreadable"], view["shown"], view["plots"]) == (11, 1, 11, ["risk-coverage"])
    assert view["facets"]["system"] == ["fast", "gate:signals", "gated"]
    assert view["facets"]["category"] == [[1, "multi-hop"]]
    by = {(r["record"]["system"], r["record"]["q"]): (r["correct"], r["outcome"]) for r in view["rows"]}
    assert by[("gated", 0)] == (True, "paid")
    assert by[("gated", 1)] == (False, "hurt")
    assert by[("gated", 2)] == (True, "no gain")
    assert by[("gated", 3)] == (False, "missed")
    assert by[("gate:signals", 0)] == (False, "warranted")
    assert by[("gate:signals", 1)] == (True, "wasted")
    assert by[("gate:signals", 2)] == (True, "kept")
    assert by[("fast", 0)] == (False, None)
    assert view["counts"] == {
        "paid": 1,
        "hurt": 1,
        "no gain": 1,
        "missed": 1,
        "warranted": 1,
        "wasted": 1,
        "kept": 1,
    }
    assert "gate_features" not in view["rows"][0]["record"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"system": "gated"}, 4),
        ({"path": "deliberate"}, 3),
        ({"correct": "false"}, 5),
        ({"outcome": "paid"}, 1),
        ({"category": 2}, 0),
        ({"system": "gated", "correct": "true"}, 2),
        ({"limit": 2}, 11),
    ],
)
def test_run_filters(client: Client, query, expected) -> None:
    view = client.get("/v1/runs/dev-run", params=query).json()
    assert view["shown"] == expected
    assert len(view["rows"]) == min(expected, query.get("limit", expected))


def test_run_escalation_falls_back_to_the_fast_system() -> None:
    # an older record without candidates: compared with the run's `fast` answer to the question
    gated = Record.from_line(record("gated", 0, 1.0, escalated=True, path="deliberate"))
    assert (outcome(gated, 0.0), outcome(gated, 1.0), outcome(gated, None)) == ("paid", "no gain", None)


def test_run_plot_and_its_errors(client: Client) -> None:
    png = client.get("/v1/runs/dev-run/plots/risk-coverage")
    assert (png.status_code, png.headers["content-type"], png.content) == (200, "image/png", PNG)
    missing = client.get("/v1/runs/dev-run/plots/frontier")
    assert missing.status_code == 404 and "has no frontier.png" in missing.json()["detail"]
    assert client.get("/v1/runs/dev-run/plots/..%2F..%2Fquestions.jsonl").status_code in (404, 422)
    unknown = client.get("/v1/runs/elsewhere")
    assert unknown.status_code == 404 and "dev-run" in unknown.json()["detail"]
    assert client.get("/v1/runs/dev-run", params={"outcome": "great"}).status_code == 422


def test_runs_without_the_bench_extra_say_how(memory: DualMemory, run_dir: Path, monkeypatch) -> None:
    for name in [m for m in sys.modules if m.startswith(("dualmem.bench", "dualmem.serve.runs"))]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, as in a venv without the extra
    for name in ("nltk", "nltk.stem"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=r"needs the bench extra \(nltk is not installed\)"):
        create_app(memory, ServeSettings(runs=[run_dir]))
    create_app(memory)  # without --runs the server needs nothing of it


def test_a_folder_without_records_is_refused(memory: DualMemory, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no questions.jsonl"):
        create_app(memory, ServeSettings(runs=[tmp_path / "empty"]))


# ---------------------------------------------------------------- bad requests: a 4xx that says why, no write

BAD = [
    # (method, path, params, body or raw bytes, headers, status, words the message must hold)
    ("POST", "/v1/turns", {}, {"messages": [{"content": "x"}]}, {}, 422, "every call needs a scope"),
    ("GET", "/v1/turns", {}, None, {}, 422, "every call needs a scope"),
    ("GET", "/v1/memories", {}, None, {}, 422, "every call needs a scope"),
    ("POST", "/v1/search", {}, {"query": "x"}, {}, 422, "every call needs a scope"),
    ("POST", "/v1/answer", {}, {"question": "x"}, {}, 422, "every call needs a scope"),
    ("DELETE", "/v1/scope", {}, None, {}, 422, "every call needs a scope"),
    ("POST", "/v1/reindex", {}, None, {}, 422, "every call needs a scope"),
    ("DELETE", "/v1/memories/x", {}, None, {}, 422, "every call needs a scope"),
    ("GET", "/v1/turns", {"user_id": " "}, None, {}, 422, "is not a valid id"),
    ("GET", "/v1/turns", {"user_id": "x" * 300}, None, {}, 422, "is not a valid id"),
    (
        "POST",
        "/v1/turns",
        MAYA,
        b'{"messages": [',
        {"content-type": "application/json"},
        400,
        "not valid JSON",
    ),
    ("POST", "/v1/turns", MAYA, b"", {"content-type": "application/json"}, 422, "body: Field required"),
    (
        "POST",
        "/v1/turns",
        MAYA,
        b'{"messages": [{"content": "x"}]}',
        {"content-type": "text/plain"},
        415,
        "Content-Type: application/json",
    ),
    ("POST", "/v1/turns", MAYA, b'{"messages": [{"content": "x"}]}', {}, 415, "application/json"),
    (
        "POST",
        "/v1/turns",
        MAYA,
        {"messages": "just text"},
        {},
        422,
        "body.messages: Input should be a valid list",
    ),
    ("POST", "/v1/turns", MAYA, {"messages": []}, {}, 422, "non-empty"),
    ("POST", "/v1/turns", MAYA, {"messages": [{"content": "  "}]}, {}, 422, "message 0 content is empty"),
    ("POST", "/v1/turns", MAYA, {"messages": [{"content": "ok"}, {"content": ""}]}, {}, 422, "message 1"),
    (
        "POST",
        "/v1/turns",
        MAYA,
        {"messages": [{"content": "x", "colour": 1}]},
        {},
        422,
        "body.messages.0.colour: Extra inputs are not permitted",
    ),
    ("POST", "/v1/turns", MAYA, {"messages": [{"content": 5}]}, {}, 422, "body.messages.0.content"),
    (
        "POST",
        "/v1/turns",
        MAYA,
        {"messages": [{"content": "x", "timestamp": "yesterday-ish"}]},
        {},
        422,
        "cannot read timestamp",
    ),
    ("POST", "/v1/turns", MAYA, {"messages": [{"content": "x"}], "timestamp": 1e30}, {}, 422, "out of range"),
    ("POST", "/v1/turns", MAYA, {"messages": [{"content": "x", "id": "i" * 300}]}, {}, 422, "id must be"),
    (
        "POST",
        "/v1/turns",
        MAYA,
        {"messages": [{"content": "x" * 1_000_001}]},
        {},
        422,
        "the limit is 1000000",
    ),
    ("GET", "/v1/turns", {**MAYA, "limit": 0}, None, {}, 422, "limit must be a positive integer"),
    ("GET", "/v1/turns", {**MAYA, "limit": 3, "last": 2}, None, {}, 422, "not both"),
    ("GET", "/v1/turns", {**MAYA, "since": "soon"}, None, {}, 422, "cannot read timestamp"),
    (
        "GET",
        "/v1/turns",
        {**MAYA, "limit": "ten"},
        None,
        {},
        422,
        "query.limit: Input should be a valid integer",
    ),
    ("POST", "/v1/search", MAYA, {"query": ""}, {}, 422, "query is empty"),
    ("POST", "/v1/search", MAYA, {"query": "x", "k": 0}, {}, 422, "k must be a positive integer"),
    ("POST", "/v1/answer", MAYA, {"question": "x", "mode": "slow"}, {}, 422, "'fast', 'full' or 'gated'"),
    ("POST", "/v1/answer", MAYA, {"question": "x", "policy": "vibes"}, {}, 422, "body.policy"),
    ("POST", "/v1/answer", MAYA, {"question": "x", "strategy": "guess"}, {}, 422, "body.strategy"),
    ("POST", "/v1/answer", MAYA, {"question": "\t"}, {}, 422, "question is empty"),
    ("POST", "/v1/answer", MAYA, {}, {}, 422, "body.question: Field required"),
    ("POST", "/v1/answer", {"user_id": "nobody"}, {"question": "x"}, {}, 422, "nothing is stored for"),
    ("POST", "/v1/reindex", MAYA, {"extract": "sometimes"}, {}, 422, "body.extract"),
    ("GET", "/v1/memories/no-such-id", MAYA, None, {}, 404, "no memory 'no-such-id' in scope user_id='maya'"),
    ("DELETE", "/v1/memories/no-such-id", MAYA, None, {}, 404, "GET /v1/memories"),
    ("GET", "/v1/nowhere", MAYA, None, {}, 404, "see /openapi.json"),
    ("PUT", "/v1/turns", MAYA, None, {}, 405, "does not take that method"),
]


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "headers", "status", "says"),
    BAD,
    ids=[f"{b[0]} {b[1]} {b[6]}-{i}" for i, b in enumerate(BAD)],
)
def test_bad_requests_get_a_4xx_that_says_what_to_change(
    client: Client, memory: DualMemory, method, path, params, body, headers, status, says
) -> None:
    add(client, "Already here.")
    before = stored(memory)
    raw = body if isinstance(body, bytes) else None
    response = client.request(
        method,
        path,
        params=params,
        headers=headers,
        content=raw,
        json=None if raw is not None or body is None else body,
    )
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]
    assert stored(memory) == before


def test_oversized_bodies_are_refused_unread(memory: DualMemory) -> None:
    app = create_app(memory, ServeSettings(max_body=2_000))
    with serving(app, base_url="http://127.0.0.1") as c:
        before = stored(memory)
        big = json.dumps({"messages": [{"content": "x" * 3_000}]})
        declared = c.post("/v1/turns", params=MAYA, content=big, headers={"content-type": "application/json"})

        async def chunks():
            yield big[:1500].encode()
            yield big[1500:].encode()

        chunked = c.post(
            "/v1/turns", params=MAYA, content=chunks(), headers={"content-type": "application/json"}
        )
        for response in (declared, chunked):
            assert response.status_code == 413
            assert response.json()["detail"] == (
                "the request body is over the limit of 2000 bytes: send fewer or shorter messages per call"
            )
        assert stored(memory) == before
        small = c.post("/v1/turns", params=MAYA, json={"messages": [{"content": "fits"}]})
        assert small.status_code == 201


def test_the_default_body_limit_fits_adds_largest_message(client: Client) -> None:
    # add's own limit is 1,000,000 characters; at up to 4 UTF-8 bytes each, the body still fits
    response = client.post("/v1/turns", params=MAYA, json={"messages": [{"content": "é" * 1_000_000}]})
    assert response.status_code == 201


def test_a_model_failure_is_a_502_and_keeps_what_was_stored(tmp_path: Path) -> None:
    memory = DualMemory(
        path=tmp_path / "d", llm=ScriptedLLM(by_task={"answer": [LLMError("model offline")]}), extract=False
    )
    with serving(create_app(memory), base_url="http://127.0.0.1") as c:
        add(c, "Stored.")
        response = c.post("/v1/answer", params=MAYA, json={"question": "What?", "mode": "fast"})
        assert (
            response.status_code == 502
            and "the model call failed: model offline" in response.json()["detail"]
        )
        assert [t["text"] for t in c.get("/v1/turns", params=MAYA).json()] == ["Stored."]
    memory.close()


# ---------------------------------------------------------------- the API key and the hosts


@pytest.fixture()
def keyed(memory: DualMemory):
    app = create_app(memory, settings_for("0.0.0.0", api_key="s3cret"))
    with serving(app, base_url="http://memory.example.org") as c:
        yield c


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": "s3cre"},
        {"Authorization": "Basic czNjcmV0"},
        {"X-API-Key": ""},
    ],
)
def test_a_missing_or_wrong_key_is_a_401_on_every_route(keyed: Client, memory: DualMemory, headers) -> None:
    before = stored(memory)
    for method, path in [
        ("GET", "/v1/turns"),
        ("POST", "/v1/turns"),
        ("GET", "/v1/memories"),
        ("POST", "/v1/search"),
        ("POST", "/v1/answer"),
        ("DELETE", "/v1/scope"),
        ("POST", "/v1/reindex"),
        ("GET", "/v1/scopes"),
        ("GET", "/v1/info"),
        ("DELETE", "/v1/memories/x"),
    ]:
        response = keyed.request(
            method, path, params=MAYA, headers=headers, json={"messages": [{"content": "x"}]}
        )
        assert response.status_code == 401, (method, path)
        assert "Authorization: Bearer <key>" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    assert stored(memory) == before


def test_the_right_key_in_either_header_is_accepted(keyed: Client) -> None:
    body = {"messages": [{"content": "Keyed."}]}
    assert (
        keyed.post(
            "/v1/turns", params=MAYA, json=body, headers={"Authorization": "Bearer s3cret"}
        ).status_code
        == 201
    )
    assert len(keyed.get("/v1/turns", params=MAYA, headers={"X-API-Key": "s3cret"}).json()) == 1
    # the page and the schema carry no data: they load without the key
    assert keyed.get("/").status_code == 200 and keyed.get("/openapi.json").status_code == 200


def test_serving_off_loopback_needs_a_key() -> None:
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.org"):
        with pytest.raises(ConfigError, match="pass --api-key"):
            settings_for(host)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert settings_for(host).api_key is None


def test_a_loopback_server_refuses_other_host_names(memory: DualMemory) -> None:
    # a page whose DNS name was rebound to 127.0.0.1 still sends its own Host
    with serving(create_app(memory, settings_for("127.0.0.1")), base_url="http://evil.example") as c:
        assert c.get("/v1/turns", params=MAYA).status_code == 400
    with serving(create_app(memory, settings_for("127.0.0.1")), base_url="http://localhost:8000") as c:
        assert c.get("/v1/turns", params=MAYA).status_code == 200


# ---------------------------------------------------------------- workers


def test_workers_rebuild_the_same_app_from_the_environment(memory: DualMemory, monkeypatch, tmp_path) -> None:
    # what `serve --workers N` leaves for its workers: the config and settings, the key apart
    config = memory.config.updated(data_dir=tmp_path / "shared", top_k=7)
    monkeypatch.setenv(
        "DUALMEM_SERVE_SETTINGS",
        json.dumps(
            {
                "config": config.model_dump(mode="json", exclude={"api_key"}),
                "settings": {
                    "allowed_hosts": None,
                    "cors_origins": [],
                    "max_body": 5000,
                    "runs": [],
                    "demo": MAYA,
                },
            }
        ),
    )
    monkeypatch.setenv("DUALMEM_API_KEY", "k")
    app = worker_app()
    with serving(app, base_url="http://any.host") as c:
        assert app.state.memory.config.top_k == 7 and app.state.memory.config.data_dir == tmp_path / "shared"
        assert c.get("/v1/info").status_code == 401
        assert c.get("/v1/info", headers={"X-API-Key": "k"}).json()["demo"]["user_id"] == "maya"
    monkeypatch.delenv("DUALMEM_SERVE_SETTINGS")
    with pytest.raises(ConfigError, match="start workers with `dualmem serve`"):
        worker_app()
