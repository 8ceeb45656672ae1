"""Multi-process load test: N processes add, search and answer on shared scopes at once.

    python -m dualmem.bench.load --workers 4 --ops 200 --seconds 30

Each worker process opens its own `DualMemory` (raw-turn indexing, `ScriptedLLM`, real local
embeddings) and runs a mixed workload over a few shared users until it has done `--ops`
operations or `--seconds` have passed. Some adds are retried with the same turn ids, as a
client would after a timeout. Afterwards a fresh client checks that every turn written is in
the history and in the index exactly once and in its own scope. Backends: `servers` (the
default) starts a throwaway PostgreSQL and Chroma server on 127.0.0.1; `local` uses SQLite +
embedded Chroma in a temporary directory; `--history-url/--index-url` point at running
servers (loopback only: this is a load generator).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import queue
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..config import Config
from ..history.base import TurnQuery
from ..memory import DualMemory
from ..testing import ScriptedLLM
from ..types import Scope

__all__ = ["LoadReport", "run_load"]

OPS = ("add", "retry", "search", "answer")
RACE_TURNS = 5  # every worker adds the same turns at the same moment: one copy must win
_WEIGHTS = (0.45, 0.05, 0.3, 0.2)


@dataclass
class WorkerResult:
    written: dict[str, list[str]] = field(default_factory=dict)  # user -> turn ids
    latencies: dict[str, list[float]] = field(default_factory=dict)
    misplaced: list[str] = field(default_factory=list)  # ids read from a scope not their own
    race_inserted: int = 0
    duplicated_retries: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class LoadReport:
    workers: int
    seconds: float
    latencies: dict[str, list[float]]
    turns_written: int
    lost_history: int
    lost_index: int
    duplicates: int
    misplaced: int
    errors: list[str]

    @property
    def ops(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def ok(self) -> bool:
        return not (self.lost_history or self.lost_index or self.duplicates or self.misplaced or self.errors)

    def table(self) -> str:
        lines = [f"{'op':<8}{'count':>8}{'ops/s':>10}{'p50 ms':>10}{'p95 ms':>10}"]
        for op in OPS:
            xs = self.latencies.get(op, [])
            if xs:
                p50, p95 = np.percentile(np.asarray(xs) * 1000, [50, 95])
                lines.append(f"{op:<8}{len(xs):>8}{len(xs) / self.seconds:>10.1f}{p50:>10.1f}{p95:>10.1f}")
        lines.append(f"{'all':<8}{self.ops:>8}{self.ops / self.seconds:>10.1f}")
        lines.append(
            f"{self.workers} workers, {self.seconds:.1f} s; turns written {self.turns_written}, "
            f"lost from history {self.lost_history}, lost from index {self.lost_index}, "
            f"duplicated {self.duplicates}, misplaced {self.misplaced}, errors {len(self.errors)}"
        )
        return "\n".join(lines)


def _user_of(turn_id: str) -> str:
    return turn_id.split(":", 1)[0]


def _worker(n: int, config: Config, users: int, ops: int, seconds: float, barrier, out) -> None:
    """One process's workload. Turn ids are `user:worker:i`, so every read can be checked."""
    result = WorkerResult()
    start = time.perf_counter()
    try:
        rng = random.Random(n)
        memory = DualMemory(config, llm=ScriptedLLM(default="I don't know"))
        # one-time costs (model and tokenizer loads, connections) stay out of the timings
        memory.add("warm up", agent_id=f"warm-up-{n}")
        memory.answer("warm up?", agent_id=f"warm-up-{n}")
        barrier.wait(timeout=120)
        start = time.perf_counter()  # the clock starts when every worker is ready
        race = [{"id": f"u0:race:{j}", "content": f"u0 said the same thing {j}"} for j in range(RACE_TURNS)]
        result.race_inserted = len(memory.add(race, user_id="u0", session_id="race").turns)
        result.written["u0"] = [t["id"] for t in race]
        # a retry re-sends what was said: the same id with other content would be an overwrite
        said = {t["id"]: t["content"] for t in race}
        i = 0
        while i < ops and time.perf_counter() - start < seconds:
            user = f"u{rng.randrange(users)}"
            mine = result.written.get(user)
            op = rng.choices(OPS, _WEIGHTS)[0] if mine else "add"
            t = time.perf_counter()
            if op in ("add", "retry"):
                turn_id = rng.choice(mine) if op == "retry" else f"{user}:w{n}:{i}"
                content = said.setdefault(turn_id, f"{user} said thing {i} to w{n}")
                added = memory.add(
                    {"id": turn_id, "content": content},
                    user_id=user,
                    session_id=f"s{n % 2}",
                )
                if op == "add":
                    result.written.setdefault(user, []).append(turn_id)
                elif added.turns:  # a retried add must not store the turn again
                    result.duplicated_retries += 1
            elif op == "search":
                found = memory.search(f"thing {rng.randrange(i + 1)}", user_id=user, k=5)
                result.misplaced += [m.id for m in found if _user_of(m.id) != user]
            else:
                answer = memory.answer(f"what did {user} say?", user_id=user, k=5)
                result.misplaced += [m.id for m in answer.memories if _user_of(m.id) != user]
            result.latencies.setdefault(op, []).append(time.perf_counter() - t)
            i += 1
        memory.close()
    except Exception as e:  # reported, never silent: the load test fails on any error
        barrier.abort()  # the others stop waiting for this worker
        result.error = f"worker {n}: {type(e).__name__}: {e}"
    result.seconds = time.perf_counter() - start
    out.put(result)


