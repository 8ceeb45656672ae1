"""The public surface and the namespace-package layout."""

from __future__ import annotations

from pathlib import Path

import llama_index.memory.dualmem as package

ROOT = Path(__file__).resolve().parents[1]


def test_exports_are_pinned() -> None:
    assert package.__all__ == [
        "__version__", "DualMemBlock", "DualMemMemory", "DualMemQueryEngine", "DualMemRetriever"]
    assert all(getattr(package, name).__module__.startswith("llama_index.memory.dualmem.")
               for name in package.__all__[1:])


def test_pep420_namespace_has_no_init_above_the_package() -> None:
    assert not (ROOT / "llama_index" / "__init__.py").exists()
    assert not (ROOT / "llama_index" / "memory" / "__init__.py").exists()
    import llama_index.core  # the core distribution shares the namespace

    assert llama_index.core.__file__
