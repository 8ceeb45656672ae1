"""The LoCoMo / RealTalk runner: ingest, ask, score, write JSONL + summary JSON + markdown.

Each conversation goes into its own fresh `DualMemory` (user_id = the conversation id), in
session order, with turn id = `dia_id`. Every answer is one `Record` (a JSON line in
`<out>/questions.jsonl`), written as soon as it is scored, so an interrupted run resumes where
it stopped; the LLM sits behind a SQLite response cache, so a rerun is cheap and identical.

Systems (`record.System`): `fast`, `gated`, `full` (DualMemory's modes), the baselines `rag`
(top-k raw turns, no extraction, one call) and `fullctx` (the whole history in one call, when
it fits the model's context), `retrieval` (no LLM: evidence recall of the search alone), and
the peer `llamaindex` (LlamaIndex's own `Memory`, same model, embedder and reader prompt:
`peers.py`), with `llamaindex:facts` and `retrieval:llamaindex`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from .._sync import run_sync
from ..answering.gate.learned import features
from ..answering.gate.signals import Passage, unasked
from ..answering.reader import ANSWER_MAX_TOKENS, answer_from
from ..config import Config
from ..embed import make_embedding
from ..errors import ConfigError, DualMemError, InvalidInputError, LLMError
from ..llm import make_llm
from ..llm.base import BaseLLM
from ..memory import DualMemory
from ..prompts import answer_messages
from ..tasks import Task
from ..tokens import count_messages, count_tokens
from ..types import Answer
from .cache import CachedLLM, count_hits
from .data import Conversation, Dataset, Question, load_dataset
from .probe import identifier_probe
from .record import KINDS, PEER, POLICIES, STRATEGIES, Record, System, Weighed, read_records
from .report import RECALL_KS, summarise, write_report
from .score import is_refusal, is_refusal_or_none, locomo_f1, mem0_f1, ranked_turns

__all__ = [
    "GATE_SYSTEMS", "MODES", "POLICY_SYSTEMS", "STRATEGY_SYSTEMS", "SYSTEMS", "register", "run_benchmark",
]

SYSTEMS = tuple(k for k in KINDS if k != "gate")
POLICY_SYSTEMS = tuple(f"gated:{p}" for p in POLICIES)
GATE_SYSTEMS = tuple(f"gate:{p}" for p in POLICIES)
STRATEGY_SYSTEMS = tuple(f"full:{s}" for s in STRATEGIES)
# gated needs the fast answer's F1 for the gate's AUROC: fast runs first, and the gated run's
# identical fast-answer call is then a cache hit; full runs before the policies so that their
# escalations to the full scan are cache hits too
MODES = {
    "fast": ("fast",),
    "gated": ("fast", "gated"),
    "full": ("full",),
    "policies": ("fast", "full", *POLICY_SYSTEMS),
    "gates": ("fast", *GATE_SYSTEMS),
    "strategies": ("fast", *STRATEGY_SYSTEMS),
    "all": ("fast", "full", *POLICY_SYSTEMS, "rag", "fullctx", PEER),
    "baselines": ("rag", "fullctx", PEER),
}
EXTRACT_BATCH = 2  # turns per extraction call, as Mem0 adds a message pair at a time


def expand_modes(mode: str | Sequence[str]) -> list[str]:
    names = mode.split(",") if isinstance(mode, str) else list(mode)
    systems: list[str] = []
    for name in (n.strip() for n in names):
        for s in MODES.get(name, (name,)):
            try:
                System.parse(s)
            except InvalidInputError:
                raise InvalidInputError(
                    f"unknown mode {name!r}: use {', '.join(MODES)} or a system among "
                    f"{', '.join(SYSTEMS)}, gated:<policy>, gate:<policy>, full:<strategy>, "
                    f"{PEER}:facts, retrieval:{PEER}"
                ) from None
            if s not in systems:
                systems.append(s)
    return systems


def _select(
    conversations: list[Conversation],
    ids: Sequence[str] | None,
    categories: Sequence[int] | None,
    limit: int | None,
    offset: int = 0,
) -> list[tuple[Conversation, list[Question]]]:
    if ids:
        known = {c.id for c in conversations}
        missing = [i for i in ids if i not in known]
        if missing:
            raise InvalidInputError(f"unknown conversation(s) {missing}: the data has {sorted(known)}")
        conversations = [c for c in conversations if c.id in set(ids)]
    out = []
    for c in conversations:
        qs = [q for q in c.questions if not categories or q.category in categories]
        out.append((c, spread(qs, limit, offset)))
    return out


def spread(questions: list[Question], limit: int | None, offset: int = 0) -> list[Question]:
    """`limit` questions evenly spaced over the file order: the data sets group questions
    loosely by category, so the first N would miss whole categories. `offset` takes the
    question that many places after each one: a second sample, disjoint from the first while
    `offset` is smaller than the spacing, to check what was tuned on the first."""
    if not limit or limit >= len(questions):
        return questions
    picks = dict.fromkeys((i * len(questions) // limit + offset) % len(questions) for i in range(limit))
    return [questions[i] for i in picks]


# ---------------------------------------------------------------------------- ingestion


def ingest(conv: Conversation, memory: DualMemory, *, extract: bool, store: Path) -> dict[str, Any]:
    """Add the conversation session by session (once; later runs read `ingest.json`)."""
    marker = store / "ingest.json"
    if marker.exists():
        return json.loads(marker.read_text())
    memory.delete_all(user_id=conv.id)  # a half-finished earlier ingestion starts over
    stats: dict[str, Any] = {
        "conversation": conv.id,
        "extract": extract,
        "turns": 0,
        "errors": [],
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "calls": 0,
    }
    start = time.perf_counter()
    for session in conv.sessions:
        messages = session.messages()
        size = EXTRACT_BATCH if extract else len(messages)
        for i in range(0, len(messages), size):
            result = memory.add(
                messages[i : i + size], user_id=conv.id, session_id=session.id, extract=extract
            )
            stats["turns"] += len(result.turns)
            stats["prompt_tokens"] += result.usage.prompt_tokens
            stats["completion_tokens"] += result.usage.completion_tokens
            stats["calls"] += result.usage.calls
            if result.error:
                stats["errors"].append(result.error)
    stats["seconds"] = time.perf_counter() - start
    stats["memories"] = len(memory.get_all(user_id=conv.id))
    marker.write_text(json.dumps(stats, indent=2))
    return stats


# ---------------------------------------------------------------------------- asking


class FullContext:
    """Baseline: the whole rendered history in one answer call, if it fits the context."""

    def __init__(self, llm: BaseLLM, memory: DualMemory, conv: Conversation) -> None:
        self.llm = llm
        self.lines = [t.render() for t in memory.history(user_id=conv.id)]

    def misfit(self, question: str) -> str | None:
        need = count_messages(answer_messages(question, self.lines, "Conversation")) + ANSWER_MAX_TOKENS
        if need <= self.llm.context_tokens:
            return None
        history = count_tokens("\n".join(self.lines))
        context = self.llm.context_tokens
        return f"does not fit the model's context ({context} tokens): the history is ~{history} tokens"

    async def answer(self, question: str) -> Answer:
        result = await answer_from(
            self.llm, question, self.lines, task=Task.ANSWER_FULLCTX, label="Conversation"
        )
        return Answer(
            question=question,
            text=result.text,
            path="deliberate",
            mode="fullctx",
            reason="baseline: whole history in one call",
            usage={"answer": result.completion.usage},
            latency={"answer": result.seconds},
        )


def score_record(record: Record, q: Question) -> Record:
    prediction = record.prediction
    if prediction is None:
        return record
    if q.category == 5:
        scores = {"refusal": is_refusal(prediction), "refusal_or_none": is_refusal_or_none(prediction)}
    elif q.answer is not None:
        scores: dict[str, Any] = {
            "f1": locomo_f1(prediction, q.answer, q.category), "f1_mem0": mem0_f1(prediction, q.answer)
        }
        if record.candidates:  # what each answer the arbiter weighed would have scored
            scores["candidates"] = [
                c.model_copy(update={"f1": locomo_f1(c.text, q.answer, q.category)})
                for c in record.candidates
            ]
    else:
        return record
    return record.model_copy(update=scores)


def _answer_fields(answer: Answer) -> dict[str, Any]:
    """The `Record` fields an `Answer` fills in."""
    gate = answer.gate
    total = answer.total_usage
    return {
        "prediction": answer.text,
        "path": answer.path,
        "tier": answer.tier,
        "reason": answer.reason,
        "degraded": answer.degraded,
        "gate_score": gate.score if gate else None,
        "gate_passed": gate.passed if gate else None,
        "gate_signals": {sig.name: sig.score for sig in gate.signals} if gate else None,
        "gate_features": features(answer.question, gate.signals) if gate else None,
        "escalated": answer.path == "deliberate",
        "gate_escalate": gate.escalate if gate else None,
        "usage": answer.usage,
        "prompt_tokens": total.prompt_tokens,
        "completion_tokens": total.completion_tokens,
        "calls": total.calls,
        "latency": answer.latency,
        "retrieved": ranked_turns(answer.memories),
        "context": answer.evidence.turn_ids,
        "strategy": answer.strategy,
        "candidates": [Weighed(**c.model_dump(include={"source", "text", "support", "newest", "won"}))
                       for c in answer.candidates],
        "arbitration": answer.arbitration,
    }


class _Asker:
    """Answers one question with one system; never raises (errors are recorded)."""

    def __init__(
        self, memory: DualMemory, raw: DualMemory, fullctx: FullContext | None, k: int | None,
        policy: str | None, peer: Any = None,
    ) -> None:
        self.memory, self.raw, self.fullctx, self.k, self.policy = memory, raw, fullctx, k, policy
        self.peer = peer  # a `peers.LlamaIndexPeer` when a peer system runs

    async def ask(self, system: System, conv: Conversation, q: Question) -> Record:
        start = time.perf_counter()
        with count_hits() as hits:
            try:
                fields = await self._run(system, conv, q)
            except (DualMemError, LLMError) as e:
                fields = {"error": f"{type(e).__name__}: {e}"}
        record = Record(
            system=system.name,
            conversation=conv.id,
            q=q.index,
            category=q.category,
            category_name=q.category_name,
            question=q.question,
            gold=q.answer,
            evidence=q.evidence,
            seconds=time.perf_counter() - start,
            cache_hits=hits[0],
            **fields,
        )
        return score_record(record, q)

    async def _run(self, system: System, conv: Conversation, q: Question) -> dict[str, Any]:
        if system.peer:
            if system.kind == "retrieval":
                return {"retrieved": (await self.peer.aretrieve(q.question)).turn_ids}
            return await self.peer.aanswer(q.question, facts=system.facts)
        if system.kind == "retrieval":
            found = await self.memory.asearch(q.question, user_id=conv.id, k=self.k)
            return {
                "retrieved": ranked_turns(found),
                "retrieved_deep": await self._deep(self.memory, conv, q),
                "unasked": unasked(q.question, [Passage.of(m) for m in found]),
            }
        if system.kind == "fullctx":
            assert self.fullctx is not None
            misfit = self.fullctx.misfit(q.question)
            if misfit:
                return {"skipped": misfit}
            return _answer_fields(await self.fullctx.answer(q.question))
        memory = self.raw if system.kind == "rag" else self.memory
        answer = await memory.aanswer(q.question, user_id=conv.id, k=self.k, **self._options(system))
        fields = _answer_fields(answer)
        if system.searches and self.k < max(RECALL_KS):
            # R@30 and R@50 are reported whatever the number of memories the reader reads
            fields["retrieved_deep"] = await self._deep(memory, conv, q)
        return fields

    @staticmethod
    async def _deep(memory: DualMemory, conv: Conversation, q: Question) -> list[str]:
        """The turns of a search as deep as the deepest recall reported. R@k up to the run's
        top-k is measured on the fast path's own search; above it, on this one, whose top 30
        is a k=30 search's (the index's candidate depth is fixed up to 60)."""
        return ranked_turns(await memory.asearch(q.question, user_id=conv.id, k=max(RECALL_KS)))

    def _options(self, system: System) -> dict[str, Any]:
        """`DualMemory.answer` arguments that run `system`."""
        if system.kind == "rag":
            return {"mode": "fast"}
        policy = system.policy or (self.policy if system.kind == "gated" else None)
        options: dict[str, Any] = {"mode": "gated" if system.kind == "gate" else system.kind}
        if system.kind == "gate":
            options["deliberate"] = False
        if policy:
            options["policy"] = policy
        if system.strategy:
            options["strategy"] = system.strategy
        return options

    async def ask_all(
        self, conv: Conversation, pending: list[tuple[str, Question]], concurrency: int,
        on_record: Callable[[Record], None],
    ) -> None:
        """System by system (fast before gated, so the gated run's fast call is a cache hit),
        up to `concurrency` questions at a time within a system."""
        gate = asyncio.Semaphore(concurrency)

        async def one(system: System, q: Question) -> None:
            async with gate:
                on_record(await self.ask(system, conv, q))

        for name in dict.fromkeys(s for s, _ in pending):
            system = System.parse(name)
            await asyncio.gather(*(one(system, q) for s, q in pending if s == name))


# ---------------------------------------------------------------------------- the run


def _done(path: Path) -> dict[tuple[str, str, int], Record]:
    """Records already written (errors are retried on resume)."""
    return {r.key: r for r in read_records(path) if r.error is None}


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    # resuming into a directory made with another model or index would mix incomparable records
    path = out / "run.json"
    if path.exists():
        old = json.loads(path.read_text())
        keys = ("dataset", "model", "extract", "k", "policy")
        diff = {k: (old.get(k), settings.get(k)) for k in keys if old.get(k) != settings.get(k)}
        if diff:
            raise InvalidInputError(f"{out} holds a run with other settings {diff}: use another --out")
    path.write_text(json.dumps(settings, indent=2))


@dataclass
class _Run:
    """What every conversation of one benchmark run shares."""

    out: Path
    config: Config
    llm: BaseLLM | None
    systems: list[str]
    extract: bool
    k: int
    policy: str | None
    concurrency: int
    done: dict[tuple[str, str, int], Record]

    def memory(self, store: Path, extract: bool) -> DualMemory:
        config = self.config.model_copy(update={"data_dir": store, "extract": extract})
        return DualMemory(config, llm=self.llm)

    def peer(self, conv: Conversation, *, facts: bool) -> Any:
        """The conversation in LlamaIndex's `Memory`, with dualmem's embedder and model."""
        try:
            from .peers import LlamaIndexPeer
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] != "llama_index":
                raise
            raise ConfigError(
                f"the {PEER} peer needs llama-index-core, part of the bench extra: "
                "pip install 'dualmem[bench]'"
            ) from None
        c = self.config
        embed = make_embedding(c.embedder, c.embedding_model, c.base_url)
        return LlamaIndexPeer(conv, self.llm, embed, facts=facts, k=self.k)

    def conversation(
        self, conv: Conversation, questions: list[Question], write: Callable[[Record], None]
    ) -> dict[str, Any]:
        """Ingest one conversation (once) and ask its pending questions; returns its ingest stats."""
        store = self.out / "stores" / conv.id / ("extract" if self.extract else "raw")
        memory = self.memory(store, self.extract)
        stats = ingest(conv, memory, extract=self.extract, store=store)
        pending = [(s, q) for s in self.systems for q in questions if (s, conv.id, q.index) not in self.done]
        raw = memory
        if pending and self.extract and "rag" in self.systems:
            raw = self.memory(store.parent / "raw", False)
            ingest(conv, raw, extract=False, store=store.parent / "raw")
        peer = None
        peers = [p for p in map(System.parse, dict.fromkeys(s for s, _ in pending)) if p.peer]
        if peers:
            peer = self.peer(conv, facts=any(p.facts for p in peers))
            stats = {**stats, PEER: run_sync(peer.aingest())}
        if pending:
            fullctx = FullContext(self.llm, memory, conv) if "fullctx" in self.systems and self.llm else None
            asker = _Asker(memory, raw, fullctx, self.k, self.policy, peer)
            run_sync(asker.ask_all(conv, pending, self.concurrency, write))
        for m in {id(memory): memory, id(raw): raw}.values():
            m.close()
        return stats


def _model(config: Config, llm: BaseLLM | None, out: Path, cache: bool, needed: bool) -> BaseLLM | None:
    if not needed:
        return llm
    llm = llm or make_llm(config)
    return CachedLLM(llm, out / "cache.sqlite3") if cache else llm


def run_benchmark(
    dataset: Dataset,
    data: str | Path,
    out: str | Path,
    *,
    mode: str | Sequence[str] = "fast",
    extract: bool = False,
    conversations: Sequence[str] | None = None,
    categories: Sequence[int] | None = None,
    limit: int | None = None,
    offset: int = 0,
    k: int | None = None,
    policy: str | None = None,
    rank_lines: int | None = None,
    retrieval_only: bool = False,
    config: Config | None = None,
    llm: BaseLLM | None = None,
    cache: bool = True,
    concurrency: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the benchmark; returns the summary (also written to `<out>/summary.json`).

    `limit` caps the questions per conversation (after the category filter), `offset` shifts
    which ones (`spread`). `llm` defaults
    to the model `config` names (`Config.from_env()`: the local model unless configured).
    `concurrency` > 1 asks several questions at once (for API endpoints; a local model
    serialises its calls anyway). `rank_lines` sets how many lines System 2's `evidence`
    strategy reads (`DeliberationConfig.rank_lines`).
    """
    systems = ["retrieval"] if retrieval_only else expand_modes(mode)
    selection = _select(load_dataset(dataset, data), conversations, categories, limit, offset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = config or Config.from_env()
    if rank_lines is not None:
        config = config.updated(deliberation={**config.deliberation.model_dump(), "rank_lines": rank_lines})
    needed = extract or any(System.parse(s).kind != "retrieval" for s in systems)
    llm = _model(config, llm, out, cache, needed=needed)
    settings = {
        "dataset": dataset,
        "data": str(data),
        "systems": systems,
        "extract": extract,
        "model": llm.name if llm else None,
        "k": k or config.top_k,
        "policy": policy,
        "conversations": [c.id for c, _ in selection],
        "categories": list(categories or []),
        "limit": limit,
        **({"offset": offset} if offset else {}),  # absent when 0: older runs resume
        **({"rank_lines": rank_lines} if rank_lines is not None else {}),
        "embedder": config.embedder,
    }
    _check_settings(out, settings)
    jsonl = out / "questions.jsonl"
    run = _Run(out, config, llm, systems, extract, k or config.top_k, policy, concurrency, _done(jsonl))
    load_before = os.getloadavg()
    with jsonl.open("a") as sink:
        ingest_stats = _ask(run, selection, sink, progress)
    return _report(run, selection, settings, ingest_stats, load_before)


def _report(
    run: _Run, selection: list[tuple[Conversation, list[Question]]], settings: dict[str, Any],
    ingest_stats: dict[str, dict[str, Any]], load_before: tuple[float, float, float],
) -> dict[str, Any]:
    """Summarise the selected questions' records (this run's and earlier ones) and write the report."""
    wanted = {(s, c.id, q.index) for c, qs in selection for s in run.systems for q in qs}
    records = [r for key, r in run.done.items() if key in wanted]
    summary = summarise(
        records, systems=run.systems, ingest=ingest_stats, settings=settings,
        cache=run.llm if isinstance(run.llm, CachedLLM) else None,
    )
    if "retrieval" in run.systems:
        probe = run.memory(run.out / "stores" / "identifier-probe", False)
        summary["identifier_probe"] = identifier_probe(probe.index)
        probe.close()
    # latencies on a shared machine mean little without its load
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "load_average_at_start": load_before,
        "load_average_at_end": os.getloadavg(),
    }
    write_report(summary, records, run.out)
    return summary


def _ask(
    run: _Run, selection: list[tuple[Conversation, list[Question]]], sink: IO[str], progress: bool
) -> dict[str, dict[str, Any]]:
    """Every conversation in turn, each record appended to `sink` as soon as it is scored."""
    from tqdm import tqdm

    keys = [(s, c.id, q.index) for c, qs in selection for s in run.systems for q in qs]
    todo = sum(key not in run.done for key in keys)
    with tqdm(total=todo, disable=not progress, unit="q", dynamic_ncols=True) as bar:

        def write(record: Record) -> None:
            sink.write(record.line())
            sink.flush()
            run.done[record.key] = record
            bar.set_description(f"{record.conversation} {record.system}")
            bar.update()

        return {conv.id: run.conversation(conv, questions, write) for conv, questions in selection}


# ---------------------------------------------------------------------------- CLI


def _ints(text: str | None) -> list[int] | None:
    try:
        return [int(x) for x in text.split(",") if x.strip()] if text else None
    except ValueError as e:
        raise InvalidInputError(f"--categories takes comma-separated integers, got {text!r}") from e


def _qa_command(dataset: Dataset) -> Callable[..., None]:
    def command(
        data: Annotated[Path, typer.Option(help="LoCoMo JSON file / RealTalk file or folder")],
        out: Annotated[
            Path | None, typer.Option(help="output dir (default bench-out/<dataset>-<mode>)")
        ] = None,
        mode: Annotated[
            str,
            typer.Option(
                help="fast | gated | full | policies | gates | all | baselines, or systems "
                "comma-separated (fast,gated,gated:audit,gate:audit,...,full,rag,fullctx,"
                "llamaindex,llamaindex:facts,retrieval:llamaindex)"
            ),
        ] = "fast",
        extract: Annotated[bool, typer.Option(help="index LLM-extracted facts instead of raw turns")] = False,
        conversations: Annotated[str | None, typer.Option(help="ids, comma-separated")] = None,
        categories: Annotated[str | None, typer.Option(help="e.g. 1,2,3,4")] = None,
        limit: Annotated[
            int | None, typer.Option(help="N questions per conversation, evenly spread over the file")
        ] = None,
        offset: Annotated[
            int, typer.Option(help="with --limit: take the question N places after each evenly spread one")
        ] = 0,
        k: Annotated[int | None, typer.Option(help="memories retrieved per question")] = None,
        policy: Annotated[str | None, typer.Option(help="gate policy of the plain `gated` system")] = None,
        rank_lines: Annotated[
            int | None, typer.Option(help="lines System 2 (evidence) reads (default: the config's, 16)")
        ] = None,
        retrieval_only: Annotated[bool, typer.Option(help="no LLM: evidence recall of search")] = False,
        cache: Annotated[bool, typer.Option(help="SQLite LLM response cache in the output dir")] = True,
        concurrency: Annotated[int, typer.Option(help="questions asked at once (API endpoints)")] = 1,
    ) -> None:
        name = "retrieval" if retrieval_only else mode.replace(",", "+")
        target = out or Path("bench-out") / f"{dataset}-{name}{'-extract' if extract else ''}"
        try:
            run_benchmark(
                dataset, data, target, mode=mode, extract=extract,
                conversations=conversations.split(",") if conversations else None,
                categories=_ints(categories), limit=limit, offset=offset, k=k, policy=policy,
                rank_lines=rank_lines, retrieval_only=retrieval_only, cache=cache, concurrency=concurrency,
            )
        except DualMemError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        typer.echo((target / "report.md").read_text())
        typer.echo(f"written to {target}/ (questions.jsonl, summary.json, report.md)")

    command.__doc__ = f"Run the {dataset} QA benchmark and write JSONL, summary JSON and markdown."
    return command


def register(app: Any) -> None:
    """Add the `bench` command group (locomo, realtalk, scale, extraction, temporal, compare) to a
    typer app."""
    from .extraction import extraction_command
    from .paired import compare_command
    from .scale import scale_command
    from .temporal import temporal_command

    bench = typer.Typer(
        help="Benchmarks: LoCoMo / RealTalk QA with official F1, and scale.", no_args_is_help=True
    )
    bench.command("locomo")(_qa_command("locomo"))
    bench.command("realtalk")(_qa_command("realtalk"))
    bench.command("scale")(scale_command)
    bench.command("extraction")(extraction_command)
    bench.command("temporal")(temporal_command)
    bench.command("compare")(compare_command)
    app.add_typer(bench, name="bench")
