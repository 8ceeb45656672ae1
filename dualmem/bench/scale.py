"""Scale benchmark: ingestion throughput and fast-path search latency at 1K / 10K / 100K memories.

One scope is filled with synthetic one-line facts, tier by tier. At each tier the same queries
go to `DualMemory.search` (hybrid dense + BM25, k=30) and to a plain Chroma query of the same
collection (same vectors, dense only), and the ratio of the latencies is reported: for repeated
searches, and for a search right after adding one turn (an agent's loop: add the user's turn,
then search for the next question). A tenants row fills many small users instead, and reports
what each one costs on disk. A dialogue row ingests one real conversation (LoCoMo JSON) with
the real MiniLM, session by session, against the model alone embedding the same turns in the
same calls: real turns are longer than the synthetic ones and are split into sentences.

Embedding 100K texts with the real MiniLM takes minutes (~300-500 texts/s on two idle cores),
and it is not our overhead. So by default every text is embedded by `WordMeanEmbedding`: the
normalised mean of real MiniLM vectors of its words, computed once for the small synthetic
vocabulary. The vectors are clustered like real ones, cost microseconds, and are used by both
sides of every comparison; the real model's own cost (texts/s, ms per query) is measured
separately and reported next to it. `real_embeddings=True` uses the real model throughout.
"""

from __future__ import annotations

import json
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from ..config import SMALL_PARTITION_LIMIT
from ..embed import MiniLMEmbedding
from ..index.chroma import ChromaMemoryIndex
from ..index.lexical import LexicalCache
from ..llm.base import ChatRequest
from ..memory import DualMemory
from ..testing import ScriptedLLM
from ..types import Scope
from .data import load_locomo

__all__ = ["WordMeanEmbedding", "run_scale", "scale_command"]

NAMES = "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert Sybil".split()
VERBS = "visited painted adopted bought sold cooked climbed photographed repaired studied".split()
THINGS = (
    "a red bicycle|the old lighthouse|a puppy named Rex|a pottery bowl|the city museum|a vintage guitar|"
    "a mountain trail|a sourdough loaf|the community garden|a sailing boat|a chess set|a wool scarf|"
    "the jazz festival|a telescope|a rose bush|a camper van"
).split("|")
PLACES = "Paris Lisbon Denver Kyoto Oslo Lima Austin Dublin Nairobi Seoul Quebec Perth".split()
MONTHS = "January February March April May June July August September October November December".split()
SCOPE = "scale-bench"
BATCH = 500
QUERIES = 100
K = 30
_WORD = re.compile(r"\w+")


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(NAMES)} {rng.choice(VERBS)} {rng.choice(THINGS)} in {rng.choice(PLACES)} "
        f"on {rng.randint(1, 28)} {rng.choice(MONTHS)} {rng.randint(2015, 2024)}"
        for _ in range(n)
    ]


