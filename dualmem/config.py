"""One typed configuration, with offline defaults, readable from the environment."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .errors import ConfigError

__all__ = ["Config", "default_data_dir"]


_URLS = ("base_url", "history_url", "index_url")


def default_data_dir() -> Path:
    return Path(os.environ.get("DUALMEM_DATA_DIR", Path.home() / ".dualmem"))


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
    gate: dict[str, Any] = Field(default_factory=dict)

    def __repr_args__(self) -> Any:
        # URLs may carry passwords: repr/str show them masked
        from .backends import redact

        for name, value in super().__repr_args__():
            yield name, redact(value) if name in _URLS and value else value

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
        from .backends import redact

        path = path or self.data_dir / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.model_dump(mode="json", exclude={"api_key"})
        for key in _URLS:
            if data[key]:
                data[key] = redact(data[key])
        path.write_text(json.dumps(data, indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read dualmem config {path}: {e}") from e
