"""The three packages as published: each version set once (pyproject.toml) and read back by
the code, the integrations' range on dualmem holding the checkout's version, no direct
references (PyPI refuses them), and the uv workspace resolving dualmem to this checkout.
(.ci/run builds the sdists and wheels, runs twine check and installs them in a fresh venv.)"""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import dualmem

ROOT = Path(__file__).resolve().parents[1]
INTEGRATIONS = {
    "langchain-dualmem": ROOT / "integrations" / "langchain-dualmem",
    "llama-index-memory-dualmem": ROOT / "integrations" / "llama-index-memory-dualmem",
}


def project(path: Path) -> dict:
    return tomllib.loads((path / "pyproject.toml").read_text())


def test_the_core_version_is_read_from_its_metadata() -> None:
    assert dualmem.__version__ == project(ROOT)["project"]["version"] == version("dualmem")


@pytest.mark.parametrize("name", sorted(INTEGRATIONS))
def test_integrations_depend_on_a_published_dualmem_range(name: str) -> None:
    config = project(INTEGRATIONS[name])
    requirements = [Requirement(r) for r in config["project"]["dependencies"]]
    assert all(r.url is None for r in requirements), "PyPI refuses direct references"
    core = next(r for r in requirements if r.name == "dualmem")
    assert core.specifier.contains(dualmem.__version__)
    assert config["tool"]["uv"]["sources"]["dualmem"] == {"workspace": True}
    assert "allow-direct-references" not in config["tool"].get("hatch", {}).get("metadata", {})


def test_integration_versions_are_read_from_their_metadata() -> None:
    import langchain_dualmem
    import llama_index.memory.dualmem as llama_dualmem

    pairs = [("langchain-dualmem", langchain_dualmem), ("llama-index-memory-dualmem", llama_dualmem)]
    for name, module in pairs:
        assert module.__version__ == project(INTEGRATIONS[name])["project"]["version"] == version(name)


def test_the_workspace_holds_the_integrations() -> None:
    assert project(ROOT)["tool"]["uv"]["workspace"]["members"] == ["integrations/*"]
