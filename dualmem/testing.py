"""`ScriptedLLM`: a deterministic fake model with scripted replies and logprobs.

Public so that users can test their own code against dualmem without a model::

    from dualmem.testing import ScriptedLLM, ScriptedReply

    llm = ScriptedLLM(by_task={
        "extract": ['{"facts": [{"text": "Alice lives in Paris", "date": null}]}'],
        "answer": [ScriptedReply("Paris", confidence=0.95)],
    })
    memory = DualMemory(llm=llm, path=tmp_path)

Replies are consumed in order per task (a task matches by exact name, then by the prefix
before the first "."); a single reply instead of a list (`by_task={"answer": "Paris"}`)
answers every call of its task; a callable reply is called with the `ChatRequest` and may return a
string or a `ScriptedReply`; an exception instance is raised (to script faults). Every
request is recorded in `calls`.

The tasks dualmem sends are listed in `TASKS` (the values of `dualmem.tasks.Task`):
"answer", "extract", "reconcile", "gate.audit", "gate.sample", "gate.judge",
"neighbours.answer", "deliberate.extract", "deliberate.filter", "deliberate.answer", and the
benchmark's "answer.fullctx".
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .errors import LLMError
from .llm.base import BaseLLM, ChatRequest, Completion
from .tasks import Task
from .types import TokenLogprob

__all__ = ["TASKS", "ScriptedLLM", "ScriptedReply", "Task"]

#: every task string a dualmem LLM call carries (`Task` documents each one)
TASKS: tuple[str, ...] = tuple(t.value for t in Task)


@dataclass
class ScriptedReply:
    """A scripted reply. `confidence` is the probability given to each token.

    `token_probs` overrides it per token (words split on whitespace); `logprobs=False` makes
    this one reply come back without logprobs; `delay` sleeps first (to test concurrency).
    """

    text: str
    confidence: float = 0.9
    token_probs: list[float] | None = None
    logprobs: bool = True
    delay: float = 0.0
    finish_reason: str = "stop"
    extra: dict[str, object] = field(default_factory=dict)


Reply = str | ScriptedReply | BaseException | Callable[[ChatRequest], "str | ScriptedReply"]


class ScriptedLLM(BaseLLM):
    """A fake chat model whose replies, logprobs and faults are scripted."""

    name = "scripted"

    def __init__(
        self,
        replies: Iterable[Reply] | None = None,
        *,
        by_task: dict[str, Reply | Iterable[Reply]] | None = None,
        default: Reply | None = None,
        logprobs: bool = True,
        context_tokens: int = 8192,
        max_retries: int = 0,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(max_retries=max_retries, timeout=timeout)
        self._queue: deque[Reply] = deque(replies or [])
        self._by_task: dict[str, deque[Reply] | Callable[[ChatRequest], str | ScriptedReply]] = {}
        for task, script in (by_task or {}).items():
            if isinstance(script, str | ScriptedReply | BaseException):
                script = _always(script)  # one reply (not a list of characters) for every call
            self._by_task[task] = script if callable(script) else deque(script)
        self._default = default
        self.supports_logprobs = logprobs
        self.context_tokens = context_tokens
        self.calls: list[ChatRequest] = []
        self.max_concurrency_seen = 0
        self._in_flight = 0

    def calls_for(self, task: str) -> list[ChatRequest]:
        return [c for c in self.calls if c.task == task or c.task.startswith(task + ".")]

    def _next(self, request: ChatRequest) -> Reply:
        for key in (request.task, request.task.split(".")[0]):
            script = self._by_task.get(key)
            if script is None:
                continue
            if callable(script):
                return script
            if script:
                return script.popleft()
        if self._queue:
            return self._queue.popleft()
        if self._default is not None:
            return self._default
        raise LLMError(f"ScriptedLLM has no reply left for task {request.task!r}")

    async def _acomplete(self, request: ChatRequest) -> Completion:
        self.calls.append(request)
        reply = self._next(request)
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply):
            reply = reply(request)
        if isinstance(reply, str):
            reply = ScriptedReply(reply)
        self._in_flight += 1
        self.max_concurrency_seen = max(self.max_concurrency_seen, self._in_flight)
        try:
            if reply.delay:
                await asyncio.sleep(reply.delay)
        finally:
            self._in_flight -= 1
        want = request.logprobs and self.supports_logprobs and reply.logprobs
        return Completion(
            text=reply.text,
            logprobs=_logprobs(reply, request.top_logprobs) if want else None,
            model=self.name,
            finish_reason=reply.finish_reason,
        )


def _always(reply: str | ScriptedReply | BaseException) -> Callable[[ChatRequest], str | ScriptedReply]:
    def answer(request: ChatRequest) -> str | ScriptedReply:
        if isinstance(reply, BaseException):
            raise reply
        return reply

    return answer


def _logprobs(reply: ScriptedReply, top: int) -> list[TokenLogprob]:
    words = reply.text.split() or [reply.text]
    probs = reply.token_probs or [reply.confidence] * len(words)
    if len(probs) != len(words):
        raise ValueError(f"token_probs has {len(probs)} values for {len(words)} tokens")
    out = []
    for i, (word, p) in enumerate(zip(words, probs, strict=True)):
        token = word if i == 0 else " " + word
        p = min(max(p, 1e-6), 1.0)
        alternatives = {token: math.log(p)}
        rest = 1.0 - p
        n_alt = max(top - 1, 1)
        for j in range(n_alt):
            if rest > 0:
                alternatives[f"<alt{j}>"] = math.log(rest / n_alt)
        out.append(TokenLogprob(token=token, logprob=math.log(p), top_logprobs=alternatives))
    return out
