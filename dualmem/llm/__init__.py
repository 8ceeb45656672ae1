"""LLM backends behind one protocol (`BaseLLM`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import BaseLLM, ChatRequest, Completion, parse_json_reply

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["BaseLLM", "ChatRequest", "Completion", "make_llm", "parse_json_reply"]


def make_llm(config: Config) -> BaseLLM:
    """The model the config names: OpenAI(-compatible) or the in-process local model."""
    if config.llm == "openai":
        from .openai import OpenAILLM

        return OpenAILLM(
            config.model or "gpt-4o-mini",
            base_url=config.base_url,
            api_key=config.api_key.get_secret_value() if config.api_key else None,
        )
    from .local import LocalLLM

    return LocalLLM(config.model or "qwen2.5-0.5b", n_ctx=config.n_ctx, n_threads=config.n_threads)
