"""The reader: one answer call over context lines, with token logprobs.

System 1 reads the top retrieved memories with it; the deliberation strategies read the
facts or raw turns they found with it, and the gate draws its sampled answers with it. One
prompt and one set of decoding settings for all of them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from ..llm.base import BaseLLM, ChatRequest, Completion
from ..prompts import answer_messages, shorten_messages
from ..tasks import Task
from ..tokens import fit_lines, line_budget
from ..types import Memory

__all__ = ["ANSWER_MAX_TOKENS", "Reading", "answer_from", "clean_answer", "context_lines", "shorten"]

ANSWER_MAX_TOKENS = 32
_PREFIX = re.compile(r"^\s*(answer|a)\s*[:\-]\s*", re.I)
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)])[.!?]\s+(?=[A-Z])")
_WORD = re.compile(r"[a-z0-9]+")
SHORT_ANSWER_WORDS = 3  # an answer this long is left as it is


def clean_answer(text: str) -> str:
    """First non-empty line, without an 'Answer:' prefix or quotes; a long reply (small models
    echo context lines) is cut to its first sentence."""
    for line in text.strip().splitlines():
        line = _PREFIX.sub("", line).strip().strip('"').strip()
        if line:
            if len(line.split()) > 12:
                line = _SENTENCE_END.split(line, maxsplit=1)[0]
            return line
    return ""


def context_lines(memories: list[Memory]) -> list[str]:
    """Memories as the reader sees them: dated lines in chronological order (public as
    `dualmem.format_memories`)."""
    # chronological order reads better than rank order and helps "most recent wins"
    ordered = sorted(memories, key=lambda m: (m.event_date or "", m.created_at))
    return [m.render(resolve_dates=True) for m in ordered]


@dataclass(frozen=True)
class Reading:
    """One answer call: the cleaned answer, the raw completion (logprobs, usage) and its time."""

    text: str
    completion: Completion
    seconds: float


async def answer_from(
    llm: BaseLLM, question: str, lines: list[str], *, task: str = Task.ANSWER,
    temperature: float = 0.0, label: str = "Memories", seed: int | None = 0,
) -> Reading:
    """One answer call over context lines (memories, facts or turns), logprobs on."""
    start = time.perf_counter()
    budget = line_budget(llm.context_tokens, ANSWER_MAX_TOKENS, answer_messages(question, [], label))
    lines = fit_lines(lines, budget)
    completion = await llm.acomplete(
        ChatRequest(
            task=task, messages=answer_messages(question, lines, label),
            max_tokens=ANSWER_MAX_TOKENS, temperature=temperature, logprobs=True,
            top_logprobs=5, seed=seed,
        )
    )
    return Reading(clean_answer(completion.text), completion, time.perf_counter() - start)


async def shorten(llm: BaseLLM, question: str, answer: str, *, task: str) -> tuple[str, Completion | None]:
    """(answer cut to the words that answer the question, the call or None if none was made).

    A 0.5B reader often answers in a sentence that restates the question ("Nate chose a bright
    shade of purple") though told to reply in a short phrase; a second call picks the words
    that answer. The reply stands only if every word of it is a word of the answer, so the
    cut can drop words but never add or change one."""
    if len(answer.split()) <= SHORT_ANSWER_WORDS:
        return answer, None
    completion = await llm.acomplete(
        ChatRequest(task=task, messages=shorten_messages(question, answer), max_tokens=24, temperature=0.0)
    )
    short = clean_answer(completion.text).rstrip(".")
    words = set(_WORD.findall(short.lower()))
    if not words or not words <= set(_WORD.findall(answer.lower())):
        return answer, completion
    return short, completion
