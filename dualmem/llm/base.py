"""The LLM protocol: chat with token logprobs, async at the core, sync as a thin wrapper.

Backends implement one coroutine, `_acomplete`. `BaseLLM` adds what every backend needs
once: retries with backoff for retryable errors, a timeout, usage accounting per task, and
JSON replies validated against a pydantic model (retried when malformed).
"""

from __future__ import annotations

import abc
import asyncio
import functools
import json
import logging
import re
import threading
from collections import defaultdict
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from .._sync import run_sync
from ..errors import LLMError, LLMReplyError
from ..redact import scrub
from ..tokens import count_messages, count_tokens
from ..types import TokenLogprob, Usage

log = logging.getLogger("dualmem")

__all__ = [
    "FACT_CHARS", "FACTS_PER_REPLY", "FACTS_REPLY_TOKENS", "BaseLLM", "ChatRequest", "Completion",
    "FactText", "Numbers", "complete_items", "parse_json_reply", "reply_schema", "salvage",
]

M = TypeVar("M", bound=BaseModel)


class ChatRequest(BaseModel):
    """One chat call. `task` names the phase ("answer", "extract", ...) for usage and tests."""

    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, str]]
    task: str = "chat"
    max_tokens: int = 256
    temperature: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 5
    json_mode: bool = False
    #: with json_mode: the JSON schema the reply must follow (backends that can decode under
    #: a schema do; the reply is validated against the pydantic model either way)
    json_schema: dict[str, Any] | None = None
    seed: int | None = 0
    stop: list[str] | None = None


class Completion(BaseModel):
    text: str
    logprobs: list[TokenLogprob] | None = None
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None


class BaseLLM(abc.ABC):
    """Base of every backend. Subclasses implement `_acomplete` and set `name`."""

    name: str = "llm"
    #: context window in tokens; deliberation sizes its chunks from it
    context_tokens: int = 8192
    supports_logprobs: bool = True

    def __init__(self, *, max_retries: int = 3, timeout: float = 120.0) -> None:
        self.max_retries = max_retries
        self.timeout = timeout
        self._usage: dict[str, Usage] = defaultdict(Usage)
        self._usage_lock = threading.Lock()

    @abc.abstractmethod
    async def _acomplete(self, request: ChatRequest) -> Completion:
        """One attempt, no retry. Raise `LLMError(retryable=True)` for transient faults."""

    async def acomplete(self, request: ChatRequest) -> Completion:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential(multiplier=0.5, max=8),
            retry=retry_if_exception(lambda e: isinstance(e, LLMError) and e.retryable),
            reraise=True,
        ):
            with attempt:
                try:
                    result = await asyncio.wait_for(self._acomplete(request), self.timeout)
                except TimeoutError as e:
                    raise LLMError(f"{self.name}: no reply within {self.timeout:.0f}s", retryable=True) from e
        result = _scrubbed(self._fill_usage(request, result))
        with self._usage_lock:
            self._usage[request.task] = self._usage[request.task] + result.usage
        return result

    def complete(self, request: ChatRequest) -> Completion:
        return run_sync(self.acomplete(request))

    async def ajson(self, request: ChatRequest, schema: type[M], *, retries: int = 2) -> tuple[M, Usage]:
        """A reply parsed as JSON and validated; malformed replies are retried, then raised."""
        request = request.model_copy(update={"json_mode": True, "json_schema": reply_schema(schema)})
        usage = Usage()
        last: LLMReplyError | None = None
        for _ in range(retries + 1):
            completion = await self.acomplete(request)
            usage = usage + completion.usage
            try:
                return parse_json_reply(completion.text, schema), usage
            except LLMReplyError as e:
                last = e
            if (reply := salvage(completion, schema)) is not None:
                log.warning("%s: reply for task %r cut by max_tokens; kept its complete items",
                            self.name, request.task)
                return reply, usage
        assert last is not None
        raise LLMReplyError(
            f"{self.name} gave no valid JSON for task {request.task!r} after {retries + 1} tries: {last}",
            raw=last.raw,
            usage=usage,
        )

    @property
    def usage(self) -> dict[str, Usage]:
        """Usage so far, per task."""
        with self._usage_lock:
            return dict(self._usage)

    def _fill_usage(self, request: ChatRequest, result: Completion) -> Completion:
        # Backends that do not report usage are counted with tiktoken (cl100k, as D-Mem does).
        usage = result.usage
        if usage.prompt_tokens == 0 and usage.completion_tokens == 0:
            usage = Usage(
                prompt_tokens=count_messages(request.messages),
                completion_tokens=count_tokens(result.text),
            )
        return result.model_copy(update={"usage": usage.model_copy(update={"calls": 1})})


