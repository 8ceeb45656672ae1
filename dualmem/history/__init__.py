"""The history store: raw turns, the lossless source of truth."""

from .base import HistoryStore, TurnQuery
from .sqlite import SQLiteHistoryStore

__all__ = ["HistoryStore", "SQLiteHistoryStore", "TurnQuery"]
