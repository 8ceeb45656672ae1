"""The OpenAI backend: OpenAI itself or any OpenAI-compatible server (`base_url`)."""

from __future__ import annotations

from typing import Any

from ..errors import LLMError
from ..types import TokenLogprob, Usage
from .base import BaseLLM, ChatRequest, Completion

__all__ = ["OpenAILLM"]


class OpenAILLM(BaseLLM):
    def __init__(
        self,
        model: str = "gpt-4o-mini",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        context_tokens: int = 128_000,
        json_response_format: bool | None = None,
        client: Any = None,
        max_retries: int = 3,
        timeout: float = 120.0,
    ) -> None:
        super().__init__(max_retries=max_retries, timeout=timeout)
        from openai import AsyncOpenAI

        self.model = model
        self.name = f"openai:{model}"
        self.context_tokens = context_tokens
        # response_format=json_object is OpenAI's; many compatible servers reject it
        self.json_response_format = base_url is None if json_response_format is None else json_response_format
        # retries are ours (tenacity in BaseLLM), so the client must not retry as well
        self.client = client or AsyncOpenAI(
            base_url=base_url, api_key=api_key or "sk-no-key", max_retries=0, timeout=timeout
        )

    async def _acomplete(self, request: ChatRequest) -> Completion:
        import openai

        kwargs: dict[str, Any] = dict(
            model=self.model, messages=request.messages, max_tokens=request.max_tokens,
            temperature=request.temperature,
        )
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.stop:
            kwargs["stop"] = request.stop
        if request.logprobs:
            kwargs.update(logprobs=True, top_logprobs=request.top_logprobs)
        if request.json_mode and self.json_response_format:
            kwargs["response_format"] = {"type": "json_object"}
        try:
            r = await self.client.chat.completions.create(**kwargs)
        except (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError,
                openai.InternalServerError) as e:
            raise LLMError(f"{self.name}: {type(e).__name__}: {self._safe(e)}", retryable=True) from None
        except openai.APIError as e:
            raise LLMError(f"{self.name}: {type(e).__name__}: {self._safe(e)}") from None
        except ValueError as e:  # a body that is not JSON (a proxy's error page): transient
            raise LLMError(f"{self.name}: unreadable reply ({type(e).__name__})", retryable=True) from None
        choices = getattr(r, "choices", None)  # a non-JSON content type comes back as str
        if not choices:
            raise LLMError(f"{self.name}: empty or unreadable reply (no choices)", retryable=True)
        choice = choices[0]
        tokens = None
        if choice.logprobs is not None and choice.logprobs.content:
            tokens = [
                TokenLogprob(
                    token=t.token, logprob=float(t.logprob),
                    top_logprobs={a.token: float(a.logprob) for a in (t.top_logprobs or [])},
                )
                for t in choice.logprobs.content
            ]
        usage = Usage()
        if r.usage is not None:
            usage = Usage(prompt_tokens=r.usage.prompt_tokens or 0,
                          completion_tokens=r.usage.completion_tokens or 0)
        return Completion(text=choice.message.content or "", logprobs=tokens, usage=usage,
                          model=r.model or self.model, finish_reason=choice.finish_reason)

    def _safe(self, e: Exception) -> str:
        # the SDK's messages carry status and body; a server may echo the key in the body
        text = str(getattr(e, "message", e))
        key = getattr(self.client, "api_key", None)
        if isinstance(key, str) and len(key) >= 8:
            text = text.replace(key, "***")
        return text[:300]
