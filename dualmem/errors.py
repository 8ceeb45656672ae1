"""The exception tree. Every error dualmem raises on purpose is a `DualMemError`.

    DualMemError
    ├── ConfigError            bad or missing configuration (incl. ModelNotFoundError)
    │   └── ModelNotFoundError a model file or package that is not installed
    ├── InvalidInputError      bad messages, questions, ids, timestamps (also a ValueError)
    ├── ScopeError             a call without a scope, or an unknown scope id
    ├── StorageError           the history or index could not be read or written
    └── LLMError               a model call failed after its retries
        └── LLMReplyError      the model answered, but not in the format asked for
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DualMemError",
    "InvalidInputError",
    "LLMError",
    "LLMReplyError",
    "ModelNotFoundError",
    "ScopeError",
    "StorageError",
]


class DualMemError(Exception):
    """Base class of every dualmem error."""


class ConfigError(DualMemError):
    """The configuration is invalid or incomplete."""


class ModelNotFoundError(ConfigError):
    """A model (GGUF file, model package) is missing."""


class InvalidInputError(DualMemError, ValueError):
    """An argument is malformed: the message says what to change."""


class ScopeError(InvalidInputError):
    """A call had no scope, or a scope id that is not valid."""


class StorageError(DualMemError):
    """The history store or memory index failed."""


class LLMError(DualMemError):
    """A model call failed (after retries where they apply)."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class LLMReplyError(LLMError):
    """The model replied, but the reply could not be parsed or validated."""

    def __init__(self, message: str, *, raw: str | None = None, usage: object = None) -> None:
        super().__init__(message, retryable=True)
        self.raw = raw
        #: tokens spent on the failed attempts (a `Usage`), so traces can still count them
        self.usage = usage
