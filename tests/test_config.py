"""`Config`: one URL redactor, typed phase settings (gate, deliberation, extraction) reachable
from the config, and no import cycle among dualmem's modules."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from dualmem import Config, ConfigError, DualMemory
from dualmem.config import DeliberationConfig, ExtractionConfig, GateConfig, redact_url
from dualmem.testing import ScriptedLLM

PACKAGE = Path(__file__).resolve().parents[1] / "dualmem"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://dual:s3cret@db:5432/mem", "postgresql://dual:***@db:5432/mem"),
        # the options stay readable, the credentials among them do not
        ("postgresql://dual:s3cret@db/mem?sslmode=require&password=s3cret&sslpassword=s3cret#x",
         "postgresql://dual:***@db/mem?sslmode=require&password=***&sslpassword=***#x"),
        ("http://u:s3cret@chroma:8000?tenant=t&database=d&token_header=X-Chroma-Token&api_key=s3cret",
         "http://u:***@chroma:8000?tenant=t&database=d&token_header=X-Chroma-Token&api_key=***"),
        ("https://llm.internal/v1?access_token=s3cret&Signature=s3cret&model=m",
         "https://llm.internal/v1?access_token=***&Signature=***&model=m"),
        ("host=db user=dual password=s3cret dbname=mem", "host=db user=dual password=*** dbname=mem"),
        ("host=db password='s3 cr\\'et' dbname=mem", "host=db password=*** dbname=mem"),
        ("postgresql://dual@db/mem", "postgresql://dual@db/mem"),
        ("sqlite:///var/lib/dualmem/history.sqlite3", "sqlite:///var/lib/dualmem/history.sqlite3"),
        ("http://[::1:8000/s3cret", "<unparseable URL>"),
    ],
)
def test_redact_url_masks_passwords_and_secret_parameters_and_keeps_the_rest(url, shown) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url) and "s3 cr" not in redact_url(url)


def test_postgres_and_the_config_use_the_one_redactor() -> None:
    pytest.importorskip("psycopg")
    from dualmem.history import postgres

    assert postgres.redact_url is redact_url
    url = "postgresql://dual:s3cret@db/mem?sslmode=require"
    assert redact_url(url) in repr(Config(history_url=url))


def test_the_gate_settings_are_typed_and_the_dict_form_still_works(tmp_path) -> None:
    config = Config(data_dir=tmp_path, gate={"policy": "audit", "entropy_threshold": 0.3})
    assert isinstance(config.gate, GateConfig) and config.gate.policy == "audit"
    assert config.gate.coverage_threshold == GateConfig().coverage_threshold
    with pytest.raises(ValidationError, match="polcy"):
        Config(gate={"polcy": "audit"})
    with pytest.raises(ValidationError, match="policy"):
        Config(gate={"policy": "vibes"})
    with pytest.raises(ConfigError, match="polcy"):
        Config.from_env(data_dir=tmp_path, gate={"polcy": "audit"})
    with pytest.raises(ConfigError, match="chunk_messages"):
        config.updated(deliberation={"chunk_messages": 0})
    # a saved config (gate as a dict, no phase sections) loads
    saved = tmp_path / "old.json"
    saved.write_text(json.dumps({"data_dir": str(tmp_path), "gate": {"policy": "signals"}}))
    loaded = Config.load(saved)
    assert loaded.gate.policy == "signals" and loaded.extraction == ExtractionConfig()
    assert Config.load(config.save()).gate == config.gate


def test_updated_validates_like_a_new_config(tmp_path) -> None:
    config = Config(data_dir=tmp_path, api_key="sk-x")
    changed = config.updated(extract=False, gate=GateConfig(policy="audit"))
    assert changed.extract is False and changed.gate.policy == "audit" and config.extract is True
    assert changed.api_key.get_secret_value() == "sk-x"
    with pytest.raises(ConfigError, match="top_k"):
        config.updated(top_k="many")


def _turns(n: int) -> list[dict]:
    return [{"id": f"t{i}", "content": f"Message number {i} about the garden."} for i in range(n)]


def test_deliberation_settings_reach_the_deliberator(tmp_path) -> None:
    llm = ScriptedLLM(by_task={"deliberate": lambda r: '{"facts": []}', "answer": lambda r: "none"})
    memory = DualMemory(path=tmp_path, llm=llm, extract=False,
                        deliberation={"strategy": "scan", "chunk_messages": 5})
    memory.add(_turns(10), user_id="ann")
    memory.answer("What grows in the garden?", user_id="ann", mode="full")
    assert len(llm.calls_for("deliberate.extract")) == 2  # 10 turns in chunks of 5, not 1 of 60
    memory.close()


def test_extraction_settings_reach_the_extractor(tmp_path) -> None:
    llm = ScriptedLLM(by_task={"extract": lambda r: '{"facts": []}'})
    config = Config(data_dir=tmp_path, extraction=ExtractionConfig(batch_turns=2))
    memory = DualMemory(config, llm=llm)
    assert memory.add(_turns(5), user_id="ann").error is None
    assert len(llm.calls_for("extract")) == 3  # batches of 2, 2 and 1, not one of 10
    memory.close()
    assert DeliberationConfig().chunk_messages == 60 and ExtractionConfig().batch_turns == 10
    assert DeliberationConfig().strategy == "evidence"


def _imports(module: str, path: Path) -> set[str]:
    """The dualmem modules a module imports at run time (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(node) for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body for node in ast.walk(stmt)
    }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        found |= {f"{target}.{a.name}" for a in node.names} | {target}
    return found


def test_there_is_no_import_cycle_among_dualmem_modules() -> None:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    # an edge to an enclosing package is not a cycle: importing a submodule runs it first
    graph = {
        m: {d for d in _imports(m, p) if d in modules and d != m and not m.startswith(d + ".")}
        for m, p in modules.items()
    }
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph[module]):
            assert state.get(dep) != "open", f"import cycle: {' -> '.join([*trail, module, dep])}"
            if dep not in state:
                visit(dep, [*trail, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert graph["dualmem.config"] <= {"dualmem.errors", "dualmem.redact", "dualmem.types"}
    assert graph["dualmem.redact"] == set()  # a leaf: every layer may mask credentials
