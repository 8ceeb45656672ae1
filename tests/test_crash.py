"""Crash safety: SIGKILL a writer at random moments during `add` and extraction, many times.

Afterwards every acknowledged turn is in the history, nothing is half-written (all fields
intact, batches all-or-nothing), both SQLite files pass `integrity_check`, and `reindex`
brings the index back in line with the history.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from dualmem import DualMemory
from dualmem.testing import ScriptedLLM

sys.path.insert(0, str(Path(__file__).parent))
from crash_worker import USERS, _facts, turn_text  # noqa: E402

# DUALMEM_CRASH_KILLS=200 is the published run (README); CI runs the default
KILLS = int(os.environ.get("DUALMEM_CRASH_KILLS", "24"))
WORKER = Path(__file__).with_name("crash_worker.py")
ID = re.compile(r"^r(\d+)-b(\d+)-(\d+)of(\d+)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"worker {pid} survived SIGKILL"
        time.sleep(0.01)


def _acked(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]  # a line cut by the kill was never acknowledged
    return complete.split()


def _kill_loop(data: Path, acks: Path, errors: Path, kills: int, rng: random.Random) -> dict[str, int]:
    stats = {"kills": 0, "died_early": 0, "after_first_ack": 0}
    with errors.open("w") as err:
        zygote = subprocess.Popen(
            [sys.executable, str(WORKER), str(data), str(acks)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
        )
    try:
        for run in range(kills):
            before = len(_acked(acks))
            mode = "extract" if run % 2 else "raw"
            zygote.stdin.write(f"{run} {mode} {rng.randrange(1 << 30)}\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            if rng.random() < 0.25:  # anywhere: while opening the stores or in the first add
                time.sleep(rng.uniform(0.0, 1.5))
            else:  # once warm, in the middle of the add loop
                deadline = time.monotonic() + 30
                while len(_acked(acks)) == before and _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.01)
                stats["after_first_ack"] += 1
                time.sleep(rng.uniform(0.0, 0.5))
            if not _alive(pid):
                stats["died_early"] += 1
                continue
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)
            stats["kills"] += 1
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
    return stats


@pytest.mark.slow
def test_sigkill_during_add_and_extraction_loses_nothing(tmp_path: Path) -> None:
    data, acks, errors = tmp_path / "data", tmp_path / "acks.txt", tmp_path / "worker.err"
    stats = _kill_loop(data, acks, errors, KILLS, random.Random(20240907))
    assert stats["died_early"] == 0, errors.read_text()[-3000:]
    assert stats["kills"] == KILLS

    acked = _acked(acks)
    assert len(acked) == len(set(acked))

    # -- the history, read straight from SQLite
    db = sqlite3.connect(data / "history.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = db.execute(
        "SELECT partition, id, role, speaker, text, ts, user_id, agent_id, session_id, metadata FROM turns"
    ).fetchall()
    db.close()
    stored = {}
    for partition, tid, role, speaker, text, ts, user, agent, session, metadata in rows:
        run = int(ID.match(tid).group(1))
        assert (role, speaker, text, agent) == ("user", None, turn_text(tid), None), tid
        assert user in USERS and partition == f"user:{user}" and session == f"s{run}", tid
        assert json.loads(metadata) == {"run": run} and ts.endswith("+00:00"), tid
        stored[tid] = user
    lost = set(acked) - set(stored)
    assert not lost, f"acknowledged turns missing after crashes: {sorted(lost)[:10]}"

    batches: dict[tuple[str, str], set[int]] = defaultdict(set)
    sizes = {}
    for tid in stored:
        run, batch, j, k = ID.match(tid).groups()
        batches[run, batch].add(int(j))
        sizes[run, batch] = int(k)
    half = [b for b, js in batches.items() if js != set(range(1, sizes[b] + 1))]
    assert not half, f"half-written batches: {half}"

    chroma_db = sqlite3.connect(data / "chroma" / "chroma.sqlite3")
    assert chroma_db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    chroma_db.close()

    # -- the index: the next start finishes every extraction a kill interrupted
    llm = ScriptedLLM(by_task={"extract": _facts, "reconcile": lambda r: '{"actions": []}'})
    memory = DualMemory(path=data, llm=llm, extract=True)
    try:
        assert memory.flush(timeout=600) and memory.pending() == []
        covered, facts = set(), set()
        for user in USERS:
            for m in memory.get_all(user_id=user):
                covered.update(m.source_turn_ids)
                if m.text.startswith("Extracted: "):
                    facts.update(m.source_turn_ids)
        assert not set(acked) - covered, "acknowledged turns not indexed after restart"
        extract_runs = {t for t in acked if int(ID.match(t).group(1)) % 2}
        assert not extract_runs - facts, "acknowledged turns whose extraction was never finished"
        # only turns whose raw-mode add was cut before it returned wait for a retry or reindex
        unindexed = set(stored) - covered
        assert all(int(ID.match(t).group(1)) % 2 == 0 for t in unindexed)
        result = memory.reindex(extract=False)
        assert result.errors == [] and result.turns == len(stored)
        for user in USERS:
            turns = {t.id for t in memory.history(user_id=user)}
            assert turns == {tid for tid, u in stored.items() if u == user}
            assert {m.id for m in memory.get_all(user_id=user)} == turns
        # each turn's text holds a code no other turn has: an exact-text search finds it first
        probes = sorted(stored)[:: max(1, len(stored) // 30)]
        found = [memory.search(turn_text(t), user_id=stored[t], k=3)[0].id for t in probes]
        assert found == probes
    finally:
        memory.close()

    committed_unacked = len(set(stored) - set(acked))
    print(
        f"\n[crash] kills={stats['kills']} (warm {stats['after_first_ack']}) acknowledged_turns={len(acked)} "
        f"stored_turns={len(stored)} committed_but_unacknowledged={committed_unacked} "
        f"extracted_after_restart={len(facts & extract_runs)}/{len(extract_runs)} "
        f"unacknowledged_raw_unindexed={len(unindexed)} lost=0 half_batches=0 integrity=ok"
    )
