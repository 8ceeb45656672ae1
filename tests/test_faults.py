"""LLM faults: timeouts, rate limits, server errors, malformed/truncated/empty replies, missing
logprobs, replies in the wrong language or format.

Each fault has a defined outcome (retried within a bound, degraded with a reason in the trace,
or a clear `LLMError`), never a hang (every call runs under a deadline) and never lost input
(the history is checked after each one). The OpenAI backend is run, with the real `openai`
client, against a fake server on 127.0.0.1 that returns 429/500/timeouts/garbage.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dualmem import DualMemory, LLMError, LLMReplyError
from dualmem.llm.base import ChatRequest
from dualmem.llm.openai import OpenAILLM
from dualmem.testing import ScriptedLLM, ScriptedReply

FAULTS = {"injected": 0}
DEADLINE = 20.0  # no call below may take longer: a hang fails the test instead of blocking CI
QUESTION = "What instrument does Greta play?"
TURNS = [
    {"id": "t1", "speaker": "Greta", "content": "I played the violin at the city orchestra concert."},
    {"id": "t2", "speaker": "Hilde", "content": "I adopted a dog named Rex last week."},
    {"id": "t3", "speaker": "Greta", "content": "I have played since I was eight."},
]


def injected(n: int = 1) -> None:
    FAULTS["injected"] += n


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    print(f"\n[faults] faults injected={FAULTS['injected']}")


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults")
    m = DualMemory(path=path, llm=ScriptedLLM(), extract=False)
    m.add(TURNS, user_id="mel", session_id="s1", timestamp="2023-05-07T10:00:00Z")
    m.close()
    return path


def open_memory(path: Path, llm: ScriptedLLM, **kwargs) -> DualMemory:
    # the faults of the scan strategy's steps; test_evidence.py injects the evidence strategy's
    kwargs.setdefault("deliberation", {"strategy": "scan"})
    return DualMemory(path=path, llm=llm, extract=False, **kwargs)


def intact(memory: DualMemory, user: str = "mel", n: int = 3) -> None:
    assert [t.id for t in memory.history(user_id=user)][:n] == [t["id"] for t in TURNS][:n]


async def bounded(coro):
    return await asyncio.wait_for(coro, DEADLINE)


def request(task: str = "answer") -> ChatRequest:
    return ChatRequest(task=task, messages=[{"role": "user", "content": "hello"}])


# ---------------------------------------------------------------- retries, timeouts (BaseLLM)


async def test_timeout_is_retried_then_raised_within_a_bound() -> None:
    llm = ScriptedLLM([ScriptedReply("late", delay=30)] * 2, timeout=0.05, max_retries=1)
    start = time.monotonic()
    with pytest.raises(LLMError, match="no reply within") as info:
        await bounded(llm.acomplete(request()))
    assert info.value.retryable and len(llm.calls) == 2
    assert time.monotonic() - start < 3  # 2 x 0.05 s + one 0.5 s backoff, not 30 s
    assert llm.usage == {}  # nothing is counted for calls that never answered
    injected(2)


async def test_a_slow_reply_within_the_timeout_is_kept() -> None:
    llm = ScriptedLLM([ScriptedReply("late", delay=0.2)], timeout=5)
    assert (await bounded(llm.acomplete(request()))).text == "late"


async def test_retryable_errors_back_off_then_succeed() -> None:
    llm = ScriptedLLM([LLMError("429 rate limited", retryable=True), "ok"], max_retries=2)
    start = time.monotonic()
    assert (await bounded(llm.acomplete(request()))).text == "ok"
    assert len(llm.calls) == 2 and time.monotonic() - start >= 0.4  # exponential backoff, 0.5 s first
    assert llm.usage["answer"].calls == 1
    injected()


async def test_retries_are_bounded() -> None:
    llm = ScriptedLLM([LLMError("503 unavailable", retryable=True)] * 10, max_retries=2)
    with pytest.raises(LLMError, match="503"):
        await bounded(llm.acomplete(request()))
    assert len(llm.calls) == 3  # max_retries + 1, then the error surfaces
    injected(3)


async def test_a_non_retryable_error_is_not_retried() -> None:
    llm = ScriptedLLM([LLMError("401 bad key"), "never reached"], max_retries=3)
    start = time.monotonic()
    with pytest.raises(LLMError, match="401"):
        await bounded(llm.acomplete(request()))
    assert len(llm.calls) == 1 and time.monotonic() - start < 0.4
    injected()


@pytest.mark.parametrize("bad", [
    "", "   ", '{"facts": [{"text": "Greta plays the vio',
    "Sure! Here are the facts: Greta plays violin.",
    '{"facts": "Greta plays violin"}', '{"hechos": []}', "```json\n{facts: [}\n```", "null", "[]",
    "Oui, voici les faits : Greta joue du violon.",
], ids=repr)
async def test_malformed_json_is_retried_then_a_reply_error(bad: str) -> None:
    llm = ScriptedLLM([bad] * 3)
    from dualmem.ingest.extract import ExtractReply

    with pytest.raises(LLMReplyError, match="no valid JSON") as info:
        await bounded(llm.ajson(request("extract"), ExtractReply))
    assert len(llm.calls) == 3 and info.value.usage.calls == 3
    injected(3)


async def test_a_malformed_reply_followed_by_a_good_one_succeeds() -> None:
    from dualmem.ingest.extract import ExtractReply

    llm = ScriptedLLM(['{"facts": [{"te', '```json\n{"facts": [{"text": "Greta plays violin"}]}\n```'])
    reply, usage = await bounded(llm.ajson(request("extract"), ExtractReply))
    assert reply.facts[0].text == "Greta plays violin" and usage.calls == 2
    injected()


# ---------------------------------------------------------------- add: input is never lost


@pytest.mark.parametrize("fault", [
    [LLMError("500 server error", retryable=True)] * 2,
    [LLMError("400 bad request")],
    ["not json at all"] * 3,
    ['{"facts": [{"text": '] * 3,
    [""] * 3,
], ids=["server-error", "non-retryable", "prose", "truncated", "empty"])
async def test_failed_extraction_keeps_the_turns_and_reindex_recovers(tmp_path, fault) -> None:
    llm = ScriptedLLM(by_task={"extract": fault}, max_retries=1)
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    result = await bounded(memory.aadd(TURNS, user_id="mel", session_id="s1"))
    assert result.error and "kept in history" in result.error
    assert [t.id for t in result.turns] == ["t1", "t2", "t3"] and result.added == []
    assert result.pending == ["t1", "t2", "t3"]
    intact(memory)
    # no fact, but the raw turns are searchable (the mixed index)
    assert sorted(m.id for m in memory.get_all(user_id="mel") if m.is_raw) == ["t1", "t2", "t3"]
    assert [m for m in memory.get_all(user_id="mel") if not m.is_raw] == []
    # the model recovers: reindex re-extracts from the history
    fact = '{"facts": [{"text": "Greta plays the violin", "turns": [1]}]}'
    memory._llm = ScriptedLLM(by_task={"extract": [fact]})
    redone = await bounded(memory.areindex(user_id="mel"))
    assert redone.errors == [] and redone.memories == 1
    assert [m.source_turn_ids for m in memory.get_all(user_id="mel") if not m.is_raw] == [["t1"]]
    assert await memory.apending(user_id="mel") == []
    memory.close()
    injected(len(fault))


async def test_the_reconcile_call_failing_keeps_the_turns(tmp_path) -> None:
    fact = '{"facts": [{"text": "Greta plays the violin", "turns": [1]}]}'
    close = '{"facts": [{"text": "Greta plays the violin well", "turns": [1]}]}'
    llm = ScriptedLLM(by_task={"extract": [fact, close], "reconcile": ["{oops"] * 3})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True, index_turns=False)
    assert (await bounded(memory.aadd(TURNS[:1], user_id="mel"))).error is None
    second = await bounded(memory.aadd(TURNS[1:], user_id="mel"))  # a close fact: reconcile is asked
    assert second.error and "ReconcileReply" in second.error
    assert [t.id for t in memory.history(user_id="mel")] == ["t1", "t2", "t3"]
    assert len(memory.get_all(user_id="mel")) == 1  # the first memory is unchanged
    memory.close()
    injected(3)


# ---------------------------------------------------------------- answer: degraded, flagged, or raised


async def test_fast_answer_failure_is_a_clear_error(stored) -> None:
    memory = open_memory(stored, ScriptedLLM(by_task={"answer": [LLMError("401 bad key")]}))
    with pytest.raises(LLMError, match="401"):
        await bounded(memory.aanswer(QUESTION, user_id="mel", mode="fast"))
    intact(memory)
    injected()


@pytest.mark.parametrize("audit", [
    "Oui, la réponse est correcte.", '{"relevance": "pass"}', "", '{"relevance": {"status": "pa',
], ids=["french", "wrong-shape", "empty", "truncated"])
async def test_an_unreadable_audit_counts_as_fail_and_escalates(stored, audit) -> None:
    llm = ScriptedLLM(by_task={"answer": [ScriptedReply("violin", confidence=0.99)], "gate.audit": [audit],
                               "neighbours.answer": [ScriptedReply("violin", confidence=0.99)]})
    answer = await bounded(open_memory(stored, llm).aanswer(QUESTION, user_id="mel", policy="audit"))
    assert answer.gate.audit.malformed and answer.gate.escalate
    assert "audit reply was not valid JSON: counted as fail" in answer.reason
    assert answer.path == "deliberate" and answer.text == "violin" and not answer.degraded
    injected()


async def test_an_audit_call_error_counts_as_fail(stored) -> None:
    llm = ScriptedLLM(by_task={"answer": ["violin"], "gate.audit": [LLMError("500", retryable=True)],
                               "neighbours.answer": ["violin"]})
    answer = await bounded(open_memory(stored, llm).aanswer(QUESTION, user_id="mel", policy="audit"))
    assert answer.gate.escalate and "audit call failed" in answer.reason
    injected()


async def test_unreadable_deliberation_chunks_are_skipped_and_flagged(stored) -> None:
    llm = ScriptedLLM(by_task={"deliberate.extract": ["Greta joue du violon."] * 2,
                               "deliberate.answer": ["NONE"], "answer": ["violin"]})
    answer = await bounded(open_memory(stored, llm).aanswer(QUESTION, user_id="mel", mode="full"))
    assert answer.path == "deliberate" and answer.degraded
    assert "1 chunk(s) unreadable and skipped" in answer.reason
    assert answer.usage["deliberate.extract"].calls == 2  # one retry, then skipped
    injected(2)


async def test_deliberation_failure_keeps_the_fast_answer_flagged(stored) -> None:
    llm = ScriptedLLM(by_task={
        "answer": [ScriptedReply("NONE", confidence=0.99)],
        "neighbours.answer": [LLMError("500 server error")],
    })
    memory = open_memory(stored, llm)
    answer = await bounded(memory.aanswer(QUESTION, user_id="mel", policy="cascade"))
    assert answer.degraded and answer.path == "fast" and answer.text == "NONE"
    assert "deliberation failed" in answer.reason and "fast answer kept" in answer.reason
    intact(memory)
    injected()


async def test_full_mode_falls_back_to_the_fast_path_when_deliberation_fails(stored) -> None:
    llm = ScriptedLLM(by_task={"deliberate.extract": [LLMError("503")], "answer": ["violin"]})
    answer = await bounded(open_memory(stored, llm).aanswer(QUESTION, user_id="mel", mode="full"))
    assert answer.degraded and answer.path == "fast" and answer.text == "violin"
    assert answer.reason == "full mode: always deliberate; deliberation failed (503), fast answer kept"
    injected()


async def test_missing_logprobs_are_reported_not_fatal(stored) -> None:
    replies = {"answer": [ScriptedReply("violin", logprobs=False)] * 2, "neighbours.answer": ["violin"]}
    answer = await bounded(open_memory(stored, ScriptedLLM(by_task=dict(replies)))
                           .aanswer(QUESTION, user_id="mel", policy="signals"))
    entropy = next(s for s in answer.gate.signals if s.name == "entropy")
    assert not entropy.available and "no token logprobs" in entropy.reason
    assert "decided on the other signals" in answer.reason and answer.logprobs is None
    strict = open_memory(stored, ScriptedLLM(by_task=dict(replies)), gate={"on_unavailable": "escalate"})
    escalated = await bounded(strict.aanswer(QUESTION, user_id="mel", policy="signals"))
    assert escalated.gate.escalate and "escalated because entropy unavailable" in escalated.reason
    injected(2)


@pytest.mark.parametrize(("reply", "text"), [
    ("", ""), ("Answer: \"violin\"\nBecause she said so.", "violin"), ("\n\n  violin  \n", "violin"),
    ("Greta plays the violin in the city orchestra and has since she was eight years old. She loves it.",
     "Greta plays the violin in the city orchestra and has since she was eight years old"),
], ids=["empty", "prefixed", "blank-lines", "rambling"])
async def test_odd_answer_formats_are_cleaned(stored, reply, text) -> None:
    llm = ScriptedLLM(by_task={"answer": [reply]})
    answer = await bounded(open_memory(stored, llm).aanswer(QUESTION, user_id="mel", mode="fast"))
    assert answer.text == text
    injected()


async def test_an_empty_fast_answer_escalates(stored) -> None:
    llm = ScriptedLLM(by_task={"answer": [""], "neighbours.answer": ["violin"]})
    answer = await bounded(open_memory(stored, llm).aanswer(QUESTION, user_id="mel", policy="cascade"))
    assert answer.gate.escalate and "refusal" in answer.gate.reason and answer.text == "violin"
    injected()


# ---------------------------------------------------------------- the OpenAI backend vs a fake server


def _completion(content: str = "hi", logprobs: bool = False) -> dict:
    lp = {"content": [{"token": "hi", "logprob": -0.1, "bytes": None,
                       "top_logprobs": [{"token": "hi", "logprob": -0.1, "bytes": None}]}]}
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop", "logprobs": lp if logprobs else None}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


class FakeOpenAI:
    """A chat-completions endpoint on 127.0.0.1 that plays a script of replies.

    Script items: an HTTP status (429, 500, ...), "ok", "logprobs", "slow" (sleeps past the
    client timeout), "garbage" (a non-JSON body), "html", "no-choices", "echo-auth" (401 whose
    body echoes the Authorization header, like a careless proxy), "echo-key" (a reply that repeats
    the key), "no-schema" (400 naming
    response_format, as servers without json_schema answer). After the script: "ok".
    """

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                fake.requests.append({"headers": dict(self.headers), "body": body})
                kind = fake.script.pop(0) if fake.script else "ok"
                if kind == "slow":
                    time.sleep(1.0)
                    kind = "ok"
                status, ctype, payload = 200, "application/json", b""
                if kind in ("ok", "logprobs"):
                    payload = json.dumps(_completion(logprobs=kind == "logprobs")).encode()
                elif kind == "garbage":
                    payload = b'{"id": "c1", "choi'
                elif kind == "html":
                    ctype, payload = "text/html", b"<html><body>502 Bad Gateway</body></html>"
                elif kind == "no-choices":
                    payload = json.dumps({**_completion(), "choices": []}).encode()
                elif kind == "no-schema":
                    status = 400
                    message = "response_format type 'json_schema' is not supported"
                    payload = json.dumps({"error": {"message": message, "type": "invalid"}}).encode()
                elif kind == "echo-key":  # a 200 whose reply repeats the key (as facts JSON)
                    text = f"Mel's key is {self.headers.get('Authorization', '').removeprefix('Bearer ')}"
                    content = json.dumps({"facts": [{"text": text, "date": None, "turns": [1]}]})
                    payload = json.dumps(_completion(content)).encode()
                elif kind == "echo-auth":
                    status = 401
                    message = f"invalid key in header: {self.headers.get('Authorization')}"
                    payload = json.dumps({"error": {"message": message, "type": "auth"}}).encode()
                else:
                    status = int(kind)
                    payload = json.dumps({"error": {"message": f"fake error {kind}", "type": "x"}}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def llm(self, **kwargs) -> OpenAILLM:
        kwargs = {"api_key": "sk-test-0123456789", "max_retries": 2, "timeout": 0.5, **kwargs}
        return OpenAILLM("fake", base_url=self.url, **kwargs)


@pytest.mark.parametrize(("script", "calls"), [
    ([429], 2), ([500, 503], 3), (["slow"], 2), (["garbage"], 2), (["html"], 2), (["no-choices"], 2),
], ids=["429", "500-503", "timeout", "garbage", "html", "no-choices"])
async def test_openai_transient_faults_are_retried(script, calls) -> None:
    with FakeOpenAI(script) as server:
        completion = await bounded(server.llm().acomplete(request()))
    assert completion.text == "hi" and len(server.requests) == calls
    assert completion.usage.prompt_tokens == 5
    injected(len(script))


@pytest.mark.parametrize("fault", [429, 500, "slow", "garbage", "html"])
async def test_openai_retries_stop_at_the_bound(fault) -> None:
    with FakeOpenAI([fault] * 10) as server:
        start = time.monotonic()
        with pytest.raises(LLMError) as info:
            await bounded(server.llm(max_retries=2).acomplete(request()))
    assert info.value.retryable and len(server.requests) == 3
    assert time.monotonic() - start < 10
    injected(3)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_openai_client_errors_are_not_retried(status) -> None:
    with FakeOpenAI([status]) as server:
        with pytest.raises(LLMError, match=str(status)) as info:
            await bounded(server.llm().acomplete(request()))
    assert not info.value.retryable and len(server.requests) == 1
    injected()


async def test_openai_connection_refused_is_retryable_and_bounded() -> None:
    with FakeOpenAI([]) as server:
        url = server.url
    llm = OpenAILLM("fake", base_url=url, api_key="sk-x", max_retries=1, timeout=0.5)
    with pytest.raises(LLMError, match="APIConnectionError") as info:
        await bounded(llm.acomplete(request()))
    assert info.value.retryable
    injected(2)


async def test_openai_logprobs_present_or_missing() -> None:
    with FakeOpenAI(["logprobs", "ok"]) as server:
        llm = server.llm()
        with_lp = await bounded(llm.acomplete(request().model_copy(update={"logprobs": True})))
        without = await bounded(llm.acomplete(request().model_copy(update={"logprobs": True})))
    assert with_lp.logprobs[0].token == "hi" and with_lp.logprobs[0].top_logprobs == {"hi": -0.1}
    assert without.logprobs is None
    assert server.requests[0]["body"]["logprobs"] is True and server.requests[0]["body"]["top_logprobs"] == 5
    injected()


async def test_openai_json_schema_then_a_clean_fallback() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    ask = request("extract").model_copy(update={"json_mode": True, "json_schema": schema})
    with FakeOpenAI(["ok", "no-schema", "ok", "ok"]) as server:
        accepting = server.llm()
        await bounded(accepting.acomplete(ask))
        rejecting = server.llm(json_response_format=True)
        await bounded(rejecting.acomplete(ask))
        await bounded(rejecting.acomplete(ask))  # remembered: json_schema is not tried again
    formats = [r["body"].get("response_format") for r in server.requests]
    assert formats[0] == {"type": "json_schema",
                          "json_schema": {"name": "extract", "schema": schema, "strict": False}}
    assert formats[1]["type"] == "json_schema"
    assert formats[2:] == [{"type": "json_object"}, {"type": "json_object"}]
    injected()


async def test_a_400_that_is_not_about_the_format_is_not_retried() -> None:
    ask = request("extract").model_copy(update={"json_mode": True, "json_schema": {"type": "object"}})
    with FakeOpenAI([400]) as server:
        with pytest.raises(LLMError, match="400"):
            await bounded(server.llm().acomplete(ask))
    assert len(server.requests) == 1
    injected()


async def test_openai_faults_through_dualmemory_keep_the_history(stored) -> None:
    with FakeOpenAI([500] * 3) as server:
        memory = DualMemory(path=stored, llm=server.llm(), extract=False)
        with pytest.raises(LLMError, match="InternalServerError"):
            await bounded(memory.aanswer(QUESTION, user_id="mel", mode="fast"))
        intact(memory)
        assert len(server.requests) == 3
    injected(3)