def _scrubbed(result: Completion) -> Completion:
    """A reply without the credentials this process holds: a server that echoes the API key
    must not get it into an answer or a stored memory."""
    text = scrub(result.text)
    tokens = result.logprobs
    if tokens is not None and any(scrub(t.token) != t.token for t in tokens):
        tokens = [t.model_copy(update={"token": scrub(t.token)}) for t in tokens]
    if text == result.text and tokens is result.logprobs:
        return result
    return result.model_copy(update={"text": text, "logprobs": tokens})


def _numbers(value: Any) -> list[int]:
    # models write [1, "2", 3.0] or a bare 2: keep what reads as a number, drop the rest
    items = value if isinstance(value, list) else [value]
    return [
        int(x) for x in items if isinstance(x, int | float) or (isinstance(x, str) and x.strip().isdigit())
    ]


#: a list of message numbers in a model's JSON reply, read leniently
Numbers = Annotated[list[int], BeforeValidator(_numbers)]

#: Bounds on a reply of facts, for constrained decoding only (validation stays lenient for
#: backends that ignore them): FACTS_PER_REPLY facts of at most FACT_CHARS characters fit in
#: FACTS_REPLY_TOKENS, so the reply is not cut mid-object. Unbounded, the local 0.5B model
#: pasted whole turns as "facts" until max_tokens in 5 of 20 extraction replies. (maxLength
#: nests one grammar group per character: affordable since `LocalLLM` asks the grammar about
#: one token at a time, and runs it over the vocabulary only where the bound bites.)
FACT_CHARS = 120
FACTS_PER_REPLY = 8
FACTS_REPLY_TOKENS = 576
FactText = Annotated[str, Field(min_length=1, json_schema_extra={"maxLength": FACT_CHARS})]


@functools.cache
def _schema(model: type[BaseModel]) -> str:
    return json.dumps(_inline(model.model_json_schema(), model.model_json_schema().get("$defs", {})))


def reply_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema a reply to `model` is decoded under: pydantic's, with `$ref`s inlined,
    titles dropped (grammar converters and servers differ in what they resolve) and every
    property required. Validation stays the model's own, defaults included."""
    return json.loads(_schema(model))


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        # a "title" string is a label; a property named "title" is a dict and stays
        out = {k: _inline(v, defs) for k, v in node.items()
               if k != "$defs" and not (k == "title" and isinstance(v, str))}
        if isinstance(out.get("properties"), dict):
            # every key, always, in a fixed order: a decoder never has to choose to omit one
            out["required"] = list(out["properties"])
        return out
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_CLOSE = {"{": "}", "[": "]"}


def salvage(completion: Completion, schema: type[M]) -> M | None:
    """What is kept of a reply cut by max_tokens: its items written in full, the one cut off
    dropped (retrying would cost the same tokens and be cut at the same place). None when the
    reply was not cut, or holds no whole item that validates."""
    if completion.finish_reason != "length" or (whole := complete_items(completion.text)) is None:
        return None
    try:
        return parse_json_reply(whole, schema)
    except LLMReplyError:
        return None


def complete_items(text: str) -> str | None:
    """A JSON reply cut off mid-way, up to the last array item written in full, with its open
    brackets closed: '{"facts": [{"a": 1}, {"a"' -> '{"facts": [{"a": 1}]}'. None when no item
    was finished."""
    start = text.find("{")
    if start < 0:
        return None
    stack: list[str] = []
    cut: tuple[int, list[str]] | None = None
    in_string = escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            escaped, in_string = (False, True) if escaped else (c == "\\", c != '"')
            continue
        if c == '"':
            in_string = True
        elif c == "," and stack and stack[-1] == "[":  # the item before it is whole
            cut = (i, list(stack))
        elif c in _CLOSE:
            stack.append(c)
        elif c in "}]":
            if not stack or _CLOSE[stack.pop()] != c:
                return None
            if stack and stack[-1] == "[":  # an item of an array ends here
                cut = (i + 1, list(stack))
            elif not stack:
                return None  # the whole reply was complete: nothing to salvage
    if cut is None:
        return None
    end, open_ = cut
    return text[start:end] + "".join(_CLOSE[b] for b in reversed(open_))


def parse_json_reply(text: str, schema: type[M]) -> M:
    """Parse a model's JSON reply (tolerating code fences and prose around one object)."""
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    error: Exception | None = None
    for candidate in candidates:
        try:
            # strict=False: a control character inside a string (a raw newline) is kept, not fatal
            data: Any = json.loads(candidate, strict=False)
        except json.JSONDecodeError as e:
            error = e
            continue
        try:
            return schema.model_validate(data)
        except ValidationError as e:
            error = e
    raise LLMReplyError(f"reply is not valid {schema.__name__} JSON ({error})", raw=text[:2000])
