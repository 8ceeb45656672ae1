"""BaseLLM: retries, timeouts, JSON replies and usage accounting (through ScriptedLLM)."""

from __future__ import annotations

import json
import math
import time

import pytest
from pydantic import BaseModel
from tenacity import wait_none

from dualmem.errors import LLMError, LLMReplyError
from dualmem.llm.base import BaseLLM, ChatRequest, Completion, parse_json_reply
from dualmem.testing import ScriptedLLM, ScriptedReply
from dualmem.tokens import count_messages, count_tokens
from dualmem.types import Usage

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]


def request(task: str = "answer", **kw) -> ChatRequest:
    return ChatRequest(messages=MESSAGES, task=task, **kw)


class Facts(BaseModel):
    facts: list[str]


@pytest.fixture
def no_backoff(monkeypatch):
    # the retry policy is under test, not the sleeping between attempts
    monkeypatch.setattr("dualmem.llm.base.wait_exponential", lambda **_: wait_none())


def test_retryable_errors_are_retried_until_a_reply(no_backoff):
    llm = ScriptedLLM(
        [LLMError("busy", retryable=True), LLMError("busy again", retryable=True), "fine"],
        max_retries=2,
    )
    result = llm.complete(request())
    assert result.text == "fine"
    assert len(llm.calls) == 3
    assert llm.usage["answer"].calls == 1  # usage counts replies, not failed attempts


def test_retries_are_bounded(no_backoff):
    llm = ScriptedLLM([LLMError(f"busy {i}", retryable=True) for i in range(3)] + ["late"],
                      max_retries=2)
    with pytest.raises(LLMError, match="busy 2"):
        llm.complete(request())
    assert len(llm.calls) == 3
    assert "answer" not in llm.usage


def test_retries_back_off():
    llm = ScriptedLLM([LLMError("busy", retryable=True), "fine"], max_retries=1)
    start = time.perf_counter()
    assert llm.complete(request()).text == "fine"
    assert time.perf_counter() - start >= 0.4  # wait_exponential(multiplier=0.5): 0.5 s first


@pytest.mark.parametrize("error", [LLMError("bad request"), ValueError("bug")])
def test_non_retryable_errors_are_not_retried(no_backoff, error):
    llm = ScriptedLLM([error, "never"], max_retries=2)
    with pytest.raises(type(error)):
        llm.complete(request())
    assert len(llm.calls) == 1


def test_timeout_raises_llm_error_quickly():
    llm = ScriptedLLM([ScriptedReply("too late", delay=5)], timeout=0.05)
    start = time.perf_counter()
    with pytest.raises(LLMError, match="no reply within") as info:
        llm.complete(request())
    assert time.perf_counter() - start < 1.0
    assert info.value.retryable


def test_timeout_is_retried(no_backoff):
    llm = ScriptedLLM([ScriptedReply("too late", delay=5), "in time"], timeout=0.05, max_retries=1)
    assert llm.complete(request()).text == "in time"


def test_no_reply_left_is_an_llm_error():
    with pytest.raises(LLMError, match="no reply left"):
        ScriptedLLM().complete(request())


@pytest.mark.parametrize(
    "reply",
    [
        '{"facts": ["a", "b"]}',
        '```json\n{"facts": ["a", "b"]}\n```',
        'Sure! Here it is:\n```\n{"facts": ["a", "b"]}\n```\nAnything else?',
        'The facts are {"facts": ["a", "b"]} as requested.',
    ],
)
def test_parse_json_reply_tolerates_fences_and_prose(reply):
    assert parse_json_reply(reply, Facts).facts == ["a", "b"]


@pytest.mark.parametrize("reply", ["", "no json here", '{"facts": "not a list"}', '{"facts": [1, ', "[]"])
def test_parse_json_reply_rejects(reply):
    with pytest.raises(LLMReplyError) as info:
        parse_json_reply(reply, Facts)
    assert info.value.raw == reply


async def test_ajson_retries_malformed_replies():
    llm = ScriptedLLM(by_task={"extract": ["oops", '{"facts": 3}', '```json\n{"facts": ["x"]}\n```']})
    parsed, usage = await llm.ajson(request("extract"), Facts)
    assert parsed.facts == ["x"]
    assert usage.calls == 3 and llm.usage["extract"].calls == 3
    assert all(c.json_mode for c in llm.calls)


