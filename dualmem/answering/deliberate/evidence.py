"""System 2, evidence first: find the raw lines that answer the question, then read only them.

With a 0.5B reader, F1 is ~0.52 when every evidence turn is in the context and ~0.13 when
one is missing, and reading only the evidence turns beats reading the top 30. So this
strategy spends its calls on finding and focusing evidence, never on rewriting it:

1. search every raw turn of the scope (not only the index, which may hold extracted facts
   that lost something) with the question and with the names and numbers in it: the index's
   hybrid search mapped back to turns comes first, in its own order, and BM25 over the raw
   turns adds what it did not return. (Sub-queries proposed by the model were tried and
   dropped: Qwen2.5-0.5B restated the question as its only sub-query for 7 of 7 LoCoMo
   questions, so they found nothing new.);
2. widen the best hits with their session neighbours (an answer often sits in the reply):
   ~40 candidate lines holding 0.858 of LoCoMo dev's evidence (883 questions);
3. the 16 best-ranked candidates are read (`select="rank"`, the default). With
   `select="model"` the model *selects* supporting lines by number in chunked listwise
   prompts instead (it copies no text, so it cannot get a fact wrong in the retelling). The
   0.5B model did not select: 62% of its replies counted 1, 2, 3, ... until the token limit,
   and reading by rank held more of the evidence (0.748 vs 0.714 of LoCoMo dev's evidence
   turns in the lines read) at the same F1 for half the prompt tokens;
4. the answer is read from those raw lines in chronological order (newest first for
   a question about now), each with its session date and its relative dates resolved in
   code (`text.resolve_relative`); a date answer that copies the day a line was said, when
   the line dates the event relatively, becomes the event's date (`repair_date`);
5. an answer of more than three words is cut to the words that answer the question
   (`reader.shorten`, one short call that may only drop words). Measured offline on 120
   LoCoMo dev questions' recorded answers: +3.4 F1 points on this strategy's answers, +1.1
   (interval across 0) on the fast path's, which are shorter already.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from pydantic import BaseModel, Field

from ...errors import LLMReplyError
from ...index.lexical import Postings, rrf
from ...llm.base import BaseLLM, ChatRequest, Numbers, parse_json_reply, reply_schema
from ...prompts import select_messages
from ...tasks import Task
from ...text import (
    asks_count,
    asks_current,
    asks_items,
    asks_when,
    event_date,
    grounded_items,
    human_day,
    terms,
)
from ...tokens import count_tokens, fit_lines, line_budget
from ...types import NO_ANSWER, Fact, Memory, SelectBy, Turn
from ..gate.signals import agreement, looks_like_refusal
from ..reader import answer_from, shorten
from .arbiter import SUPPORTED, supported_by
from .base import Deliberation, Strategy, evidence_line

__all__ = ["EvidenceFirst", "TurnSearch", "evidence_line", "parse_selection", "repair_date"]

#: the index's hybrid search in one scope, as ranked turn ids (built by the pipeline)
TurnSearch = Callable[[str, int], Awaitable[list[str]]]

_NAME = re.compile(r"\b[A-Z][a-zA-Z'\-]+|\b\d[\d,./:-]*\b")
_DIGITS = re.compile(r"\b\d+\b")
_REPLY = 64  # tokens for a selection reply: a JSON list of line numbers
_BARE_DATE = re.compile(r"^\W*(?:on\s+)?(\d{1,2} [A-Z][a-z]+ \d{4})\W*$", re.I)


def repair_date(question: str, answer: str, turns: Sequence[Turn]) -> tuple[str, Turn | None]:
    """(answer, the line that changed it, or None). A 0.5B reader answers a date question with
    the date a line was said even when the line dates the event relatively ("I went
    yesterday"); the event's date is then computed here, from the line said that day that
    shares most words with the question."""
    bare = _BARE_DATE.match(answer)
    if not bare or not asks_when(question):
        return answer, None
    wanted = set(terms(question))
    said = [
        t for t in turns
        if human_day(t.timestamp).lower() == bare[1].lower()
        and event_date(t.timestamp.date(), t.text)
    ]
    scored = [(len(wanted & set(terms(t.text))), t) for t in said]
    overlap, line = max(scored, key=lambda p: p[0], default=(0, None))
    if line is None or overlap == 0:
        return answer, None
    fixed = event_date(line.timestamp.date(), line.text)
    assert fixed is not None
    return fixed, line


class _Selection(BaseModel):
    lines: Numbers = Field(default_factory=list, json_schema_extra={"maxItems": 8})


def parse_selection(text: str, n: int) -> list[int] | None:
    """Line numbers (1..n, first mention order) from a selection reply; None if unreadable.

    Small models answer `{"lines": [2, 5]}`, a bare `[2, 5]`, or "Lines 2 and 5": any of them
    reads. A reply with no number at all and no JSON is unreadable; `{"lines": []}` is a
    valid "none of these"."""
    try:
        numbers = parse_json_reply(text, _Selection).lines
    except LLMReplyError:
        numbers = [int(d) for d in _DIGITS.findall(text)]
        if not numbers:
            return None
    return [i for i in dict.fromkeys(numbers) if 1 <= i <= n]


class EvidenceFirst(Strategy):
    """The `evidence` deliberation strategy (see the module docstring)."""

    tier = "evidence"
    answer_task = Task.DELIBERATE_ANSWER
    label = "Conversation excerpts"

    def __init__(
        self,
        llm: BaseLLM,
        *,
        per_query: int = 20,
        pool: int = 30,
        widen: int = 8,
        window: int = 1,
        chunk_lines: int = 20,
        keep_top: int = 4,
        max_lines: int = 30,
        sessions: int = 4,
        select: SelectBy = "rank",
        rank_lines: int = 16,
        search: TurnSearch | None = None,
    ) -> None:
        super().__init__(llm)
        self.search = search
        self.select = select
        self.rank_lines = rank_lines
        self.per_query = per_query
        self.pool = pool
        self.widen = widen
        self.window = window
        self.chunk_lines = chunk_lines
        self.keep_top = keep_top
        self.max_lines = max_lines
        self.sessions = sessions

    def note(self, result: Deliberation, turns: list[Turn], accepted: bool) -> str:
        return "; ".join(result.notes)

    async def run(self, question: str, turns: list[Turn], memories: list[Memory]) -> Deliberation:
        """`memories` are not used: the index is searched again for each query."""
        result = Deliberation(text="", tier=self.tier)
        if not turns:
            await self._read(question, [], [], result)
            return result
        start = time.perf_counter()
        queries = self._queries(question, turns)
        ranked = await self._rank(queries, turns)
        pool = self._widen(ranked, turns)
        result.latency["deliberate.search"] = time.perf_counter() - start  # no model call
        selected = await self._select(question, pool, ranked, turns, result)
        # the best search hits stay as insurance: a small selector misses lines, and a missing
        # evidence line costs far more F1 than an extra one
        keep = list(dict.fromkeys(selected + ranked[: self.keep_top]))[: self.max_lines]
        result.support_turn_ids = [turns[i].id for i in selected]
        result.notes.insert(
            0, f"{len(queries)} queries, {len(pool)} candidate lines, {len(selected)} selected"
        )
        current = asks_current(question)
        if current or (asks_items(question) and not asks_count(question)):
            groups = self._sessions(selected or keep, keep, turns, newest_first=current)
            if len(groups) > 1:
                await self._read_by_session(question, groups, turns, result, current)
                return result
        # a 0.5B reader takes the first line that answers: for a question about now ("where
        # does she live now?") that must be the newest, so those read newest first
        await self._read(question, sorted(keep, reverse=current), turns, result, current)
        return result

    # ---------------------------------------------------------------- search

    def _queries(self, question: str, turns: list[Turn]) -> list[tuple[str, bool]]:
        """(query, also search the index?) pairs: the question, and the names and numbers in it
        (without the speakers' names, which every line holds; lexical only, as an embedding of
        a bare name list means little)."""
        queries = [(question, True)]
        speakers = {t.speaker.lower() for t in turns if t.speaker}
        names = [n for n in _NAME.findall(question) if n.lower().removesuffix("'s") not in speakers]
        if names[1:] or (names and not question.startswith(names[0])):
            queries.append((" ".join(names), False))
        return queries

    async def _rank(self, queries: list[tuple[str, bool]], turns: list[Turn]) -> list[int]:
        """Turn positions, best first: the index's hybrid search in its own order, then the
        lexical hits of every query over the raw turns, fused by reciprocal rank, that it
        did not return. Fusing the two rankings as equals put less evidence in the 16 best
        lines (0.772 of LoCoMo dev's evidence turns, 883 questions) than the index's order
        alone (0.801): its speaker, session and sentence scoring ranks better than a plain
        BM25 over the turns, which only adds what the index lacks (turns extraction
        skipped, lines a name finds)."""
        corpus = [terms(f"{t.speaker or t.role}: {t.text}") for t in turns]
        bm25 = Postings(corpus) if any(corpus) else None
        position = {t.id: i for i, t in enumerate(turns)}
        first: list[int] = []
        rankings: list[list[int]] = []
        for query, dense in queries:
            if bm25 is not None and (wanted := terms(query)):
                scores = bm25.scores(wanted)
                hits = [int(i) for i in (-scores).argsort(kind="stable")[: self.per_query] if scores[i] > 0]
                rankings.append(hits)
            if dense and self.search is not None:
                found = await self.search(query, self.per_query)
                first += [position[t] for t in found[: self.per_query] if t in position]
        lexical = [int(i) for i in rrf([[str(i) for i in r] for r in rankings])]
        return list(dict.fromkeys(first + lexical))

    def _widen(self, ranked: list[int], turns: list[Turn]) -> list[int]:
        pool = set(ranked[: self.pool])
        for i in ranked[: self.widen]:
            for j in range(i - self.window, i + self.window + 1):
                if 0 <= j < len(turns) and turns[j].session_id == turns[i].session_id:
                    pool.add(j)
        return sorted(pool)

    # ---------------------------------------------------------------- selection

    def _select_budget(self, question: str) -> int:
        """Tokens left for the lines of one selection prompt."""
        return line_budget(self.llm.context_tokens, _REPLY, select_messages(question, []))

    def _chunks(self, question: str, pool: list[int], turns: list[Turn], budget: int) -> list[list[int]]:
        """Consecutive pieces of the pool, each fitting one selection prompt (a line longer
        than a whole prompt goes alone, cut to fit)."""
        chunks: list[list[int]] = [[]]
        used = 0
        for i in pool:
            cost = min(count_tokens(evidence_line(turns[i])) + 6, budget)
            if chunks[-1] and (len(chunks[-1]) >= self.chunk_lines or used + cost > budget):
                chunks.append([])
                used = 0
            chunks[-1].append(i)
            used += cost
        return [c for c in chunks if c]

    async def _select(
        self, question: str, pool: list[int], ranked: list[int], turns: list[Turn], result: Deliberation
    ) -> list[int]:
        """Selected turn positions, best search rank first."""
        rank = {i: r for r, i in enumerate(ranked)}
        if self.select == "rank":
            return sorted(pool, key=lambda i: rank.get(i, len(rank)))[: self.rank_lines]
        start = time.perf_counter()
        chosen: list[int] = []
        budget = self._select_budget(question)
        for chunk in self._chunks(question, pool, turns, budget):
            lines = fit_lines([evidence_line(turns[i]) for i in chunk], budget)
            # under the reply's schema: at most 8 numbers, so the JSON always closes (unbounded,
            # the 0.5B model counted 1, 2, 3... until max_tokens in 62% of its replies)
            request = ChatRequest(
                task=Task.DELIBERATE_SELECT, messages=select_messages(question, lines), max_tokens=_REPLY,
                json_mode=True, json_schema=reply_schema(_Selection),
            )
            # model failures (LLMError) propagate: the caller keeps the fast answer, degraded
            completion = await self.llm.acomplete(request)
            result.add_usage(Task.DELIBERATE_SELECT, completion.usage)
            picked = parse_selection(completion.text, len(chunk))
            by_rank = sorted(chunk, key=lambda i: rank.get(i, len(rank)))
            if picked is None:
                result.notes.append("a selection reply was unreadable: its lines kept by search rank")
                picked_ids = by_rank[: self.keep_top]
            else:
                picked_ids = [chunk[n - 1] for n in picked]
                cap = max(3, len(chunk) // 2)
                if len(picked_ids) > cap:
                    # a selector that picks most of the lines is not selecting: trust the search
                    # among its picks
                    picked_ids = sorted(picked_ids, key=lambda i: rank.get(i, len(rank)))[:cap]
            chosen += picked_ids
        result.latency[Task.DELIBERATE_SELECT] = time.perf_counter() - start
        return sorted(dict.fromkeys(chosen), key=lambda i: rank.get(i, len(rank)))

    # ---------------------------------------------------------------- answer

    def _sessions(
        self, selected: list[int], keep: list[int], turns: list[Turn], *, newest_first: bool
    ) -> list[list[int]]:
        """The kept lines of each session that holds a selected line, in chronological order
        (newest first when asked), at most `sessions` of them: those with most selected lines."""
        picked = Counter(turns[i].session_id for i in selected)
        best = [sid for sid, _ in picked.most_common(self.sessions)]
        groups = [[i for i in sorted(keep) if turns[i].session_id == sid] for sid in best]
        groups.sort(key=lambda g: g[0], reverse=newest_first)
        return [g for g in groups if g]

    async def _read_by_session(
        self, question: str, groups: list[list[int]], turns: list[Turn], result: Deliberation,
        current: bool,
    ) -> None:
        """Read each session's lines on their own. A 0.5B reader given every session at once
        answers from the first line that fits: a stale "I live in Lisbon" for "where does she
        live now?", one item of a list spread over sessions. So for a question about now the
        newest session that answers wins; for a list, every session's items are joined."""
        start = time.perf_counter()
        answers: list[tuple[list[int], str]] = []
        read: list[list[int]] = []
        logprobs = None
        for group in groups:
            lines = [evidence_line(turns[i]) for i in group]
            answered = await answer_from(self.llm, question, lines, task=self.answer_task, label=self.label)
            result.add_usage(self.answer_task, answered.completion.usage)
            read.append(group)
            if looks_like_refusal(answered.text):
                continue
            if current:
                support, _ = supported_by(answered.text, [turns[i] for i in group])
                if support is not None and support < SUPPORTED:
                    # an answer its session's lines do not hold is the reader's guess, not what
                    # that session says ("New York" read from lines about a running club)
                    result.notes.append(f"{human_day(turns[group[0]].timestamp)}: {answered.text!r} "
                                        f"is not in that session's lines ({support:.0%}): read on")
                    continue
            answers.append((group, answered.text))
            if current:
                logprobs = answered.completion.logprobs
                break
        result.latency[self.answer_task] = time.perf_counter() - start
        days = [human_day(turns[g[0]].timestamp) for g, _ in answers]
        if not answers:
            result.text = NO_ANSWER
            result.notes.append(f"{len(groups)} sessions read one by one: none answers")
        elif current:
            result.text = answers[0][1]
            result.notes.append(
                f"{len(read)} session(s) read one by one, newest first: the newest that "
                f"answers ({days[0]}) says {result.text!r}"
            )
            await self._shorten(question, result)
        else:
            # an item stands only where its session's lines hold it: asked for "hobbies" over a
            # session that has one, a 0.5B reader adds two it made up; and an item that only
            # restates the question ("hobbies") is not one
            items: list[str] = []
            for group, text in answers:
                for item, held in grounded_items(text, question, (turns[i].text for i in group)):
                    if held and all(agreement(item, y) < 0.5 for y in items):
                        items.append(item)
            result.text = ", ".join(items) or answers[0][1]
            result.notes.append(
                f"{len(groups)} sessions read one by one and their items joined: "
                + "; ".join(f"{d}: {t!r}" for d, (_, t) in zip(days, answers, strict=True))
            )
        shown_ids = [i for g, _ in answers for i in g] if answers else [i for g in read for i in g]
        result.facts = [self._fact(turns[i]) for i in shown_ids]
        result.turn_ids = [turns[i].id for g in read for i in g]
        result.logprobs = logprobs

    @staticmethod
    def _fact(turn: Turn) -> Fact:
        return Fact(
            text=evidence_line(turn),
            score=10,
            turn_ids=[turn.id],
            timestamp=human_day(turn.timestamp),
            speaker=turn.speaker or turn.role,
        )

    async def _read(
        self, question: str, keep: Sequence[int], turns: list[Turn], result: Deliberation,
        newest_first: bool = False,
    ) -> None:
        """Answer from the kept raw lines in the order given (not `Strategy._answer`, which
        ranks extracted facts by score)."""
        lines = [evidence_line(turns[i]) for i in keep]
        label = f"{self.label}, newest first" if newest_first else self.label
        answered = await answer_from(self.llm, question, lines, task=self.answer_task, label=label)
        result.facts = [self._fact(turns[i]) for i in keep]
        result.turn_ids = [turns[i].id for i in keep]
        result.text, dating = repair_date(question, answered.text, [turns[i] for i in keep])
        if dating is not None:
            result.notes.append(
                f"{answered.text} is the day a line was said; it dates the event {result.text}"
            )
            # the line that dates the answer is evidence for it
            result.support_turn_ids = list(dict.fromkeys([*result.support_turn_ids, dating.id]))
        result.logprobs = answered.completion.logprobs
        result.add_usage(self.answer_task, answered.completion.usage)
        result.latency[self.answer_task] = answered.seconds
        await self._shorten(question, result)

    async def _shorten(self, question: str, result: Deliberation) -> None:
        if looks_like_refusal(result.text):
            return
        start = time.perf_counter()
        short, completion = await shorten(self.llm, question, result.text, task=Task.DELIBERATE_SHORTEN)
        if completion is None:
            return
        result.add_usage(Task.DELIBERATE_SHORTEN, completion.usage)
        result.latency[Task.DELIBERATE_SHORTEN] = time.perf_counter() - start
        if short != result.text:
            result.notes.append(f"{result.text!r} cut to the words that answer: {short!r}")
            result.text = short
