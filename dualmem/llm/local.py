"""`LocalLLM`: an in-process GGUF model (llama-cpp-python) with token logprobs.

llama-cpp-python only returns logprobs with `logits_all=True`, which keeps a full-vocabulary
row for every prompt token (2.5 GB for Qwen's 152K vocab at n_ctx 4096, and ~40% of the wall
time). Only the generated tokens' distributions are needed, so we wrap the instance's
`sample()` (called once per generated token by `Llama.generate`): it sees the chosen token id,
and the raw logits of the position just sampled are still in the context
(`llama_get_logits_ith(ctx, -1)`). The result matches llama-cpp-python's own logprobs to
within 1e-6 (see tests/test_local_llm.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, LLMError, ModelNotFoundError
from ..models import INSTALL_HINT, QWEN, SMOLLM2, resolve_model
from ..types import TokenLogprob, Usage
from .base import BaseLLM, ChatRequest, Completion

__all__ = ["LocalLLM"]

log = logging.getLogger("dualmem")


class _Cancelled(Exception):
    """Raised inside generation when the awaiting coroutine was cancelled (timeout)."""


class LocalLLM(BaseLLM):
    supports_logprobs = True

    def __init__(
        self,
        model: str = QWEN,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        seed: int = 0,
        max_retries: int = 0,
        timeout: float = 600.0,
    ) -> None:
        super().__init__(max_retries=max_retries, timeout=timeout)
        self.model = model
        self.name = f"local:{model if model in (QWEN, SMOLLM2) else Path(model).stem}"
        self.context_tokens = n_ctx
        # llama.cpp defaults to cpu_count // 2 (one per physical core on SMT machines); on the
        # 2-vCPU machines we run on that halves the speed, so use every CPU we may run on.
        self.n_threads = n_threads or min(_usable_cpus(), 8)
        self.seed = seed
        self._llm: Any = None
        self._formatter: Any = None
        self._lock = threading.Lock()  # a llama.cpp context is not thread-safe
        self._steps: list[tuple[int, float, list[tuple[int, float]]]] | None = None
        self._top_k = 0
        self._cancel: threading.Event | None = None
        self._grammars: dict[str, Any] = {}

    # -- loading -------------------------------------------------------------------------

    def load(self) -> None:
        """Resolve and load the model now (otherwise the first call does it)."""
        with self._lock:
            self._load()

    def _load(self) -> Any:
        if self._llm is not None:
            return self._llm
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as e:
            raise ModelNotFoundError(
                f"the local model needs llama-cpp-python: {INSTALL_HINT} ({e})"
            ) from None
        path = resolve_model(self.model)
        try:
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=self.context_tokens, n_threads=self.n_threads,
                seed=self.seed, logits_all=False, verbose=False,
            )
        except (ValueError, RuntimeError) as e:
            raise ModelNotFoundError(f"cannot load {path} with llama.cpp: {e}") from e
        template = llm.metadata.get("tokenizer.chat_template")
        if template:
            # Same formatter llama-cpp builds from the GGUF, installed as the chat handler so
            # that counting prompt tokens beforehand sees exactly the prompt that is run.
            eos, bos = llm.token_eos(), llm.token_bos()
            self._formatter = Jinja2ChatFormatter(
                template=template, eos_token=_special_text(llm, eos),
                bos_token=_special_text(llm, bos), stop_token_ids=[eos],
            )
            llm.chat_handler = self._formatter.to_chat_handler()
        n_vocab = llm.n_vocab()
        original_sample = llm.sample

        def sample(*args: Any, **kwargs: Any) -> int:
            if self._cancel is not None and self._cancel.is_set():
                raise _Cancelled
            if kwargs.get("grammar") is not None and kwargs.get("temp") == 0.0 and llm._sampler is not None:
                token = _greedy_under_grammar(llm, n_vocab)
            else:
                token = original_sample(*args, **kwargs)
            if self._steps is not None:
                ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
                logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,))
                self._steps.append(_logprobs(logits, int(token), self._top_k))
            return token

        llm.sample = sample
        self._llm = llm
        return llm

    # -- calls ---------------------------------------------------------------------------

    async def _acomplete(self, request: ChatRequest) -> Completion:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._complete_blocking, request, cancel)
        except asyncio.CancelledError:
            cancel.set()  # the worker thread stops at its next token and frees the model
            raise

    def _complete_blocking(self, request: ChatRequest, cancel: threading.Event) -> Completion:
        with self._lock:
            if cancel.is_set():
                raise LLMError(f"{self.name}: cancelled before it started")
            llm = self._load()
            self._check_fits(llm, request)
            kwargs: dict[str, Any] = dict(
                messages=request.messages, max_tokens=request.max_tokens,
                temperature=request.temperature, stop=request.stop or [],
                seed=request.seed if request.seed is not None else self.seed,
            )
            if request.json_mode:
                # Grammar-constrained JSON (llama.cpp GBNF): under the reply's own schema when
                # there is one, so a small model cannot drop a key or invent a shape. Logprobs
                # stay those of the unconstrained model, like llama-cpp-python's own:
                # top_logprobs may list tokens the grammar would not allow.
                grammar = self._grammar(request.json_schema) if request.json_schema else None
                if grammar is not None:
                    kwargs["grammar"] = grammar
                else:
                    kwargs["response_format"] = {"type": "json_object"}
            self._steps = [] if request.logprobs else None
            self._top_k = max(0, request.top_logprobs)
            self._cancel = cancel
            try:
                r = llm.create_chat_completion(**kwargs)
                steps = self._steps
            except _Cancelled:
                raise LLMError(f"{self.name}: cancelled") from None
            except ValueError as e:
                if "context window" in str(e):
                    raise InvalidInputError(f"{self.name}: {e}; shorten the messages") from None
                raise LLMError(f"{self.name}: {type(e).__name__}: {e}") from e
            except Exception as e:  # llama.cpp failures surface as assorted exceptions
                raise LLMError(f"{self.name}: {type(e).__name__}: {e}") from e
            finally:
                self._steps, self._cancel = None, None
            choice = r["choices"][0]
            text = choice["message"].get("content") or ""
            if steps is not None and not steps and r["usage"]["completion_tokens"]:
                # our sample() hook was bypassed: llama-cpp-python's internals changed
                raise LLMError(f"{self.name}: no logprobs captured (llama-cpp-python version?)")
            logprobs = self._token_logprobs(llm, steps, text) if steps is not None else None
        usage = r.get("usage") or {}
        return Completion(
            text=text, logprobs=logprobs, model=self.name, finish_reason=choice["finish_reason"],
            usage=Usage(prompt_tokens=usage.get("prompt_tokens", 0),
                        completion_tokens=usage.get("completion_tokens", 0)),
        )

    def _grammar(self, schema: dict[str, Any]) -> Any:
        """The GBNF grammar of a JSON schema, built once per schema; None (plain JSON mode) if
        llama.cpp's converter cannot express it."""
        key = json.dumps(schema)  # not sorted: the grammar writes keys in this order
        if key not in self._grammars:
            from llama_cpp import LlamaGrammar

            try:
                self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
            except Exception as e:  # the converter raises assorted errors on schemas it lacks
                log.warning("%s: no grammar for schema (%s); decoding plain JSON", self.name, e)
                self._grammars[key] = None
        return self._grammars[key]

    def _check_fits(self, llm: Any, request: ChatRequest) -> None:
        if self._formatter is None:
            return  # no chat template in the GGUF: llama-cpp's ValueError is mapped instead
        try:
            formatted = self._formatter(messages=request.messages)
        except Exception as e:  # the template is fixed, so it is the messages it rejects
            raise InvalidInputError(f"{self.name}: cannot format the messages: {e}") from None
        n_prompt = len(llm.tokenize(formatted.prompt.encode("utf-8"),
                                    add_bos=not formatted.added_special, special=True))
        if n_prompt + request.max_tokens > self.context_tokens:
            raise InvalidInputError(
                f"{self.name}: the prompt is {n_prompt} tokens and max_tokens is "
                f"{request.max_tokens}, more than the context window of "
                f"{self.context_tokens} tokens; shorten the messages or raise n_ctx"
            )

    @staticmethod
    def _token_logprobs(
        llm: Any, steps: list[tuple[int, float, list[tuple[int, float]]]], text: str
    ) -> list[TokenLogprob]:
        # Keep the tokens that make up the returned text: the end-of-turn token (empty) and
        # tokens of a matched stop string (cut from the text) start at or past its end.
        end, pos, out = len(text.encode("utf-8")), 0, []
        for token, logprob, top in steps:
            if pos >= end:
                break
            piece = llm.detokenize([token])
            pos += len(piece)  # bytes, as a token may hold part of a UTF-8 character
            alternatives: dict[str, float] = {}
            for alt, alt_logprob in top:
                alternatives.setdefault(_text(llm, alt), alt_logprob)
            out.append(TokenLogprob(token=_text(llm, token),
                                    logprob=logprob, top_logprobs=alternatives))
        return out