async def test_a_reply_cut_by_max_tokens_keeps_its_complete_items():
    cut = ScriptedReply('{"facts": ["one", "two", "thr', finish_reason="length")
    llm = ScriptedLLM(by_task={"extract": [cut, '{"facts": ["never asked"]}']})
    parsed, usage = await llm.ajson(request("extract"), Facts)
    assert parsed.facts == ["one", "two"] and usage.calls == 1
    # the same text, not cut by max_tokens, is malformed and retried
    llm = ScriptedLLM(by_task={"extract": ['{"facts": ["one", "two", "thr', '{"facts": ["retried"]}']})
    assert (await llm.ajson(request("extract"), Facts))[0].facts == ["retried"]
    # a cut reply without one finished item is retried too
    llm = ScriptedLLM(by_task={"extract": [ScriptedReply('{"facts": ["on', finish_reason="length"),
                                           '{"facts": ["retried"]}']})
    assert (await llm.ajson(request("extract"), Facts))[0].facts == ["retried"]


@pytest.mark.parametrize(("text", "whole"), [
    ('{"facts": [{"text": "a", "turns": [1]}, {"text": "b", "tu',
     '{"facts": [{"text": "a", "turns": [1]}]}'),
    ('{"facts": [{"text": "a ] } \\" ,", "turns": [1, 2',
     '{"facts": [{"text": "a ] } \\" ,", "turns": [1]}]}'),
    ('{"lines": [3, 7, 1', '{"lines": [3, 7]}'),
    ('{"facts": []}', None),  # complete: nothing to salvage
    ('{"facts": [{"text": "a', None),
    ("no json", None),
])
def test_complete_items(text, whole):
    from dualmem.llm.base import complete_items

    assert complete_items(text) == whole


async def test_ajson_raises_after_its_retries():
    llm = ScriptedLLM(by_task={"extract": ["nope 1", "nope 2", "nope 3", '{"facts": []}']})
    with pytest.raises(LLMReplyError, match="after 3 tries") as info:
        await llm.ajson(request("extract"), Facts)
    assert info.value.raw == "nope 3"
    assert len(llm.calls) == 3


def test_usage_is_counted_per_task_with_tiktoken():
    llm = ScriptedLLM(by_task={"answer": ["Paris", "London town"], "extract": ['{"facts": []}']})
    first = llm.complete(request("answer"))
    llm.complete(request("answer"))
    llm.complete(request("extract"))
    prompt = count_messages(MESSAGES)
    assert first.usage == Usage(prompt_tokens=prompt, completion_tokens=count_tokens("Paris"), calls=1)
    assert llm.usage["answer"] == Usage(
        prompt_tokens=2 * prompt, completion_tokens=count_tokens("Paris") + count_tokens("London town"),
        calls=2,
    )
    assert llm.usage["extract"].calls == 1
    assert prompt > count_tokens("be brief") + count_tokens("hello there")


def test_reported_usage_is_kept():
    class Reporting(BaseLLM):
        async def _acomplete(self, request: ChatRequest) -> Completion:
            return Completion(text="hi", usage=Usage(prompt_tokens=1000, completion_tokens=7))

    llm = Reporting(max_retries=0)
    assert llm.complete(request()).usage == Usage(prompt_tokens=1000, completion_tokens=7, calls=1)
    assert llm.usage["answer"].total_tokens == 1007


def test_scripted_logprobs():
    llm = ScriptedLLM([ScriptedReply("Paris France", token_probs=[0.5, 0.25]), "plain"],
                      by_task={"x": [ScriptedReply("no logprobs", logprobs=False)]})
    got = llm.complete(request(logprobs=True, top_logprobs=3)).logprobs
    assert [t.token for t in got] == ["Paris", " France"]
    assert [t.logprob for t in got] == pytest.approx([math.log(0.5), math.log(0.25)])
    assert len(got[0].top_logprobs) == 3
    assert llm.complete(request(logprobs=False)).logprobs is None
    assert llm.complete(request("x", logprobs=True)).logprobs is None