def run_load(
    config: Config, *, workers: int = 4, ops: int = 200, seconds: float = 30.0, users: int = 4
) -> LoadReport:
    """Run the workload in `workers` spawned processes, then check every turn (see module doc)."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(n, config, users, ops, seconds, barrier, out))
        for n in range(workers)
    ]
    for p in procs:
        p.start()
    results: list[WorkerResult] = []
    deadline = time.monotonic() + seconds + 180  # generous: start-up (model load) + the run
    try:
        while len(results) < workers and time.monotonic() < deadline:
            try:
                results.append(out.get(timeout=1))
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and out.empty():
                    break  # a worker died before it could report
        if len(results) < workers:
            results.append(WorkerResult(error=f"{workers - len(results)} worker(s) gave no result"))
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return _check(config, results, workers)


def _check(config: Config, results: list[WorkerResult], workers: int) -> LoadReport:
    """Every turn written is in the history and the index exactly once, in its own scope."""
    written: dict[str, set[str]] = {}
    latencies: dict[str, list[float]] = {}
    for r in results:
        for user, turn_ids in r.written.items():
            written.setdefault(user, set()).update(turn_ids)
        for op, xs in r.latencies.items():
            latencies.setdefault(op, []).extend(xs)
    lost_h = lost_i = 0
    dups = sum(r.duplicated_retries for r in results)
    race = sum(r.race_inserted for r in results) if not any(r.error for r in results) else RACE_TURNS
    dups += max(race - RACE_TURNS, 0)  # more than one process believed it stored a turn
    lost_h += max(RACE_TURNS - race, 0)
    misplaced = sum(len(r.misplaced) for r in results)
    if written:  # a fresh client, as a process that took no part would see the data
        memory = DualMemory(config, llm=ScriptedLLM())
        try:
            for user, expected in written.items():
                scope = Scope(user_id=user)
                turns = memory.history_store.list(TurnQuery(scope=scope))
                indexed = memory.index.list(scope)
                got_h, got_i = [t.id for t in turns], [m.id for m in indexed]
                lost_h += len(expected - set(got_h))
                lost_i += len(expected - set(got_i))
                dups += len(got_h) - len(set(got_h)) + len(got_i) - len(set(got_i))
                misplaced += sum(_user_of(x) != user for x in got_h + got_i)
                misplaced += sum(t.user_id != user for t in turns) + sum(m.user_id != user for m in indexed)
        finally:
            memory.close()
    return LoadReport(
        workers=workers,
        seconds=max((r.seconds for r in results), default=0.0) or 1e-9,
        latencies=latencies,
        turns_written=sum(len(v) for v in written.values()),
        lost_history=lost_h,
        lost_index=lost_i,
        duplicates=dups,
        misplaced=misplaced,
        errors=[r.error for r in results if r.error],
    )


@contextlib.contextmanager
def _backend(kind: str, history_url: str | None, index_url: str | None) -> Iterator[Config]:
    for url in (history_url, index_url):
        if url and urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"the load test only runs against loopback servers, not {url!r}")
    with tempfile.TemporaryDirectory(prefix="dualmem-load-") as tmp:
        base = Config(data_dir=Path(tmp), extract=False)
        if history_url or index_url or kind == "local":
            yield base.model_copy(update={"history_url": history_url, "index_url": index_url})
            return
        from .servers import start_chroma, start_postgres

        with start_postgres() as pg, start_chroma() as chroma:
            print(
                f"servers up: PostgreSQL in {pg.seconds_to_start:.1f} s, "
                f"Chroma in {chroma.seconds_to_start:.1f} s"
            )
            yield base.model_copy(update={"history_url": pg.url, "index_url": chroma.url})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dualmem.bench.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workers", type=int, default=4, help="processes (default 4)")
    parser.add_argument("--ops", type=int, default=200, help="operations per worker (default 200)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time limit per worker (default 30)")
    parser.add_argument("--users", type=int, default=4, help="shared user scopes (default 4)")
    parser.add_argument("--backend", choices=["servers", "local"], default="servers")
    parser.add_argument("--history-url")
    parser.add_argument("--index-url")
    args = parser.parse_args(argv)
    with _backend(args.backend, args.history_url, args.index_url) as config:
        report = run_load(config, workers=args.workers, ops=args.ops, seconds=args.seconds, users=args.users)
    print(report.table())
    for error in report.errors:
        print(error)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
