"""The OpenAI backend: OpenAI itself or any OpenAI-compatible server (`base_url`)."""

from __future__ import annotations

import logging
import re
from typing import Any

from ..errors import ConfigError, LLMError
from ..redact import install_log_filter, remember, scrub
from ..types import TokenLogprob, Usage
from .base import BaseLLM, ChatRequest, Completion

__all__ = ["OpenAILLM"]

log = logging.getLogger("dualmem")


def _names_format(message: str) -> bool:
    return "response_format" in message or "json_schema" in message


class OpenAILLM(BaseLLM):
    def __init__(
        self,
        model: str = "gpt-4o-mini",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        context_tokens: int = 128_000,
        json_response_format: bool | None = None,
        json_schema_format: bool = True,
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
        # response_format=json_schema: tried by default (OpenAI, vLLM, llama.cpp server and
        # Ollama accept it); a server that rejects it with a 400 naming it is not asked again
        self.json_schema_format = json_schema_format
        self._rejected: set[str] = set()
        # the key and a password in base_url are masked in replies, errors and the HTTP logs
        remember(keys=(api_key,), urls=(base_url,))
        install_log_filter()
        # retries are ours (tenacity in BaseLLM), so the client must not retry as well
        self.client = client or AsyncOpenAI(
            base_url=base_url, api_key=api_key or "sk-no-key", max_retries=0, timeout=timeout
        )

    async def _served_model(self) -> str:
        """`model="auto"`: the one model the server serves. llama.cpp's server names it by its
        GGUF path (`/v1/models`), which nobody types; a server with several must be told."""
        if self.model != "auto":
            return self.model
        import openai

        try:
            served = [m.id async for m in self.client.models.list()]
        except openai.APIError as e:
            message = f"{self.name}: cannot list the served models: {self._safe(e)}"
            raise LLMError(message, retryable=True) from None
        if len(served) != 1:
            raise ConfigError(
                f"model='auto' picks the server's only model, but it serves {len(served)}: "
                f"{served[:10]}; set DUALMEM_MODEL (or model=) to one of them"
            )
        self.model, self.name = served[0], f"openai:{served[0]}"
        return self.model

    async def _acomplete(self, request: ChatRequest) -> Completion:
        import openai

        kwargs: dict[str, Any] = dict(
            model=await self._served_model(), messages=request.messages, max_tokens=request.max_tokens,
            temperature=request.temperature,
        )
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.stop:
            kwargs["stop"] = request.stop
        if request.logprobs:
            kwargs.update(logprobs=True, top_logprobs=request.top_logprobs)
        for fmt in self._formats(request):
            kwargs.pop("response_format", None)
            if fmt is not None:
                kwargs["response_format"] = fmt
            try:
                r = await self.client.chat.completions.create(**kwargs)
                break
            except openai.BadRequestError as e:
                message = self._safe(e)
                if fmt is None or not _names_format(message):
                    raise LLMError(f"{self.name}: {type(e).__name__}: {message}") from None
                self._rejected.add(fmt["type"])
                log.info("%s rejected response_format %s (%s); falling back", self.name, fmt["type"], message)
            except (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError,
                    openai.InternalServerError) as e:
                raise LLMError(f"{self.name}: {type(e).__name__}: {self._safe(e)}", retryable=True) from None
            except openai.APIError as e:
                raise LLMError(f"{self.name}: {type(e).__name__}: {self._safe(e)}") from None
            except ValueError as e:  # a body that is not JSON (a proxy's error page): transient
                raise LLMError(f"{self.name}: unreadable reply ({type(e).__name__})",
                               retryable=True) from None
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

    def _formats(self, request: ChatRequest) -> list[dict[str, Any] | None]:
        """The response formats to try, strictest first; None (a plain reply) always last."""
        formats: list[dict[str, Any] | None] = []
        if request.json_mode:
            if (request.json_schema is not None and self.json_schema_format
                    and "json_schema" not in self._rejected):
                formats.append({"type": "json_schema", "json_schema": {
                    "name": re.sub(r"[^A-Za-z0-9_-]", "_", request.task)[:64] or "reply",
                    "schema": request.json_schema, "strict": False,
                }})
            if self.json_response_format and "json_object" not in self._rejected:
                formats.append({"type": "json_object"})
        return [*formats, None]

    def _safe(self, e: Exception) -> str:
        # the SDK's messages carry status and body; a server may echo the key in the body
        text = str(getattr(e, "message", e))
        key = getattr(self.client, "api_key", None)
        return scrub(text, key if isinstance(key, str) else "")[:300]