def test_scripted_task_prefix_and_callable_replies():
    llm = ScriptedLLM(by_task={"gate": lambda r: f"seen {r.task}"})
    assert llm.complete(request("gate.audit")).text == "seen gate.audit"
    assert len(llm.calls_for("gate")) == 1


def test_scripted_single_reply_answers_every_call_of_its_task():
    llm = ScriptedLLM(by_task={"answer": "Paris", "gate": ScriptedReply("ok", confidence=0.5),
                               "x": LLMError("down")})
    assert [llm.complete(request()).text for _ in range(3)] == ["Paris"] * 3  # not "P", "a", "r"
    assert llm.complete(request("gate.audit")).text == "ok"
    with pytest.raises(LLMError, match="down"):
        llm.complete(request("x"))


async def test_sync_complete_inside_a_running_loop():
    llm = ScriptedLLM(["from the loop"])
    assert llm.complete(request()).text == "from the loop"


class _Served:
    """An OpenAI client stand-in: `models.list()` and `chat.completions.create`."""

    def __init__(self, ids: list[str]) -> None:
        from types import SimpleNamespace

        from openai.types.chat import ChatCompletion

        self.asked: list[str] = []

        async def models():
            for i in ids:
                yield SimpleNamespace(id=i)

        async def create(**kwargs):
            self.asked.append(kwargs["model"])
            return ChatCompletion.model_validate({
                "id": "c", "object": "chat.completion", "created": 0, "model": kwargs["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "hi"}}]})

        self.models = SimpleNamespace(list=models)
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=create))


def test_openai_model_auto_picks_the_single_served_model():
    from dualmem.errors import ConfigError
    from dualmem.llm.openai import OpenAILLM

    gguf = "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"  # what llama.cpp's server calls its model
    client = _Served([gguf])
    llm = OpenAILLM("auto", base_url="http://127.0.0.1:8080/v1", client=client, max_retries=0)
    assert llm.complete(request()).text == "hi" and llm.complete(request()).text == "hi"
    assert client.asked == [gguf, gguf] and llm.name == f"openai:{gguf}"
    several = OpenAILLM("auto", client=_Served(["a", "b"]), max_retries=0)
    with pytest.raises(ConfigError, match=r"serves 2: \['a', 'b'\]; set DUALMEM_MODEL"):
        several.complete(request())


@pytest.mark.parametrize("reply", ["extract", "scan", "reconcile"])
def test_the_longest_reply_of_facts_its_schema_allows_fits_its_token_budget(reply):
    # the schema's bounds are what keeps a constrained reply from being cut mid-object: the
    # most it allows (every fact at full length, a date and four turn numbers) must fit
    from dualmem.answering.deliberate.scan import _FactsReply
    from dualmem.ingest.extract import ExtractReply, ReconcileReply
    from dualmem.llm.base import FACT_CHARS, FACTS_PER_REPLY, FACTS_REPLY_TOKENS, reply_schema
    from dualmem.tokens import count_tokens

    model = {"extract": ExtractReply, "scan": _FactsReply, "reconcile": ReconcileReply}[reply]
    key = "actions" if reply == "reconcile" else "facts"
    schema = reply_schema(model)
    assert schema["properties"][key]["maxItems"] == FACTS_PER_REPLY
    assert str(FACT_CHARS) in json.dumps(schema["properties"][key]["items"])  # the text's maxLength
    words = "Ines said the bakery on Rua Nova interviewed her on 12 May 2023 for the head baker job "
    text = (words * 3)[:FACT_CHARS]
    item = {
        "extract": {"text": text, "date": "2023-05-12", "turns": [10, 11, 12, 13]},
        "scan": {"fact": text, "score": 0.95, "turns": [10, 11, 12, 13]},
        "reconcile": {"fact": 8, "event": "UPDATE", "id": "m24",
                      "text": text},
    }[reply]
    longest = json.dumps({key: [item] * FACTS_PER_REPLY})
    # 10% slack: local models' tokenizers are not cl100k
    assert count_tokens(longest) * 1.1 <= FACTS_REPLY_TOKENS
    assert len(getattr(model.model_validate_json(longest), key)) == FACTS_PER_REPLY