def _logprobs(logits: np.ndarray, token: int, k: int) -> tuple[int, float, list[tuple[int, float]]]:
    """The chosen token's logprob and the top-k (id, logprob).

    Only log-sum-exp needs the whole row; it is summed in float64 for stability. Not building
    a full float64 log-softmax row keeps this ~2 ms per token at Qwen's 152K vocab.
    """
    m = float(logits.max())
    lse = m + float(np.log(np.exp(logits - m).sum(dtype=np.float64)))
    top: list[tuple[int, float]] = []
    if k > 0:
        ids = np.argpartition(logits, -k)[-k:] if k < logits.size else np.arange(logits.size)
        ids = ids[np.argsort(-logits[ids], kind="stable")]
        top = [(int(i), float(logits[i]) - lse) for i in ids]
    return token, float(logits[token]) - lse, top


_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


def _greedy_under_grammar(llm: Any, n_vocab: int) -> int:
    """The token llama.cpp's greedy sampler would pick under the grammar, checked the cheap way.

    llama-cpp-python's sampler chain runs the grammar over all 152K candidates of Qwen's
    vocabulary at every step, which made schema-decoded replies ~15x slower than plain ones
    (0.6 against 10 tokens/s on a loaded machine). The best raw token is almost always one the
    grammar allows, and then it is also the best allowed token: so the grammar is asked about
    that one token first, and run over the whole vocabulary only when it refuses it (what
    llama.cpp's own `common_sampler` does). The chosen token is accepted by the whole chain,
    which advances the grammar, as the chain's own sampling would."""
    import llama_cpp

    chain = llm._sampler.sampler
    grammar = next(
        g for i in range(llama_cpp.llama_sampler_chain_n(chain))
        if llama_cpp.llama_sampler_name(g := llama_cpp.llama_sampler_chain_get(chain, i)) == b"grammar"
    )
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
    token = int(np.argmax(logits))
    one = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, float(logits[token]), 0.0))
    allowed = _apply(grammar, one, 1)[0]
    if not np.isfinite(allowed["logit"]):
        every = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        every["id"], every["logit"] = np.arange(n_vocab), logits
        data = every.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        masked = _apply(grammar, data, n_vocab)
        token = int(masked["id"][np.argmax(masked["logit"])])
    llama_cpp.llama_sampler_accept(chain, token)
    return token


def _apply(sampler: Any, data: Any, size: int) -> np.ndarray:
    """Run one llama.cpp sampler over candidates in place; their (id, logit, p) rows after."""
    import llama_cpp

    array = llama_cpp.llama_token_data_array(
        ctypes.cast(data, ctypes.POINTER(llama_cpp.llama_token_data)), size, -1, False)
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
    buffer = (llama_cpp.llama_token_data * array.size).from_address(ctypes.addressof(array.data.contents))
    return np.frombuffer(buffer, dtype=_TOKEN_DATA, count=array.size)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on macOS/Windows
        return os.cpu_count() or 1


def _text(llm: Any, token: int) -> str:
    return llm.detokenize([token]).decode("utf-8", errors="replace")


def _special_text(llm: Any, token: int) -> str:
    return "" if token < 0 else llm.detokenize([token], special=True).decode("utf-8", "replace")
