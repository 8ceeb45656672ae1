"""The `evidence` deliberation strategy: raw search, neighbours, listwise selection by line
number, the dated answer context; selection parsing; faults; choosing the strategy."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from dualmem import DualMemory
from dualmem.answering.deliberate import EvidenceFirst
from dualmem.answering.deliberate.evidence import parse_selection, repair_date
from dualmem.errors import LLMError
from dualmem.explain import explain
from dualmem.llm.base import ChatRequest
from dualmem.testing import ScriptedLLM, ScriptedReply
from dualmem.types import Turn

QUESTION = "Where did Ines take Maya sailing?"
DAY = datetime(2025, 6, 2, 9, tzinfo=UTC)
FILLER = [
    "The weather is lovely today.", "Work was busy with the billing migration.",
    "Biscuit barked at a seagull.", "I bought a new lamp for the flat.", "Lunch was soup again.",
]


def conversation(sessions: int = 3, per_session: int = 6) -> list[Turn]:
    """Sessions of filler; the sailing line is the 3rd turn of the 2nd session and its reply
    (which alone names the place) the 4th."""
    turns = []
    for s in range(sessions):
        for i in range(per_session):
            text = FILLER[(s + i) % len(FILLER)]
            if (s, i) == (1, 2):
                text = "Ines took me sailing yesterday!"
            if (s, i) == (1, 3):
                text = "On the Douro, near the old bridge."
            turns.append(Turn(id=f"s{s}t{i}", speaker="Maya" if i % 2 == 0 else "Assistant", text=text,
                              timestamp=DAY + timedelta(days=7 * s, minutes=i), session_id=f"s{s}"))
    return turns


def numbered(request: ChatRequest) -> dict[int, str]:
    """The numbered lines of a selection prompt."""
    content = request.messages[-1]["content"]
    return {int(m[1]): m[2] for m in re.finditer(r"^(\d+)\. (.*)$", content, re.M)}


def picking(*needles: str) -> Callable[[ChatRequest], str]:
    """A selector that picks the lines containing any needle."""
    def reply(request: ChatRequest) -> str:
        lines = numbered(request)
        return json.dumps({"lines": [n for n, t in lines.items() if any(x in t for x in needles)]})

    return reply


def answer_context(llm: ScriptedLLM, call: ChatRequest | None = None) -> list[str]:
    """The lines of an answer prompt (the only one, unless `call` is given)."""
    if call is None:
        (call,) = llm.calls_for("deliberate.answer")
    body = call.messages[-1]["content"].split("<data>\n")[1].split("\n</data>")[0]
    return body.splitlines()


# ---------------------------------------------------------------- the strategy


async def test_answer_is_read_from_the_selected_dated_lines_in_chronological_order() -> None:
    llm = ScriptedLLM(by_task={
        "deliberate.select": picking("sailing", "Douro"), "deliberate.answer": ["the Douro"]
    })
    result = await EvidenceFirst(llm, select="model", keep_top=0).run(QUESTION, conversation(), [])
    assert result.text == "the Douro" and result.tier == "evidence"
    # only the selected lines, oldest first, with the session date and "yesterday" resolved
    assert answer_context(llm) == [
        "[9 June 2025] Maya: Ines took me sailing yesterday (8 June 2025)!",
        "[9 June 2025] Assistant: On the Douro, near the old bridge.",
    ]
    assert result.turn_ids == ["s1t2", "s1t3"] and result.support_turn_ids == ["s1t2", "s1t3"]
    assert [f.turn_ids for f in result.facts] == [["s1t2"], ["s1t3"]]


async def test_a_sentence_answer_is_cut_to_the_words_that_answer() -> None:
    llm = ScriptedLLM(by_task={
        "deliberate.select": picking("sailing", "Douro"),
        "deliberate.answer": ["Ines took Maya sailing on the Douro."],
        "deliberate.shorten": ["the Douro."],
    })
    result = await EvidenceFirst(llm, select="model", keep_top=0).run(QUESTION, conversation(), [])
    assert result.text == "the Douro"
    (call,) = llm.calls_for("deliberate.shorten")
    said = "Ines took Maya sailing on the Douro."
    assert call.messages[-1]["content"] == f"Question: {QUESTION}\nAnswer: {said}"
    assert "'Ines took Maya sailing on the Douro.' cut to the words that answer: 'the Douro'" in result.notes
    assert result.usage["deliberate.shorten"].calls == 1


async def test_selecting_by_rank_reads_the_best_search_hits_without_a_selection_call() -> None:
    llm = ScriptedLLM(by_task={"deliberate.answer": ["the Douro"]})
    strategy = EvidenceFirst(llm, select="rank", rank_lines=1, keep_top=0)
    result = await strategy.run(QUESTION, conversation(), [])
    assert result.text == "the Douro" and llm.calls_for("deliberate.select") == []
    # the best hit of the question and its names, dated; its unranked neighbours are not read
    assert answer_context(llm) == ["[9 June 2025] Maya: Ines took me sailing yesterday (8 June 2025)!"]
    assert result.support_turn_ids == ["s1t2"]


async def test_the_model_selects_under_a_schema_that_closes_its_list() -> None:
    llm = ScriptedLLM(by_task={"deliberate.select": picking("sailing"), "deliberate.answer": ["the Douro"]})
    await EvidenceFirst(llm, select="model").run(QUESTION, conversation(), [])
    (call,) = llm.calls_for("deliberate.select")
    assert call.json_mode and call.json_schema["properties"]["lines"]["maxItems"] == 8


@pytest.mark.parametrize("reply", ["the Tagus", "NONE", ""])
async def test_a_cut_that_adds_or_changes_a_word_is_refused(reply: str) -> None:
    llm = ScriptedLLM(by_task={
        "deliberate.select": picking("sailing", "Douro"),
        "deliberate.answer": ["Ines took Maya sailing on the Douro"],
        "deliberate.shorten": [reply],
    })
    result = await EvidenceFirst(llm, select="model", keep_top=0).run(QUESTION, conversation(), [])
    assert result.text == "Ines took Maya sailing on the Douro"
    assert len(llm.calls_for("deliberate.shorten")) == 1 and not any("cut to" in n for n in result.notes)


@pytest.mark.parametrize("answer", ["the Douro", "NONE"])
async def test_a_short_answer_or_a_refusal_is_not_cut(answer: str) -> None:
    llm = ScriptedLLM(by_task={"deliberate.select": picking("sailing", "Douro"),
                               "deliberate.answer": [answer]})
    result = await EvidenceFirst(llm, select="model", keep_top=0).run(QUESTION, conversation(), [])
    assert result.text == answer and llm.calls_for("deliberate.shorten") == []


async def test_session_neighbours_widen_the_hits_within_their_session_only() -> None:
    # the reply names the place but shares no word with the question: only widening finds it
    llm = ScriptedLLM(by_task={"deliberate.select": picking("Douro"), "deliberate.answer": ["the Douro"]})
    strategy = EvidenceFirst(llm, select="model", pool=1, widen=1, keep_top=0)
    await strategy.run(QUESTION, conversation(), [])
    (call,) = llm.calls_for("deliberate.select")
    shown = list(numbered(call).values())
    assert shown == [
        "[9 June 2025] Assistant: Biscuit barked at a seagull.",
        "[9 June 2025] Maya: Ines took me sailing yesterday (8 June 2025)!",
        "[9 June 2025] Assistant: On the Douro, near the old bridge.",
    ]


async def test_raw_turns_are_searched_even_when_the_index_finds_nothing() -> None:
    # an extracted index may have lost the detail: the raw history is searched lexically too
    async def empty_index(query: str, k: int) -> list[str]:
        return []

    llm = ScriptedLLM(by_task={"deliberate.select": picking("sailing"), "deliberate.answer": ["sailing"]})
    strategy = EvidenceFirst(llm, select="model", keep_top=0, search=empty_index)
    result = await strategy.run(QUESTION, conversation(), [])
    assert "s1t2" in result.turn_ids


async def test_the_index_search_ranks_turns_the_words_miss() -> None:
    async def index(query: str, k: int) -> list[str]:
        return ["s2t5"]  # a dense match sharing no word with the question

    llm = ScriptedLLM(by_task={"deliberate.select": ['{"lines": []}'] * 3, "deliberate.answer": ["NONE"]})
    strategy = EvidenceFirst(llm, select="model", keep_top=1, search=index)
    result = await strategy.run("unrelated words xyzzy", conversation(), [])
    assert result.turn_ids == ["s2t5"]  # the best-ranked hit is kept as insurance


async def test_the_index_order_comes_before_the_lexical_hits() -> None:
    # the index's hybrid ranking beats a plain BM25 over the raw turns: the lines it returns
    # are read first, and a word match it missed only comes after them
    async def index(query: str, k: int) -> list[str]:
        return ["s2t5", "s0t1"]

    turns = conversation()
    for lines, read in ((2, ["s0t1", "s2t5"]), (3, ["s0t1", "s1t2", "s2t5"])):
        llm = ScriptedLLM(by_task={"deliberate.answer": ["x"]})
        strategy = EvidenceFirst(llm, rank_lines=lines, keep_top=0, search=index)
        result = await strategy.run(QUESTION, turns, [])
        assert result.turn_ids == read  # read in the order said


def everything(turns: list[Turn], best: str | None = None):
    """An index search that ranks every turn (as a dense search does), `best` first."""
    async def search(query: str, k: int) -> list[str]:
        return sorted((t.id for t in turns), key=lambda i: i != best)

    return search


async def test_selection_runs_in_chunks_numbered_from_one_and_maps_back_to_turns() -> None:
    llm = ScriptedLLM(by_task={"deliberate.select": picking("sailing", "Douro"), "deliberate.answer": ["x"]})
    turns = conversation(sessions=5)
    strategy = EvidenceFirst(llm, select="model", pool=30, chunk_lines=4, keep_top=0,
                             search=everything(turns))
    result = await strategy.run(QUESTION, turns, [])
    calls = llm.calls_for("deliberate.select")
    assert len(calls) >= 2 and all(min(numbered(c)) == 1 and len(numbered(c)) <= 4 for c in calls)
    assert result.turn_ids == ["s1t2", "s1t3"]


async def test_a_selector_that_picks_everything_is_capped_to_the_best_ranked() -> None:
    llm = ScriptedLLM(by_task={"deliberate.select": lambda r: json.dumps({"lines": list(numbered(r))}),
                               "deliberate.answer": ["x"]})
    turns = conversation()
    strategy = EvidenceFirst(llm, select="model", pool=10, widen=0, chunk_lines=10, keep_top=0,
                             search=everything(turns, best="s1t2"))
    result = await strategy.run(QUESTION, turns, [])
    assert len(result.support_turn_ids) == 5  # half of the chunk
    assert result.support_turn_ids[0] == "s1t2"  # the best search hit comes first


async def test_an_unreadable_selection_keeps_the_chunk_by_search_rank() -> None:
    llm = ScriptedLLM(by_task={"deliberate.select": ["I think the answer is the river."],
                               "deliberate.answer": ["x"]})
    result = await EvidenceFirst(llm, select="model", keep_top=2).run(QUESTION, conversation(), [])
    assert "a selection reply was unreadable: its lines kept by search rank" in result.notes
    assert result.turn_ids and "s1t2" in result.turn_ids
    assert not result.errors  # recoverable: not a failed deliberation


# ---------------------------------------------------------------- selection parsing


@pytest.mark.parametrize(
    ("reply", "lines"),
    [
        ('{"lines": [2, 5]}', [2, 5]),
        ('```json\n{"lines": [5, 2, 5]}\n```', [5, 2]),  # fenced, duplicate dropped, order kept
        ('{"lines": ["3", 4.0, "x"]}', [3, 4]),
        ('{"lines": 4}', [4]),
        ("[1, 3]", [1, 3]),
        ("Lines 2 and 7 mention the trip.", [2, 7]),
        ('{"lines": [0, 3, 99]}', [3]),  # out of range
        ('{"lines": []}', []),  # a valid "none of these"
        ('{"lines": "none"}', []),
        ("I cannot tell.", None),  # unreadable
        ("", None),
    ],
)
def test_selection_replies_are_read_leniently(reply: str, lines: list[int] | None) -> None:
    assert parse_selection(reply, 8) == lines


# ---------------------------------------------------------------- through DualMemory


@pytest.fixture
def memory_with(tmp_path) -> Callable[..., DualMemory]:
    def make(llm: ScriptedLLM, **kwargs) -> DualMemory:
        # these tests script the selector: the model selects lines (the default reads by rank)
        kwargs = {"extract": False, "deliberation": {"select_lines": "model"}, **kwargs}
        memory = DualMemory(path=tmp_path, llm=llm, **kwargs)
        for s in range(3):
            turns = [t for t in conversation() if t.session_id == f"s{s}"]
            memory.add([{"id": t.id, "speaker": t.speaker, "content": t.text,
                         "timestamp": t.timestamp.isoformat()} for t in turns],
                       user_id="maya", session_id=f"s{s}", extract=False)
        return memory

    return make


def confident(text: str) -> ScriptedReply:
    return ScriptedReply(text, confidence=0.99)


def test_by_default_system_2_reads_the_best_ranked_lines_without_a_selection_call(memory_with) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident("NONE")], "deliberate.answer": ["the Douro"]})
    memory = memory_with(llm, deliberation={})  # the defaults
    a = memory.answer(QUESTION, user_id="maya", mode="full")
    assert llm.calls_for("deliberate.select") == []
    assert a.text == "the Douro" and a.path == "deliberate"
    (call,) = llm.calls_for("deliberate.answer")
    assert "On the Douro, near the old bridge." in call.messages[-1]["content"]


def test_evidence_is_the_default_and_scan_can_be_chosen_per_call(memory_with) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident("NONE")] * 2, "deliberate.select": picking("Douro"),
                               "deliberate.answer": ["the Douro"], "neighbours.answer": ["NONE"],
                               "deliberate.extract": ['{"facts": []}']})
    memory = memory_with(llm)
    a = memory.answer(QUESTION, user_id="maya", mode="full")
    assert a.strategy == "evidence" and a.text == "the Douro" and a.tier == "evidence"
    assert a.evidence.turn_ids == ["s1t3"] or "s1t3" in a.evidence.turn_ids
    b = memory.answer(QUESTION, user_id="maya", mode="full", strategy="scan")
    assert b.strategy == "scan" and llm.calls_for("deliberate.extract")


def test_an_answer_read_from_a_line_the_selector_missed_is_supported(memory_with) -> None:
    # the selector picks only the dog's lines; the answer comes from the best search hit, which
    # is read as insurance: a line it read holds the answer, so it is grounded and wins
    llm = ScriptedLLM(by_task={"answer": [confident("the lamp")], "deliberate.select": picking("Biscuit"),
                               "deliberate.answer": ["sailing yesterday"]})
    a = memory_with(llm).answer(QUESTION, user_id="maya", mode="full")
    assert a.text == "sailing yesterday" and a.tier == "evidence"
    fast, evidence = a.candidates
    assert evidence.support == 1.0 and evidence.won and not fast.won
    assert "s1t2" in a.evidence.turn_ids


def test_the_strategy_is_a_memory_setting(memory_with) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident("NONE")], "deliberate.extract": ['{"facts": []}'],
                               "deliberate.answer": ["NONE"]})
    a = memory_with(llm, deliberation={"strategy": "scan"}).answer(QUESTION, user_id="maya", mode="full")
    assert a.strategy == "scan" and llm.calls_for("deliberate.select") == []


def test_an_unknown_strategy_is_refused(memory_with) -> None:
    from dualmem.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="strategy must be one of evidence, scan"):
        memory_with(ScriptedLLM()).answer(QUESTION, user_id="maya", strategy="think-hard")


def test_the_trace_says_what_system_2_changed_and_why(memory_with) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident("the lamp")],
                               "deliberate.select": picking("sailing", "Douro"),
                               "deliberate.answer": [confident("the Douro")]})
    a = memory_with(llm).answer(QUESTION, user_id="maya", mode="full")
    assert a.text == "the Douro" and a.path == "deliberate" and a.tier == "evidence"
    assert [(c.source, c.text, c.won) for c in a.candidates] == [("fast", "the lamp", False),
                                                                 ("evidence", "the Douro", True)]
    assert a.arbitration == "evidence's answer is supported 100% against 0% for fast's"
    assert a.reason.endswith(f"{a.arbitration}: evidence answer kept")
    assert a.logprobs and a.logprobs[0].token == "the"  # the winner's logprobs
    assert set(a.usage) >= {"answer", "deliberate.select", "deliberate.answer"}


def test_system_2s_none_wins_when_the_history_never_speaks_of_the_question(memory_with) -> None:
    # the fast path answers from lines about something else (no line names a film)
    llm = ScriptedLLM(by_task={"answer": [confident("Biscuit")], "deliberate.select": picking("Biscuit"),
                               "deliberate.answer": [confident("NONE")]})
    a = memory_with(llm).answer("What is Maya's favourite film?", user_id="maya", mode="full")
    assert a.text == "NONE" and a.path == "deliberate"
    assert [(c.source, c.won) for c in a.candidates] == [("fast", False), ("evidence", True)]
    assert "fast's answer is about something else" in a.arbitration
    assert "changed 'Biscuit' -> 'NONE'" in explain(a)


def test_a_concrete_answer_stands_when_no_line_repeats_the_questions_words(memory_with) -> None:
    # no line says "dog" or "name" ("Biscuit barked at a seagull"): words alone cannot tell
    # that the history never speaks of what is asked, so nothing overrules two concrete answers
    llm = ScriptedLLM(by_task={"answer": [confident("Biscuit")], "deliberate.select": picking("Biscuit"),
                               "deliberate.answer": [confident("Biscuit")]})
    a = memory_with(llm).answer("What is the name of Maya's dog?", user_id="maya", mode="full")
    assert a.text == "Biscuit" and [c.source for c in a.candidates] == ["fast", "evidence"]


@pytest.mark.parametrize("fail_task", ["deliberate.select", "deliberate.answer", "deliberate.shorten"])
def test_a_model_failure_in_any_step_returns_the_fast_answer_degraded(memory_with, fail_task) -> None:
    script = {"answer": [confident("the lamp")], "deliberate.select": picking("sailing"),
              "deliberate.answer": ["Ines took Maya sailing on the Douro"],
              "deliberate.shorten": ["the Douro"]}
    script[fail_task] = [LLMError("model server went away")]
    llm = ScriptedLLM(by_task=script)
    a = memory_with(llm).answer(QUESTION, user_id="maya", mode="full")
    assert llm.calls_for(fail_task)
    assert a.text == "the lamp" and a.path == "fast" and a.degraded is True and a.strategy == "evidence"
    assert a.reason == (
        "full mode: always deliberate; deliberation failed (model server went away), fast answer kept"
    )
    assert a.candidates == []
    assert a.evidence.turn_ids == sorted(t for m in a.memories for t in m.source_turn_ids)


def test_deliberation_leaves_the_raw_history_untouched(memory_with) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident("NONE")], "deliberate.select": picking("sailing"),
                               "deliberate.answer": ["sailing"]})
    memory = memory_with(llm)
    before = memory.history(user_id="maya")
    memory.answer(QUESTION, user_id="maya", mode="full")
    assert memory.history(user_id="maya") == before


def test_an_extracted_index_that_lost_the_detail_still_deliberates_over_raw_turns(tmp_path) -> None:
    llm = ScriptedLLM(by_task={"extract": lambda r: '{"facts": []}', "answer": [confident("NONE")],
                               "deliberate.select": picking("Douro"), "deliberate.answer": ["the Douro"]})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    turns = conversation()
    memory.add([{"id": t.id, "speaker": t.speaker, "content": t.text, "timestamp": t.timestamp.isoformat()}
                for t in turns], user_id="maya", session_id="s1")
    # extraction found no fact; System 2 reads the raw history whatever the index holds
    a = memory.answer(QUESTION, user_id="maya", mode="full")
    assert a.text == "the Douro" and "s1t3" in a.evidence.turn_ids


# ---------------------------------------------------------------- dates the reader copies wrongly


SAID = datetime(2023, 5, 8, 13, tzinfo=UTC)
GROUP = Turn(id="g", speaker="Ines", text="I went to a choir rehearsal yesterday, so moving.",
             timestamp=SAID)
PAINT = Turn(id="p", speaker="Tomas", text="I sketched a river bridge last week!", timestamp=SAID)


@pytest.mark.parametrize(
    ("question", "answer", "fixed", "line"),
    [
        ("When did Ines go to the choir rehearsal?", "8 May 2023", "7 May 2023", "g"),
        ("When did Tomas sketch a bridge?", "On 8 May 2023.", "the week before 8 May 2023", "p"),
        # not a date question, not the day a line was said, not a bare date, no shared word
        ("What did Ines go to?", "8 May 2023", "8 May 2023", None),
        ("When did Ines go to the choir rehearsal?", "9 May 2023", "9 May 2023", None),
        ("When did Ines go to the choir rehearsal?", "8 May 2023 or so", "8 May 2023 or so", None),
        ("When did Ana open her shop?", "8 May 2023", "8 May 2023", None),
    ],
)
def test_a_copied_session_date_becomes_the_event_date_the_line_gives(question, answer, fixed, line) -> None:
    text, dating = repair_date(question, answer, [GROUP, PAINT])
    assert text == fixed and (dating.id if dating else None) == line


async def test_the_line_that_dates_the_answer_supports_it() -> None:
    turns = [GROUP, PAINT, *conversation()]  # a few lines more, so that BM25's idf is not 0
    llm = ScriptedLLM(by_task={"deliberate.select": ['{"lines": []}'], "deliberate.answer": ["8 May 2023"]})
    strategy = EvidenceFirst(llm, select="model", keep_top=2)
    result = await strategy.run("When did Ines go to the choir rehearsal?", turns, [])
    assert result.text == "7 May 2023" and result.support_turn_ids == ["g"]
    assert "8 May 2023 is the day a line was said; it dates the event 7 May 2023" in result.notes


async def test_a_question_about_now_reads_the_newest_line_first() -> None:
    turns = [
        Turn(id="a", speaker="Maya", text="I still live in Lisbon for now.", timestamp=DAY),
        *conversation()[1:-1],
        Turn(id="b", speaker="Maya", text="I moved to Porto last week, I live by the river.",
             timestamp=DAY + timedelta(days=90)),
    ]
    llm = ScriptedLLM(by_task={"deliberate.select": picking("live"),
                               "deliberate.answer": ["Porto", "Lisbon"]})
    await EvidenceFirst(llm, select="model", keep_top=0).run("Where does Maya live now?", turns, [])
    await EvidenceFirst(llm, select="model", keep_top=0).run("Where did Maya live in spring?", turns, [])
    now, then = llm.calls_for("deliberate.answer")
    assert "Conversation excerpts, newest first:" in now.messages[-1]["content"]
    assert answer_context(llm, now)[0].startswith("[31 August 2025] Maya: I moved to Porto")
    assert answer_context(llm, then)[0].startswith("[2 June 2025] Maya: I still live in Lisbon")


def sessions_of(*texts: str) -> list[Turn]:
    """One session per text, 30 days apart, each padded with two filler turns."""
    turns = []
    for s, text in enumerate(texts):
        for i, line in enumerate([FILLER[s % len(FILLER)], text, FILLER[(s + 2) % len(FILLER)]]):
            turns.append(Turn(id=f"s{s}t{i}", speaker="Maya", text=line, session_id=f"s{s}",
                              timestamp=DAY + timedelta(days=30 * s, minutes=i)))
    return turns


async def test_a_question_about_now_is_answered_by_the_newest_session_that_answers() -> None:
    turns = sessions_of("I still live in Lisbon for now.", "Work was busy, I live at the office.",
                        "I moved to Porto, I live by the river now.")
    # the newest session answers: one reading, older sessions are never read
    llm = ScriptedLLM(by_task={"deliberate.select": picking("Lisbon", "Porto"),
                               "deliberate.answer": ["Porto"]})
    result = await EvidenceFirst(llm, select="model", keep_top=0).run("Where does Maya live now?", turns, [])
    (call,) = llm.calls_for("deliberate.answer")
    assert result.text == "Porto" and answer_context(llm, call) == ["[1 August 2025] Maya: I moved to Porto, "
                                                                    "I live by the river now."]
    assert "the newest that answers (1 August 2025) says 'Porto'" in result.notes[-1]
    assert result.turn_ids == ["s2t1"] and [f.turn_ids for f in result.facts] == [["s2t1"]]
    # the newest session has no answer: the next newest does
    llm = ScriptedLLM(by_task={"deliberate.select": picking("Lisbon", "Porto"),
                               "deliberate.answer": ["NONE", "Lisbon"]})
    result = await EvidenceFirst(llm, select="model", keep_top=0).run("Where does Maya live now?", turns, [])
    first, second = llm.calls_for("deliberate.answer")
    assert result.text == "Lisbon" and "Porto" in answer_context(llm, first)[0]
    assert "Lisbon" in answer_context(llm, second)[0]


async def test_a_question_about_now_reads_on_past_a_session_whose_lines_do_not_hold_its_answer() -> None:
    turns = sessions_of("I moved to Porto, I live by the river now.", "I joined a running club by the Douro.")
    # the newest session is about running; the reader still names a city its lines never say
    llm = ScriptedLLM(by_task={"deliberate.answer": ["New York", "Porto"]})
    strategy = EvidenceFirst(llm, select="rank", keep_top=0)
    result = await strategy.run("Which city does Maya live in now?", turns, [])
    newest, older = llm.calls_for("deliberate.answer")
    assert any("running club" in line for line in answer_context(llm, newest))
    assert any("Porto" in line for line in answer_context(llm, older))
    assert result.text == "Porto"
    assert any("'New York' is not in that session's lines" in note for note in result.notes)


async def test_a_list_question_joins_the_items_each_session_holds() -> None:
    turns = sessions_of("I signed up for a pottery class.", "Lunch was soup again, I love soup.",
                        "I joined a running club by the Douro.")
    llm = ScriptedLLM(by_task={
        "deliberate.select": picking("pottery", "running"),
        # oldest session first; "baking" is in no line, "pottery" is said twice
        "deliberate.answer": ["pottery, baking", "running club and pottery"],
    })
    strategy = EvidenceFirst(llm, select="model", keep_top=0)
    result = await strategy.run("What hobbies has Maya taken up?", turns, [])
    first, second = llm.calls_for("deliberate.answer")
    assert "pottery" in answer_context(llm, first)[0] and "running" in answer_context(llm, second)[0]
    assert result.text == "pottery, running club"
    assert "items joined" in result.notes[-1] and result.logprobs is None
    # a question about one thing reads every selected line at once, as before
    llm = ScriptedLLM(by_task={"deliberate.select": picking("pottery", "running"),
                               "deliberate.answer": ["x"]})
    await EvidenceFirst(llm, select="model", keep_top=0).run("Which class did Maya sign up for?", turns, [])
    (call,) = llm.calls_for("deliberate.answer")
    assert len(answer_context(llm, call)) == 2