def synthetic_queries(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [
        f"When did {rng.choice(NAMES)} visit {rng.choice(PLACES)}?"
        if i % 2
        else f"Who {rng.choice(VERBS)} {rng.choice(THINGS)}?"
        for i in range(n)
    ]


class WordMeanEmbedding(MiniLMEmbedding):
    """Mean of real MiniLM word vectors (cached per word); same name and dimension as MiniLM."""

    def __init__(self, max_length: int = 256, batch_size: int = 64) -> None:
        super().__init__(max_length, batch_size)
        self._words: dict[str, np.ndarray] = {}

    def __call__(self, input: Any) -> Any:
        texts = list(input)
        words = [_WORD.findall(t.lower()) or ["empty"] for t in texts]
        missing = sorted({w for ws in words for w in ws} - self._words.keys())
        if missing:
            self._words.update(zip(missing, super().__call__(missing), strict=True))
        out = []
        for ws in words:
            v = np.mean([self._words[w] for w in ws], axis=0)
            out.append((v / np.linalg.norm(v)).astype(np.float32))
        return out


def _extract_reply(request: ChatRequest) -> str:
    # ScriptedLLM as the extractor: every new message becomes one fact (no model time)
    block = request.messages[-1]["content"].split("NEW messages:")[-1]
    lines = re.findall(r"^(\d+)\. \[[^\]]*\] [^:]*: (.*)$", block, re.M)
    return json.dumps({"facts": [{"text": t, "date": None, "turns": [int(n)]} for n, t in lines]})


def _reconcile_reply(request: ChatRequest) -> str:
    n = request.messages[-1]["content"].count("New fact ")
    return json.dumps({"actions": [{"fact": i, "event": "ADD"} for i in range(1, n + 1)]})


def _memory(path: Path, embedding: MiniLMEmbedding, small_limit: int = 0) -> DualMemory:
    """The tiers compare dualmem with plain Chroma on the same collection, so their scope is a
    Chroma collection from its first memory (`small_limit=0`)."""
    llm = ScriptedLLM(by_task={"extract": _extract_reply, "reconcile": _reconcile_reply})
    index = ChromaMemoryIndex(path / "chroma", embedding_function=embedding, small_limit=small_limit)
    return DualMemory(path=path, llm=llm, index=index, extract=False)


def _ingest(memory: DualMemory, texts: list[str], offset: int, *, extract: bool, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        messages = [
            {"role": "user", "content": t, "id": f"t{offset + i + j}", "timestamp": "2024-01-01"}
            for j, t in enumerate(chunk)
        ]
        result = memory.add(messages, user_id=SCOPE, extract=extract)
        if result.error:
            raise RuntimeError(result.error)
    return time.perf_counter() - start


def _pct(values: list[float]) -> dict[str, float]:
    ms = np.array(values) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def _search(memory: DualMemory, embedding: MiniLMEmbedding, queries: list[str]) -> dict[str, Any]:
    """Ours and plain Chroma's latency, query by query in turn, so that a load change on a
    shared machine hits both sides alike."""
    col = memory.index._collection(Scope(user_id=SCOPE), create=False)
    memory.index._lexical = LexicalCache()  # as after a restart: the first search builds BM25
    start = time.perf_counter()
    memory.search(queries[0], user_id=SCOPE, k=K)
    out: dict[str, Any] = {"first_search_s": time.perf_counter() - start}
    plain, ours = [], []
    for q in queries:
        plain.append(_plain_query(col, embedding, q))
        t = time.perf_counter()
        memory.search(q, user_id=SCOPE, k=K)
        ours.append(time.perf_counter() - t)
    out.update(chroma=_pct(plain), dualmem=_pct(ours))
    out["ratio_p50"] = out["dualmem"]["p50_ms"] / out["chroma"]["p50_ms"]
    out["ratio_p95"] = out["dualmem"]["p95_ms"] / out["chroma"]["p95_ms"]
    out.update(_after_add(memory, embedding, col, queries))
    return out


def _plain_query(col: Any, embedding: MiniLMEmbedding, query: str) -> float:
    t = time.perf_counter()
    col.query(query_embeddings=[embedding([query])[0]], n_results=K, include=["documents", "metadatas"])
    return time.perf_counter() - t


def _after_add(memory: DualMemory, embedding: MiniLMEmbedding, col: Any, queries: list[str]) -> dict:
    """Search latency right after adding one turn: plain Chroma adds one vector and queries
    (and deletes it again), then dualmem adds one turn and searches. The turns added here are
    removed at the end, so the tier keeps its size."""
    extra = synthetic_texts(len(queries), seed=2)
    scope = Scope(user_id=SCOPE)
    start = memory.index.count(scope)
    plain, ours = [], []
    for i, (text, q) in enumerate(zip(extra, queries, strict=True)):
        col.add(ids=[f"plain{i}"], embeddings=[embedding([text])[0]], documents=[text])
        plain.append(_plain_query(col, embedding, q))
        col.delete(ids=[f"plain{i}"])
        message = {"role": "user", "content": text, "id": f"added{start}-{i}", "timestamp": "2024-01-02"}
        memory.add([message], user_id=SCOPE, extract=False)
        t = time.perf_counter()
        memory.search(q, user_id=SCOPE, k=K)
        ours.append(time.perf_counter() - t)
    memory.index.delete([f"added{start}-{i}" for i in range(len(extra))], scope)
    after = {"chroma": _pct(plain), "dualmem": _pct(ours)}
    after["ratio_p95"] = after["dualmem"]["p95_ms"] / after["chroma"]["p95_ms"]
    return {"after_add": after}


PLAIN_USERS = 1_000  # plain Chroma's cost per user is flat: measured on the first 1,000 users


def _tenants(path: Path, embedding: MiniLMEmbedding, users: int, queries: list[str]) -> dict[str, Any]:
    """Many small users (two turns each): ingestion, disk per user and search latency, against
    plain Chroma with a collection per user (for the first `PLAIN_USERS` users)."""
    import chromadb
    from chromadb.config import Settings

    memory = _memory(path / "dualmem", embedding, small_limit=SMALL_PARTITION_LIMIT)
    texts = synthetic_texts(2 * users, seed=3)
    start = time.perf_counter()
    for u in range(users):
        messages = [
            {"role": "user", "content": texts[2 * u + j], "id": f"u{u}-{j}", "timestamp": "2024-01-01"}
            for j in range(2)
        ]
        memory.add(messages, user_id=f"user{u}", extract=False)
    seconds = time.perf_counter() - start
    settings = Settings(anonymized_telemetry=False)
    client = chromadb.PersistentClient(path=str(path / "plain"), settings=settings)
    plain_users = min(users, PLAIN_USERS)
    for u in range(plain_users):
        col = client.get_or_create_collection(f"user{u}", metadata={"hnsw:space": "cosine"})
        pair = texts[2 * u : 2 * u + 2]
        col.add(ids=[f"u{u}-0", f"u{u}-1"], documents=pair, embeddings=embedding(pair))
    rng = random.Random(4)
    who = [f"user{rng.randrange(plain_users)}" for _ in queries]
    plain, ours = [], []
    for user, q in zip(who, queries, strict=True):
        t = time.perf_counter()
        col = client.get_collection(user)
        col.query(query_embeddings=[embedding([q])[0]], n_results=2, include=["documents", "metadatas"])
        plain.append(time.perf_counter() - t)
        t = time.perf_counter()
        memory.search(q, user_id=user, k=K)
        ours.append(time.perf_counter() - t)
    memory.close()
    client.close()
    ours_files = [f for f in (path / "dualmem" / "chroma").rglob("*") if f.is_file()]
    plain_files = [f for f in (path / "plain").rglob("*") if f.is_file()]
    return {
        "users": users,
        "turns_per_user": 2,
        "users_per_second": users / seconds,
        "index_files": len(ours_files),
        "index_bytes": sum(f.stat().st_size for f in ours_files),
        "history_bytes": sum(f.stat().st_size for f in (path / "dualmem").glob("history.sqlite3*")),
        "plain_users": plain_users,
        "plain_files": len(plain_files),
        "plain_bytes": sum(f.stat().st_size for f in plain_files),
        "chroma": _pct(plain),
        "dualmem": _pct(ours),
    }


def _model_cost(texts: list[str], queries: list[str]) -> dict[str, float]:
    """The real MiniLM's own cost on the same kind of text, for reading the numbers above."""
    model = MiniLMEmbedding()
    model(["warm up"])
    start = time.perf_counter()
    model(texts)
    per_text = (time.perf_counter() - start) / len(texts)
    times = []
    for q in queries:
        t = time.perf_counter()
        model([q])
        times.append(time.perf_counter() - t)
    return {"texts_per_second": 1 / per_text, **{f"query_{k}": v for k, v in _pct(times).items()}}


def _dialogue(path: Path, data: str | Path) -> dict[str, Any]:
    """Ingestion of the first LoCoMo conversation in `data` (raw index, one add per session)
    against the real MiniLM alone on the same turn texts in the same session-sized calls."""
    conv = load_locomo(data)[0]
    model = MiniLMEmbedding()
    model(["warm up"])
    index = ChromaMemoryIndex(path / "chroma", embedding_function=model)
    memory = DualMemory(path=path, llm=ScriptedLLM(), index=index, extract=False)
    start = time.perf_counter()
    for session in conv.sessions:
        result = memory.add(session.messages(), user_id=SCOPE, session_id=session.id)
        if result.error:
            raise RuntimeError(result.error)
    ingest = time.perf_counter() - start
    memory.close()
    start = time.perf_counter()
    for session in conv.sessions:
        model([f"{t.speaker}: {t.text}" for t in session.turns])
    embed = time.perf_counter() - start
    turns = len(conv.turns)
    return {"conversation": conv.id, "turns": turns, "sessions": len(conv.sessions),
            "turns_per_second": turns / ingest, "embedding_texts_per_second": turns / embed}


def run_scale(
    out: str | Path,
    *,
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000),
    real_embeddings: bool = False,
    extract_turns: int = 1_000,
    queries: int = QUERIES,
    tenants: int = 10_000,
    dialogue: str | Path | None = None,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    embedding = MiniLMEmbedding() if real_embeddings else WordMeanEmbedding()
    texts = synthetic_texts(max(sizes))
    qs = synthetic_queries(queries)
    embedding(texts[:1] + qs)  # warm-up (and the query vocabulary)
    result: dict[str, Any] = {
        "embedding": "MiniLM (real)"
        if real_embeddings
        else "WordMeanEmbedding (mean of real MiniLM word vectors)",
        "tiers": [],
    }
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        memory = _memory(Path(tmp) / "raw", embedding)
        filled = 0
        for size in sorted(sizes):
            seconds = _ingest(memory, texts[filled:size], filled, extract=False, batch=BATCH)
            tier = {
                "memories": size,
                "ingested": size - filled,
                "ingest_s": seconds,
                "turns_per_second": (size - filled) / seconds,
            }
            filled = size
            tier.update(_search(memory, embedding, qs))
            result["tiers"].append(tier)
        memory.close()
        if extract_turns:
            # the extraction pipeline with an instant scripted model: our own overhead per turn
            memory = _memory(Path(tmp) / "extract", embedding)
            seconds = _ingest(memory, texts[:extract_turns], 0, extract=True, batch=2)
            raw = _memory(Path(tmp) / "raw2", embedding)
            raw_seconds = _ingest(raw, texts[:extract_turns], 0, extract=False, batch=2)
            result["extraction"] = {
                "turns": extract_turns,
                "batch": 2,
                "turns_per_second": extract_turns / seconds,
                "raw_same_batches_turns_per_second": extract_turns / raw_seconds,
            }
            memory.close()
            raw.close()
        if tenants:
            result["tenants"] = _tenants(Path(tmp) / "tenants", embedding, tenants, qs)
        if dialogue:
            result["dialogue"] = _dialogue(Path(tmp) / "dialogue", dialogue)
    result["model"] = _model_cost(texts[:256], qs[:20])
    (out / "scale.json").write_text(json.dumps(result, indent=2))
    (out / "scale.md").write_text(markdown(result))
    return result


def _ms(p: dict[str, float]) -> str:
    return f"{p['p50_ms']:.1f} / {p['p95_ms']:.1f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Scale benchmark (one scope, k={K}; embeddings: {result['embedding']})",
        "",
        "| memories | ingest turns/s | first search after restart s (BM25 build) | dualmem p50 / p95 ms "
        "| plain Chroma p50 / p95 ms | ratio p50 / p95 | add one turn, then search: dualmem p50 / p95 ms "
        "| plain Chroma p50 / p95 ms | ratio p95 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in result["tiers"]:
        a = t["after_add"]
        lines.append(
            f"| {t['memories']:,} | {t['turns_per_second']:.0f} | {t['first_search_s']:.2f} "
            f"| {_ms(t['dualmem'])} | {_ms(t['chroma'])} | {t['ratio_p50']:.1f}x / {t['ratio_p95']:.1f}x "
            f"| {_ms(a['dualmem'])} | {_ms(a['chroma'])} | {a['ratio_p95']:.1f}x |"
        )
    if "tenants" in result:
        n = result["tenants"]
        lines += [
            "",
            f"Tenants: {n['users']:,} users x {n['turns_per_user']} turns, "
            f"{n['users_per_second']:.0f} users/s ingested; the index takes "
            f"{n['index_bytes'] / n['users'] / 1024:.1f} KB per user ({n['index_bytes'] / 2**20:.1f} MB in "
            f"{n['index_files']:,} files), plain Chroma with a "
            f"collection per user {n['plain_bytes'] / n['plain_users'] / 1024:.0f} KB and "
            f"{n['plain_files'] / n['plain_users']:.1f} files (its first {n['plain_users']:,} users); "
            "history "
            f"{n['history_bytes'] / n['users'] / 1024:.1f} KB per user; "
            f"search of a random user {_ms(n['dualmem'])} ms (plain Chroma {_ms(n['chroma'])} ms, "
            "opening the user's collection included).",
        ]
    if "extraction" in result:
        e = result["extraction"]
        lines += [
            "",
            f"Extraction pipeline with an instant scripted LLM, {e['turns']} turns in batches of "
            f"{e['batch']}: {e['turns_per_second']:.0f} turns/s (raw indexing in the same batches: "
            f"{e['raw_same_batches_turns_per_second']:.0f} turns/s).",
        ]
    if "dialogue" in result:
        d = result["dialogue"]
        lines += [
            "",
            f"Real dialogue ({d['conversation']}: {d['turns']} turns, one add per session of "
            f"~{d['turns'] / d['sessions']:.0f}, real MiniLM): {d['turns_per_second']:.0f} turns/s "
            f"ingested, against {d['embedding_texts_per_second']:.0f} turns/s for the model alone "
            "embedding them in the same calls: "
            f"{d['turns_per_second'] / d['embedding_texts_per_second']:.2f}x the raw embedding rate.",
        ]
    m = result["model"]
    lines += [
        "",
        f"The real MiniLM on the same texts: {m['texts_per_second']:.0f} texts/s; one query "
        f"{m['query_p50_ms']:.1f} ms p50 / {m['query_p95_ms']:.1f} ms p95 (add it to both search columns "
        "when the stored vectors are WordMeanEmbedding's).",
    ]
    return "\n".join(lines) + "\n"


def scale_command(
    out: Annotated[Path, typer.Option(help="output dir")] = Path("bench-out/scale"),
    sizes: Annotated[str, typer.Option(help="memory counts, comma-separated")] = "1000,10000,100000",
    real_embeddings: Annotated[
        bool, typer.Option(help="embed every text with the real MiniLM (slow)")
    ] = False,
    extract_turns: Annotated[
        int, typer.Option(help="turns for the scripted-extraction run (0: skip)")
    ] = 1000,
    tenants: Annotated[
        int, typer.Option(help="users of two turns each for the tenants row (0: skip)")
    ] = 10_000,
    dialogue: Annotated[
        Path | None, typer.Option(help="LoCoMo JSON: ingest its first conversation with the real MiniLM")
    ] = None,
) -> None:
    """Ingestion throughput and search latency at 1K/10K/100K memories, against plain Chroma."""
    result = run_scale(
        out,
        sizes=tuple(int(s) for s in sizes.split(",")),
        real_embeddings=real_embeddings,
        extract_turns=extract_turns,
        tenants=tenants,
        dialogue=dialogue,
    )
    typer.echo(markdown(result))
