"""Crash-test worker: adds turns in a loop until it is killed (see tests/test_crash.py).

Run as a "zygote": it imports dualmem once (the slow part, ~2 s), then forks one child per
line read from stdin (`<run> <raw|extract> <seed>`) and prints the child's pid. Each child
opens the data directory, adds batches of 1-3 turns, and after every `add` returns appends
`<turn ids>` to the acknowledgement file with one `write` (whole lines, so a kill never leaves
a half-acknowledged batch). The parent SIGKILLs the child at a random moment.

Turn ids say which batch they belong to (`r3-b7-2of3`) and the text is derived from the id,
so the parent can check that batches are all-or-nothing and every field is intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import random
import signal
import sys
import traceback
from pathlib import Path

from dualmem import DualMemory
from dualmem.testing import ScriptedLLM, ScriptedReply

USERS = ("crash-u0", "crash-u1", "crash-u2")
# imported once by the zygote so each forked child starts in ~0.2 s; none of them starts a
# thread at import, so forking afterwards is safe
PRELOAD = ("dualmem.backends", "dualmem.embed", "dualmem.index.chroma", "onnxruntime", "tokenizers",
           "chromadb.api.rust")


def turn_text(turn_id: str) -> str:
    return f"Note {turn_id}: the weather code is {hashlib.sha256(turn_id.encode()).hexdigest()[:12]}."


def _facts(request) -> ScriptedReply:
    # one fact per new message, with a short random delay so kills also land inside extraction
    new = request.messages[-1]["content"].split("NEW messages:")[-1]
    lines = [line for line in new.splitlines() if line[:1].isdigit()]
    facts = [{"text": f"Extracted: {line.split(': ', 1)[-1]}", "date": None, "turns": [n]}
             for n, line in enumerate(lines, 1)]
    return ScriptedReply(json.dumps({"facts": facts}), delay=random.uniform(0, 0.03))


def child(data_dir: Path, acks: Path, run: int, mode: str, seed: int) -> None:
    random.seed(seed)
    llm = ScriptedLLM(by_task={"extract": _facts, "reconcile": lambda r: '{"actions": []}'})
    memory = DualMemory(path=data_dir, llm=llm, extract=mode == "extract")
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    for n in range(10**6):
        k = random.randint(1, 3)
        ids = [f"r{run}-b{n}-{j}of{k}" for j in range(1, k + 1)]
        memory.add(
            [{"id": i, "role": "user", "content": turn_text(i), "metadata": {"run": run}} for i in ids],
            user_id=USERS[n % len(USERS)], session_id=f"s{run}",
        )
        os.write(fd, (" ".join(ids) + "\n").encode())


def main() -> None:
    data_dir, acks = Path(sys.argv[1]), Path(sys.argv[2])
    for name in PRELOAD:
        with contextlib.suppress(ImportError):  # chromadb.api.rust is internal: only a speed-up
            importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # killed children are reaped by the kernel
    for line in sys.stdin:
        run, mode, seed = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                child(data_dir, acks, int(run), mode, int(seed))
            except BaseException:
                traceback.print_exc()  # to the parent's error file: why a child died early
                sys.stderr.flush()
            finally:
                os._exit(1)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
