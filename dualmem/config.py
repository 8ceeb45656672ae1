"""One typed configuration, with offline defaults, readable from the environment.

`Config` holds the settings of every phase: `gate` (`GateConfig`), `deliberation`
(`DeliberationConfig`) and `extraction` (`ExtractionConfig`), each validated where it is
defined; plain dicts are accepted for them, as in a saved `config.json`. URLs appear in reprs,
JSON and saved files only as `redact_url` (redact.py) masks them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_serializer

from .errors import ConfigError
from .redact import redact_url
from .types import Policy, SelectBy, StrategyName

__all__ = [
    "Config", "DeliberationConfig", "ExtractionConfig", "GateConfig", "default_data_dir", "redact_url",
]


_URLS = ("base_url", "history_url", "index_url")


def default_data_dir() -> Path:
    return Path(os.environ.get("DUALMEM_DATA_DIR", Path.home() / ".dualmem"))


class GateConfig(BaseModel):
    """The quality gate: its policy, thresholds and weights; `dualmem calibrate` fits them."""

    model_config = ConfigDict(extra="forbid")

    policy: Policy = "cascade"
    combine: Literal["any", "weighted"] = "weighted"
    entropy_threshold: float = 0.5
    coverage_threshold: float = 0.5
    consistency_threshold: float = 0.5
    sufficiency_threshold: float = 0.5
    recency_threshold: float = 0.5
    aggregation_threshold: float = 0.75
    # evidence signals whose failure escalates under every signal policy, whatever the score:
    # they judge what a fitted weight sees too rarely to learn (a "now" question answered from
    # older evidence, a list answered with one item)
    vetoes: list[Literal["sufficiency", "recency", "aggregation"]] = Field(
        default_factory=lambda: ["recency", "aggregation"]
    )
    # kinds of question that escalate under every signal policy, whatever the signals say:
    # those System 2 answers better on the whole, however confident the fast answer looks
    escalate_questions: list[Literal["temporal", "list", "now"]] = Field(default_factory=list)
    # a fast answer of more words than this escalates under every signal policy: the reader is
    # told to answer in at most `prompts.ANSWER_WORDS` (6), and a sentence answer is one that
    # System 2 reads again from focused lines and cuts to the words that answer. None: off
    escalate_long_answers: int | None = Field(None, ge=1)
    model: str | None = Field(None, description="a fitted gate model file; None: the packaged one")
    learned_threshold: float | None = Field(None, description="P(wrong) to escalate at; None: the model's")
    weights: dict[str, float] = Field(
        default_factory=lambda: {"entropy": 0.15, "coverage": 0.6, "consistency": 0.25}
    )
    score_threshold: float = 0.55
    band_low: float = 0.5
    band_high: float = 0.7
    samples: int = 0
    sample_temperature: float = 0.7
    on_unavailable: Literal["ignore", "escalate"] = "ignore"
    tiered: bool = True


#: records a partition of the embedded index holds before it moves into a Chroma collection of
#: its own (`index/small.py`): Chroma preallocates 100 vectors, so a smaller one is mostly empty
SMALL_PARTITION_LIMIT = 100


class DeliberationConfig(BaseModel):
    """System 2 over the raw history: its strategy, and the settings of D-Mem's full scan and
    its neighbours tier (the `scan` strategy)."""

    model_config = ConfigDict(extra="forbid")

    strategy: StrategyName = Field(
        default="evidence",
        description="evidence: search raw turns, read the best lines (built for small readers); "
        "scan: D-Mem's chunk scan after the neighbours tier",
    )
    select_lines: SelectBy = Field(
        default="rank",
        description="evidence: how the lines read are picked from the candidates: the model selects "
        "them by number (chunked listwise prompts), or their search rank alone (no model call)",
    )
    rank_lines: int = Field(default=16, ge=1, description="evidence, select_lines=rank: lines read")
    chunk_messages: int = Field(default=60, ge=1, description="messages per chunk (D-Mem: 60)")
    history_messages: int = Field(default=4, ge=0, description="read-only messages before a chunk")
    concurrency: int = Field(default=4, ge=1, description="chunks in flight at once")
    extract_threshold: float = Field(default=5, description="a chunk keeps facts scoring >= this")
    keep_threshold: float = Field(default=6, description="the reduce step keeps facts scoring >= this")
    filter_min_facts: int = Field(default=6, ge=1, description="an LLM filter runs from this many facts")
    neighbour_window: int = Field(default=2, ge=0, description="turns read around a memory's source")


class ExtractionConfig(BaseModel):
    """How `add` makes memories: extract dated facts, then reconcile them (Mem0's scheme)."""

    model_config = ConfigDict(extra="forbid")

    batch_turns: int = Field(default=10, ge=1, description="new turns per extraction call")
    recent_messages: int = Field(default=9, ge=1, description="earlier turns shown as context")
    known_memories: int = Field(default=10, ge=0, description="existing memories shown to extraction")
    neighbours: int = Field(default=5, ge=1, description="nearest memories a new fact is reconciled with")
    # D-Mem keeps update neighbours with cosine > 0.8; that misses changes such as "lives in
    # Lisbon" -> "moved to Porto" (0.78 with MiniLM; tests/data/temporal_changes.json), and a
    # wider net costs no extra call: one reconcile call covers every contested fact of a batch
    neighbour_similarity: float = Field(
        default=0.65, description="only neighbours with a cosine above this may be superseded"
    )
    # one retry: a malformed reply is rarely fixed by a third try, and each try can cost 384 tokens
    reply_retries: int = Field(default=1, ge=0, description="retries of a malformed reply")


class Config(BaseModel):
    """Everything a `DualMemory` needs. The defaults run offline on this machine.

    - `llm="local"` runs a GGUF in-process (`model`: "qwen2.5-0.5b" (default reader),
      "smollm2-135m" (fast, weak), or a path to any GGUF file).
    - `llm="openai"` uses the OpenAI client; `base_url` points it at any OpenAI-compatible
      server (vLLM, Ollama, llama.cpp server).
    - `history_url`/`index_url` select server backends; None = SQLite + embedded Chroma in
      `data_dir`.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    llm: Literal["local", "openai"] = "local"
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    n_ctx: int = 4096
    n_threads: int | None = None
    embedder: Literal["minilm", "openai"] = "minilm"
    embedding_model: str | None = None
    extract: bool = True
    #: with extract: raw turns stay searchable beside the facts (the mixed index)
    index_turns: bool = True
    top_k: int = 30
    history_url: str | None = None
    index_url: str | None = None
    #: the embedded index keeps a partition of at most this many records out of Chroma, whose
    #: every collection takes 168 KB however small (0: a Chroma collection per partition)
    small_partition_limit: int = Field(default=SMALL_PARTITION_LIMIT, ge=0)
    gate: GateConfig = Field(default_factory=GateConfig)
    deliberation: DeliberationConfig = Field(default_factory=DeliberationConfig)
    extraction: ExtractionConfig = Field(default_factory=ExtractionConfig)

    @field_serializer(*_URLS, when_used="json")
    def _masked(self, url: str | None) -> str | None:
        # JSON leaves the process (model_dump_json, a saved config.json): passwords masked;
        # in-process dumps keep them, so a copy of the config still connects
        return redact_url(url) if url else url

    def __repr_args__(self) -> Any:
        # URLs may carry passwords: repr/str show them masked
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name in _URLS and value else value

    def updated(self, **changes: Any) -> Config:
        """A copy with some settings changed, validated like a new `Config` (`ConfigError`)."""
        try:
            return type(self).model_validate({**dict(self), **changes})
        except ValidationError as e:
            raise ConfigError(f"invalid dualmem configuration: {e}") from e

    @classmethod
    def from_env(cls, **overrides: Any) -> Config:
        """Read DUALMEM_* variables; OPENAI_API_KEY plus a model name switches to OpenAI."""
        env = os.environ
        values: dict[str, Any] = {}
        for field, var in [
            ("data_dir", "DUALMEM_DATA_DIR"), ("llm", "DUALMEM_LLM"), ("model", "DUALMEM_MODEL"),
            ("base_url", "OPENAI_BASE_URL"), ("embedder", "DUALMEM_EMBEDDER"),
            ("embedding_model", "DUALMEM_EMBEDDING_MODEL"), ("history_url", "DUALMEM_HISTORY_URL"),
            ("index_url", "DUALMEM_INDEX_URL"), ("n_ctx", "DUALMEM_N_CTX"),
            ("small_partition_limit", "DUALMEM_SMALL_PARTITION_LIMIT"),
        ]:
            if env.get(var):
                values[field] = env[var]
        if env.get("DUALMEM_EXTRACT"):
            values["extract"] = env["DUALMEM_EXTRACT"].lower() not in ("0", "false", "no")
        if env.get("DUALMEM_INDEX_TURNS"):
            values["index_turns"] = env["DUALMEM_INDEX_TURNS"].lower() not in ("0", "false", "no")
        if env.get("OPENAI_API_KEY"):
            values["api_key"] = env["OPENAI_API_KEY"]
            if "llm" not in values and (env.get("OPENAI_MODEL") or env.get("OPENAI_BASE_URL")):
                values["llm"] = "openai"
        if values.get("llm") == "openai" and "model" not in values:
            values["model"] = env.get("OPENAI_MODEL", "gpt-4o-mini")
        values.update(overrides)
        try:
            return cls(**values)
        except Exception as e:  # pydantic names the field and the problem
            raise ConfigError(f"invalid dualmem configuration: {e}") from e

    def save(self, path: Path | None = None) -> Path:
        """Write the config as JSON (the data dir by default) without secrets: no API key, and
        passwords in URLs masked (give them again through the environment)."""
        path = path or self.data_dir / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.model_dump(mode="json", exclude={"api_key"})
        path.write_text(json.dumps(data, indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read dualmem config {path}: {e}") from e
