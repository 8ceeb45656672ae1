"""The `dualmem` CLI, driven through typer's runner with a scripted model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dualmem import cli
from dualmem.testing import ScriptedLLM

runner = CliRunner()


@pytest.fixture
def scripted(monkeypatch):
    """Every DualMemory the CLI makes gets this model."""
    llm = ScriptedLLM(default="Biscuit")
    monkeypatch.setattr("dualmem.llm.make_llm", lambda config: llm)
    return llm


def run(tmp_path, *args: str):
    result = runner.invoke(cli.app, ["--data-dir", str(tmp_path), *args])
    return result


def test_add_lines_then_history_memories_and_ask(tmp_path, scripted) -> None:
    transcript = tmp_path / "chat.txt"
    transcript.write_text("Maya: I adopted a beagle called Biscuit.\nAssistant: Lovely name!\n")
    r = run(tmp_path, "add", str(transcript), "-u", "maya", "--no-extract", "--timestamp", "2025-03-03")
    assert r.exit_code == 0, r.output
    assert "stored 2 turns, 2 memories added" in r.output
    r = run(tmp_path, "history", "-u", "maya")
    assert "Maya: I adopted a beagle called Biscuit." in r.output and "3 March 2025" in r.output
    r = run(tmp_path, "memories", "-u", "maya", "-q", "dog name")
    assert "Biscuit" in r.output and "(2 memories)" in r.output
    r = run(tmp_path, "ask", "What is the dog's name?", "-u", "maya", "--mode", "fast", "--explain")
    assert r.exit_code == 0, r.output
    assert "A: Biscuit" in r.output and "path: fast" in r.output and "top memories" in r.output
    r = run(tmp_path, "ask", "What is the dog's name?", "-u", "maya", "--policy", "signals", "--json")
    answer = json.loads(r.output)
    assert answer["text"] == "Biscuit" and answer["gate"]["policy"] == "signals"
    # the scripted audit reply "Biscuit" is not JSON: the audit fails, and without deliberation
    # the fast answer stays with the reason it would have escalated
    r = run(tmp_path, "ask", "What is the dog's name?", "-u", "maya", "--policy", "audit", "--no-deliberate",
            "--json")
    answer = json.loads(r.output)
    assert answer["path"] == "fast" and answer["gate"]["escalate"] and answer["reason"].startswith("would")
    assert not [c for c in scripted.calls if c.task.startswith(("deliberate", "neighbours"))]


def test_add_json_transcript_and_forget(tmp_path, scripted) -> None:
    transcript = tmp_path / "chat.json"
    transcript.write_text(json.dumps([{"speaker": "Maya", "content": "I live in Porto."}]))
    assert run(tmp_path, "add", str(transcript), "-u", "maya", "--no-extract").exit_code == 0
    r = run(tmp_path, "forget", "-u", "maya")
    assert "deleted 1 turns and 1 memories" in r.output
    assert "(0 memories)" in run(tmp_path, "memories", "-u", "maya").output


def test_reindex_rebuilds_the_index(tmp_path, scripted) -> None:
    transcript = tmp_path / "chat.txt"
    transcript.write_text("Maya: one\nMaya: two\nMaya: three\n")
    run(tmp_path, "add", str(transcript), "-u", "maya", "--no-extract")
    r = run(tmp_path, "reindex", "--no-extract")
    assert r.exit_code == 0 and "reindexed 1 scope(s), 3 turns -> 3 memories" in r.output


def test_errors_are_one_clear_line_and_exit_2(tmp_path, scripted) -> None:
    r = run(tmp_path, "ask", "anything?", "-u", "nobody")
    assert r.exit_code == 2 and "error: nothing is stored" in r.output
    r = run(tmp_path, "ask", "anything?")
    assert r.exit_code == 2 and "needs a scope" in r.output
    bad = tmp_path / "bad.txt"
    bad.write_text("no speaker separator here\n")
    r = run(tmp_path, "add", str(bad), "-u", "maya")
    assert r.exit_code != 0 and "expected 'speaker: text'" in r.output


def test_calibrate_fits_and_saves_the_gate(tmp_path) -> None:
    lines = []
    for i in range(40):
        good = i % 2 == 0
        lines.append(json.dumps({"calibration": {
            "signals": {"coverage": 0.9 if good else 0.2, "consistency": 0.9, "entropy": 0.8},
            "fast_f1": 0.9 if good else 0.1, "full_f1": 0.8,
        }}))
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(lines))
    r = run(tmp_path, "calibrate", str(results), "--target-escalation", "0.5")
    assert r.exit_code == 0, r.output
    assert "<- chosen" in r.output and "| 50% |" in r.output
    saved = json.loads((tmp_path / "config.json").read_text())
    assert 0.2 < saved["gate"]["score_threshold"] <= 0.9
    # no target: a clear error, not a traceback, and the saved gate is untouched
    r = run(tmp_path, "calibrate", str(results))
    assert r.exit_code == 2 and "error: give exactly one target" in r.output
    assert json.loads((tmp_path / "config.json").read_text()) == saved


def test_calibrate_fit_learns_the_gate_cross_validated_and_saves_it(tmp_path) -> None:
    import random

    rng = random.Random(5)
    lines = []
    for i in range(120):
        coverage = rng.random()
        wrong = coverage + rng.gauss(0, 0.15) < 0.5
        features = {"coverage": coverage, "entropy": rng.random(), "question.temporal": float(i % 3 == 0)}
        for system in ("gate:entropy", "gate:signals"):  # the same question twice counts once
            lines.append(json.dumps({"system": system, "conversation": f"conv-{i % 4}", "q": i,
                                     "gate_features": features, "f1": 0.2 if wrong else 0.9, "path": "fast"}))
    lines.append(json.dumps({"system": "fast", "conversation": "conv-0", "q": 999, "f1": 1.0}))  # no features
    results = tmp_path / "questions.jsonl"
    results.write_text("\n".join(lines))
    r = run(tmp_path, "calibrate", str(results), "--fit")
    assert r.exit_code == 0, r.output
    assert "120 questions" in r.output and "from 4 conversations" in r.output
    auc = float(r.output.split("chosen inside each fold): ")[1].split()[0])
    assert "model: feature set" in r.output
    assert auc > 0.85 and "<- chosen" in r.output or "chosen:" in r.output
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["gate"]["policy"] == "learned"
    model = json.loads(Path(saved["gate"]["model"]).read_text())
    assert model["features"] and model["format"] == "dualmem.gate-model/1"
    assert "120 questions" in model["fitted_on"]
    # a file without gate readings: a clear error
    bare = tmp_path / "bare.jsonl"
    bare.write_text(json.dumps({"system": "fast", "conversation": "c", "q": 1, "f1": 1.0}) + "\n")
    r = run(tmp_path, "calibrate", str(bare), "--fit", "--no-save")
    assert r.exit_code == 2 and "no labelled gate readings" in r.output


def test_demo_runs_and_reports(tmp_path, scripted) -> None:
    r = run(tmp_path, "demo", "--mode", "fast")
    assert r.exit_code == 0, r.output
    assert "ingested 37 turns in 4 sessions" in r.output
    assert r.output.count("path: fast") == 7 and "peak RSS" in r.output


def test_bench_without_its_extra_fails_loudly() -> None:
    # a fresh interpreter where the bench extra (nltk) cannot be imported
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['nltk'] = None\n"
        "from typer.testing import CliRunner\n"
        "from dualmem.cli import app\n"
        "r = CliRunner().invoke(app, ['bench', 'locomo', '--data', 'x.json'])\n"
        "print(r.exit_code); print(r.output)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    code, message = out.split("\n", 1)
    assert code == "2"
    assert "needs the bench extra" in message and "nltk" in message and "dualmem[bench]" in message
