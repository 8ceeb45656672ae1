"""A process killed after the history write and before extraction ends: the retried add, or
the next start, finishes the interrupted extraction (issue 20, repro 3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dualmem import DualMemory
from dualmem.testing import ScriptedLLM

TURNS = [{"id": f"retry-{i}", "content": f"I keep {n} bees in the garden."}
         for i, n in enumerate(("three", "seven"))]

# the child stores the turns, then hangs inside the extraction call until it is killed
CHILD = textwrap.dedent("""
    import json, sys, time
    from dualmem import DualMemory
    from dualmem.testing import ScriptedLLM

    def hang(request):
        print("extracting", flush=True)
        time.sleep(120)

    memory = DualMemory(path=sys.argv[1], llm=ScriptedLLM(by_task={"extract": hang}), extract=True)
    memory.add(json.loads(sys.argv[2]), user_id="bee", session_id="s1")
""")


def facts(request) -> str:
    new = request.messages[-1]["content"].split("NEW messages:")[-1]
    lines = [line for line in new.splitlines() if line[:1].isdigit()]
    return json.dumps({"facts": [{"text": f"Fact: {line.split(': ', 1)[-1]}", "turns": [n]}
                                 for n, line in enumerate(lines, 1)]})


def killed_mid_extraction(data: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(data), json.dumps(TURNS)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "extracting"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)


def extracted(memory: DualMemory) -> dict[str, int]:
    """How many extracted facts cite each turn."""
    cited: dict[str, int] = {}
    for m in memory.get_all(user_id="bee"):
        if m.text.startswith("Fact: "):
            for t in m.source_turn_ids:
                cited[t] = cited.get(t, 0) + 1
    return cited


@pytest.mark.parametrize("path", ["retry", "start"])
def test_an_interrupted_extraction_is_finished(tmp_path, path) -> None:
    killed_mid_extraction(tmp_path)
    llm = ScriptedLLM(by_task={"extract": facts, "reconcile": '{"actions": []}'})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    try:
        if path == "retry":
            result = memory.add(TURNS, user_id="bee", session_id="s1")
            assert result.skipped_duplicates == 2 and result.error is None
        else:
            assert memory.flush(timeout=60)
        # done when the call returns (the retry waits for a worker already extracting them)
        assert memory.pending(user_id="bee") == []
        assert extracted(memory) == {"retry-0": 1, "retry-1": 1}
        assert memory.search("how many bees", user_id="bee", session_id="s1", k=3)
        memory.add(TURNS, user_id="bee", session_id="s1")  # a further retry extracts nothing again
        assert extracted(memory) == {"retry-0": 1, "retry-1": 1}
    finally:
        memory.close()


# two processes extract one user's turns: their extraction calls never overlap
SERIAL = textwrap.dedent("""
    import json, os, sys, time
    from dualmem import DualMemory
    from dualmem.testing import ScriptedLLM

    def slow(request):
        with open(sys.argv[2], "a") as log:
            log.write(f"start {time.monotonic()}\\n")
        time.sleep(0.2)
        with open(sys.argv[2], "a") as log:
            log.write(f"end {time.monotonic()}\\n")
        return '{"facts": []}'

    urls = json.loads(sys.argv[3])
    memory = DualMemory(path=sys.argv[1], llm=ScriptedLLM(by_task={"extract": slow}), extract=True, **urls)
    for n in range(4):
        memory.add(f"Turn {n} of process {os.getpid()}.", user_id="shared", session_id=f"s{n % 2}")
    memory.close()
""")


def serialised(tmp_path, urls: dict[str, str]) -> None:
    log = tmp_path / "calls.log"
    DualMemory(path=tmp_path / "data", llm=ScriptedLLM(), extract=False, **urls).close()  # create the stores
    children = [subprocess.Popen([sys.executable, "-c", SERIAL, str(tmp_path / "data"), str(log),
                                  json.dumps(urls)]) for _ in range(3)]
    assert [c.wait(timeout=300) for c in children] == [0, 0, 0]
    events = [(float(t), kind) for kind, t in (line.split() for line in log.read_text().splitlines())]
    events.sort()
    assert len(events) == 2 * 12
    depth = 0
    for _, kind in events:
        depth += 1 if kind == "start" else -1
        assert depth in (0, 1), "two processes extracted the same user at once"


def test_extraction_of_one_user_is_serialised_across_processes(tmp_path) -> None:
    serialised(tmp_path, {})  # SQLite + embedded Chroma: a file lock per partition


@pytest.mark.servers
def test_extraction_of_one_user_is_serialised_across_processes_on_postgres(tmp_path, postgres_url) -> None:
    serialised(tmp_path, {"history_url": postgres_url})  # an advisory lock per partition
