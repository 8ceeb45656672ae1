"""`dualmem demo`: ingest a short multi-session conversation, answer questions, show each path."""

from __future__ import annotations

import json
import resource
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .config import Config
from .explain import explain
from .memory import DualMemory
from .types import Answer

__all__ = ["ingest_demo", "load_demo", "run_demo"]


def load_demo() -> dict[str, Any]:
    return json.loads(resources.files("dualmem").joinpath("_assets/demo_conversation.json").read_text())


def run_demo(
    *,
    config: Config | None = None,
    data_dir: Path | None = None,
    extract: bool = False,
    mode: str = "gated",
    policy: str | None = None,
    llm: Any = None,
    echo=print,
) -> dict[str, Any]:
    """Run the demo and return its measurements (also printed)."""
    demo = load_demo()
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="dualmem-demo-")
        data_dir = Path(tmp.name)
    config = (config or Config.from_env()).model_copy(update={"data_dir": data_dir, "extract": extract})
    memory = DualMemory(config, llm=llm)
    user = demo["user_id"]
    index = "extracted facts" if extract else "raw turns"
    echo(f"dualmem demo: model={config.model or config.llm} index={index}")
    echo(f"data dir: {data_dir}\n")
    n_turns, ingest_s = ingest_demo(memory, demo, echo)
    answers = []
    for question in demo["questions"]:
        answer = memory.answer(question, user_id=user, mode=mode, policy=policy)
        answers.append(answer)
        echo(explain(answer, verbose=False))
        echo("")
    summary = _summary(answers, ingest_s, n_turns)
    echo("summary:")
    for p in ("fast", "deliberate"):
        if summary["paths"][p]:
            echo(
                f"  {p:<10} {summary['paths'][p]} answer(s), mean {summary['mean_latency'][p]:.1f}s, "
                f"mean {summary['mean_tokens'][p]:.0f} tokens"
            )
    if summary["system2_ran"]:
        changed, ran = summary["system2_changed"], summary["system2_ran"]
        echo(f"  System 2   changed {changed} of {ran} escalated answer(s)")
    echo(f"  ingest     {ingest_s:.1f}s for {n_turns} turns; peak RSS {summary['peak_rss_mb']:.0f} MB")
    echo('\nTry: dualmem ask "..." --user-id maya --explain  (with --data-dir to keep the memory)')
    memory.close()
    if tmp is not None:
        tmp.cleanup()
    return {"answers": [a.model_dump(mode="json") for a in answers], **summary}


def ingest_demo(
    memory: DualMemory, demo: dict[str, Any], echo: Callable[[str], Any] = print
) -> tuple[int, float]:
    """Add the demo's sessions; returns the number of turns and the seconds it took."""
    user = demo["user_id"]
    start = time.perf_counter()
    ingest_tokens = 0
    n_turns = sum(len(s["turns"]) for s in demo["sessions"])
    with tqdm(total=n_turns, desc="ingest", unit="turn", leave=False) as bar:
        for session in demo["sessions"]:
            result = memory.add(
                session["turns"], user_id=user, session_id=session["session_id"], timestamp=session["date"]
            )
            ingest_tokens += result.usage.total_tokens
            if result.error:
                echo(f"  ! {result.error}")
            bar.update(len(session["turns"]))
    ingest_s = time.perf_counter() - start
    echo(
        f"ingested {n_turns} turns in {len(demo['sessions'])} sessions: {ingest_s:.1f}s, "
        f"{len(memory.get_all(user_id=user))} memories, {ingest_tokens} LLM tokens\n"
    )
    return n_turns, ingest_s


def _summary(answers: list[Answer], ingest_s: float, n_turns: int) -> dict[str, Any]:
    latency = {p: [sum(a.latency.values()) for a in answers if a.path == p] for p in ("fast", "deliberate")}
    return {
        "ingest_seconds": ingest_s,
        "turns": n_turns,
        "paths": {p: len(v) for p, v in latency.items()},
        "mean_latency": {p: (sum(v) / len(v) if v else None) for p, v in latency.items()},
        "mean_tokens": {
            p: (sum(a.total_usage.total_tokens for a in answers if a.path == p) / len(v) if v else None)
            for p, v in latency.items()
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # escalations whose System 2 answer won the arbitration, against all that deliberated
        "system2_changed": sum(bool(a.candidates) and not a.candidates[0].won for a in answers),
        "system2_ran": sum(bool(a.candidates) for a in answers),
    }
