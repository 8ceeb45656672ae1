"""Pick the history store and memory index a config names (defaults: SQLite + embedded Chroma)."""

from __future__ import annotations

from .config import Config
from .errors import ConfigError
from .history.base import HistoryStore
from .index.base import MemoryIndex

__all__ = ["make_history", "make_index"]


def make_history(config: Config) -> HistoryStore:
    url = config.history_url
    if url is None or url.startswith("sqlite:"):
        from .history.sqlite import SQLiteHistoryStore

        path = url.removeprefix("sqlite:///").removeprefix("sqlite:") if url else None
        return SQLiteHistoryStore(path or config.data_dir / "history.sqlite3")
    raise ConfigError(f"unsupported history_url {url!r}: use sqlite:///path")


def make_index(config: Config) -> MemoryIndex:
    from .embed import make_embedding
    from .index.chroma import ChromaMemoryIndex

    embedding = make_embedding(config.embedder, config.embedding_model, config.base_url)
    url = config.index_url
    if url is None:
        return ChromaMemoryIndex(config.data_dir / "chroma", embedding_function=embedding)
    raise ConfigError(f"unsupported index_url {url!r}")
