"""The public surface: what `dualmem` exports, the sync twins' signatures, and that the
integrations use nothing else of dualmem (read from their sources, so no framework import).
Each integration pins its own exports in its suite (test_lc_imports.py, test_li_exports.py)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import dualmem
from dualmem import DualMemory, ScopedMemory
from dualmem.testing import ScriptedLLM

ROOT = Path(__file__).resolve().parents[1]
LANGCHAIN = ROOT / "integrations" / "langchain-dualmem"
LLAMA_INDEX = ROOT / "integrations" / "llama-index-memory-dualmem"

DUALMEM_ALL = """
__version__ AddResult Answer BaseLLM ChatRequest check_messages Completion Config ConfigError
DeliberationConfig DualMemError DualMemory Evidence ExtractionConfig Fact format_memories
GateConfig GateReport HistoryStore InvalidInputError LLMError LLMReplyError Memory MemoryIndex
Mode ModelNotFoundError Policy ReindexResult run_sync Scope ScopedMemory ScopeError SignalResult
StorageError Turn TurnQuery Usage
""".split()
# what code outside the core may import: the package itself and its documented test fake
PUBLIC_MODULES = {"dualmem", "dualmem.testing"}
SYNC_TWINS = [
    "add", "search", "answer", "history", "get", "get_all", "delete", "delete_all", "forget", "reindex",
]


def test_dualmem_exports_are_pinned_and_sorted() -> None:
    assert dualmem.__all__ == DUALMEM_ALL
    assert dualmem.__all__ == sorted(dualmem.__all__, key=str.casefold)
    assert all(hasattr(dualmem, name) for name in dualmem.__all__)


def _dualmem_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "dualmem":
                found.append(node.module)
            if node.module == "dualmem":  # `from dualmem import _sync` names a private module
                found += [f"dualmem.{a.name}" for a in node.names if a.name[:1] == "_" != a.name[1:2]]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "dualmem"]
    return found


def test_integrations_and_examples_import_only_the_public_surface() -> None:
    sources = [p for d in (LANGCHAIN, LLAMA_INDEX, ROOT / "examples") for p in d.rglob("*.py")]
    assert len(sources) > 20
    private = {
        f"{p.relative_to(ROOT)}: {name}"
        for p in sources
        for name in _dualmem_imports(p)
        if name not in PUBLIC_MODULES
    }
    assert not private, f"import these from `dualmem` instead: {sorted(private)}"


def test_the_private_import_check_catches_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from dualmem._sync import run_sync\nimport dualmem.fast\n"
                   "from dualmem import _sync, Scope, __version__\n")
    assert _dualmem_imports(bad) == ["dualmem._sync", "dualmem.fast", "dualmem", "dualmem._sync"]


@pytest.mark.parametrize("cls", [DualMemory, ScopedMemory])
@pytest.mark.parametrize("name", SYNC_TWINS)
def test_sync_methods_have_the_signature_and_docstring_of_their_async_twin(cls, name: str) -> None:
    sync, async_ = getattr(cls, name), getattr(cls, "a" + name)
    assert inspect.signature(sync) == inspect.signature(async_)
    assert sync.__doc__ and sync.__doc__ == async_.__doc__
    assert sync.__name__ == name and sync.__qualname__ == f"{cls.__name__}.{name}"
    assert not inspect.iscoroutinefunction(sync)


def test_a_misspelt_keyword_fails_in_the_callers_thread(tmp_path, monkeypatch) -> None:
    memory = DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False)

    def never(coro):  # the wrong keyword must fail before anything is sent to dualmem's loop
        raise AssertionError("reached the background loop")

    monkeypatch.setattr("dualmem._sync.run_sync", never)
    with pytest.raises(TypeError, match="usr_id"):
        memory.add("I keep bees.", usr_id="alice")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="user_id"):
        memory.scoped(user_id="alice").search("bees", user_id="bob")  # type: ignore[call-arg]
    memory.close()
