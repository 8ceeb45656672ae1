"""`dualmem add FILE` on bad files: one clear line and exit code 2, nothing stored, and a
re-run of a fixed file stores each turn once (issue 20, repro 1)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dualmem import DualMemory, cli
from dualmem.testing import ScriptedLLM

runner = CliRunner()


def run(data, *args: str):
    return runner.invoke(cli.app, ["--data-dir", str(data), *args])


def stored(data) -> list[str]:
    memory = DualMemory(path=data, llm=ScriptedLLM(), extract=False)
    try:
        return [t.text for t in memory.history(user_id="u")] if (data / "history.sqlite3").exists() else []
    finally:
        memory.close()


def turns(n: int) -> list[dict]:
    return [{"speaker": "Maya", "content": f"Line {i} of the file.", "timestamp": f"2025-03-{1 + i % 28:02d}"}
            for i in range(1, n + 1)]


def one_line_error(r, *needles: str) -> None:
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def seeded(tmp_path):
    """A data dir whose history already holds 3 turns of user u."""
    data = tmp_path / "data"
    first = tmp_path / "first.json"
    first.write_text(json.dumps(turns(3)))
    assert run(data, "add", str(first), "-u", "u", "--no-extract").exit_code == 0
    return data


BAD_FILES = {
    "truncated JSON": (b'[{"content": "ok"', "not valid JSON"),
    "empty .json": (b"", "is empty"),
    "blank .json": (b" \n\t\n", "is empty"),
    "empty list": (b"[]", "no turns"),
    "an object, not a list": (b'{"content": "hi"}', "must be a list"),
    "a list of numbers": (b"[1, 2]", "turn 1 must be an object"),
    "a null turn": (b'[{"content": "ok"}, null]', "turn 2 must be an object"),
    "missing content": (b'[{"speaker": "Maya"}]', "turn 1 content must be a string"),
    "empty content": (b'[{"content": "  "}]', "turn 1 content is empty"),
    "numeric content": (b'[{"content": 12}]', "turn 1 content must be a string"),
    "bad role type": (b'[{"content": "x", "role": 3}]', "turn 1: role and speaker"),
    "bad metadata": (b'[{"content": "x", "metadata": [1]}]', "turn 1: metadata must be a dict"),
    "bad timestamp": (b'[{"content": "x", "timestamp": "yesterday-ish"}]', "cannot read timestamp"),
    "BOM then truncated": (b'\xef\xbb\xbf[{"content": "ok"', "not valid JSON"),
    "latin-1 bytes": ("Maya: café".encode("latin-1"), "not UTF-8"),
    "a JSON string": (b'"hello"', "must be a list"),
    "lone surrogate escape": (b'[{"content": "\\ud800"}]', "not valid Unicode"),
    "a line without a speaker": (b"Maya: hi\njust text\n", ":2: expected 'speaker: text'"),
    "two ids, two contents": (b'[{"id": "a", "content": "x"}, {"id": "a", "content": "y"}]',
                              "turn 2 reuses the id"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_file_is_one_line_error_and_stores_nothing(tmp_path, seeded, name) -> None:
    content, needle = BAD_FILES[name]
    bad = tmp_path / "bad.json" if not name.startswith(("a line", "latin")) else tmp_path / "bad.txt"
    bad.write_bytes(content)
    one_line_error(run(seeded, "add", str(bad), "-u", "u", "--no-extract"), "error:", needle)
    assert len(stored(seeded)) == 3


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_are_one_line_error(tmp_path, seeded, seed) -> None:
    bad = tmp_path / "noise.bin"
    bad.write_bytes(b"\xff" + random.Random(seed).randbytes(300))
    one_line_error(run(seeded, "add", str(bad), "-u", "u", "--no-extract"), "not UTF-8")
    assert len(stored(seeded)) == 3


@pytest.mark.parametrize("batch", ["0", "-1", "-20"])
def test_a_batch_below_one_is_refused(tmp_path, seeded, batch) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(turns(2)))
    r = run(seeded, "add", str(good), "-u", "u", "--no-extract", "--batch", batch)
    assert r.exit_code == 2 and "Traceback" not in r.output and "--batch" in r.output
    assert "stored" not in r.output and len(stored(seeded)) == 3


@pytest.mark.parametrize(("position", "field", "value", "needle"), [
    (22, "content", None, "turn 22 content must be a string"),
    (21, "timestamp", "31/31/2025", "turn 21"),
    (25, "metadata", "x", "turn 25: metadata"),
    (1, "content", "", "turn 1 content is empty"),
])
def test_a_bad_late_turn_stores_nothing_and_is_named(tmp_path, seeded, position, field, value,
                                                     needle) -> None:
    items = turns(25)
    items[position - 1][field] = value
    bad = tmp_path / "late.json"
    bad.write_text(json.dumps(items))
    one_line_error(run(seeded, "add", str(bad), "-u", "u", "--no-extract", "--batch", "5"), needle)
    assert len(stored(seeded)) == 3  # all or nothing: not 3 + 20
    # the fixed file, run twice (as after a crash or a retry), stores each turn once
    items[position - 1] = turns(25)[position - 1]
    bad.write_text(json.dumps(items))
    r = run(seeded, "add", str(bad), "-u", "u", "--no-extract", "--batch", "5")
    assert r.exit_code == 0 and "stored 25 turns" in r.output, r.output
    r = run(seeded, "add", str(bad), "-u", "u", "--no-extract", "--batch", "5")
    assert r.exit_code == 0 and "stored 0 turns (25 already stored)" in r.output, r.output
    assert len(stored(seeded)) == 28


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path, seeded) -> None:
    for suffix, body in ((".json", json.dumps(turns(2))), (".txt", "Maya: first\nAna: second\n")):
        f = tmp_path / f"bom{suffix}"
        f.write_bytes(b"\xef\xbb\xbf" + body.encode())
        r = run(seeded, "add", str(f), "-u", "u", "--no-extract")
        assert r.exit_code == 0 and "stored 2 turns" in r.output, r.output
    texts = stored(seeded)
    assert texts[-2:] == ["first", "second"] and not any("\ufeff" in t for t in texts)


def test_a_moved_file_is_still_the_same_turns(tmp_path, seeded) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "chat.txt").write_text("Maya: I live in Porto.\nMaya: I live in Porto.\n")
        r = run(seeded, "add", str(tmp_path / folder / "chat.txt"), "-u", "u", "--no-extract")
        assert r.exit_code == 0, r.output
    # the same line twice is two turns (positions differ); the moved copy adds nothing
    assert stored(seeded)[3:] == ["I live in Porto.", "I live in Porto."]


def test_the_installed_command_prints_no_traceback(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"content": "ok"')
    env = {**os.environ, "DUALMEM_DATA_DIR": str(tmp_path / "data")}
    command = [str(Path(sys.executable).with_name("dualmem")), "add", str(bad), "-u", "u", "--no-extract"]
    p = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().startswith("error:") and len(p.stderr.strip().splitlines()) == 1
