"""Transcript files (what `dualmem add FILE` reads) -> validated turns, all or nothing.

The whole file is read and checked before anything is written, so a bad turn 22 stores
nothing, and the error names it by its place in the file. Turns without an id get one
derived from the file name, their position and their content: re-running the same file
(after fixing it, or after a crash) stores each turn once.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from .errors import InvalidInputError
from .inputs import make_turns
from .types import Scope, Turn

__all__ = ["load_transcript"]

_LINE = re.compile(r"^\s*([^:]{1,80}):\s*(.+)$")


def load_transcript(path: Path, scope: Scope, timestamp: Any = None) -> list[Turn]:
    """A JSON list of turns ({"speaker"/"role", "text"/"content", "timestamp"?, "id"?}) or
    'speaker: text' lines, as turns of `scope`; `InvalidInputError` names the first bad turn."""
    text = _read_text(path)
    if not text.strip():
        raise InvalidInputError(f"{path} is empty: nothing to add")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        items, names = _json_turns(path, text)
    else:
        items, names = _line_turns(path, text)
    for n, name in enumerate(names, 1):
        item = items[n - 1] = {"content": items[n - 1]} if isinstance(items[n - 1], str) else items[n - 1]
        if not isinstance(item, dict):
            raise InvalidInputError(f"{name} must be an object with 'content', got {type(item).__name__}")
        if not item.get("id"):
            item["id"] = _stable_id(path, n, item)
    return make_turns(items, scope, timestamp, names=names)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidInputError(f"cannot read {path}: {e.strerror}") from e
    try:
        return data.decode("utf-8-sig")  # a byte-order mark (Windows editors write one) is not text
    except UnicodeDecodeError as e:
        raise InvalidInputError(
            f"{path} is not UTF-8 text (byte {e.start}): save it as UTF-8 JSON or 'speaker: text' lines"
        ) from None


def _json_turns(path: Path, text: str) -> tuple[list[Any], list[str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise InvalidInputError(f"{path}: a JSON transcript must be a list of turns")
    if not data:
        raise InvalidInputError(f"{path} has no turns: nothing to add")
    return data, [f"{path}: turn {n}" for n in range(1, len(data) + 1)]


def _line_turns(path: Path, text: str) -> tuple[list[Any], list[str]]:
    items, names = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            raise InvalidInputError(f"{path}:{n}: expected 'speaker: text'")
        items.append({"speaker": m.group(1).strip(), "content": m.group(2).strip()})
        names.append(f"{path}:{n}: turn {len(items)}")
    return items, names


def _stable_id(path: Path, position: int, item: dict[str, Any]) -> str:
    # the file's name, not its full path: moving the file must not make its turns new
    content = json.dumps(
        [path.name, position, *(item.get(k) for k in ("role", "speaker", "name", "content", "text",
                                                      "timestamp"))],
        ensure_ascii=False, default=str,
    )
    return "t-" + hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()[:32]
