"""Secrets: API keys and URL passwords never appear in reprs, saved config, logs (DEBUG,
every logger), error messages, tracebacks or answer traces, even when a server echoes the
Authorization header back in its error body.
"""

from __future__ import annotations

import json
import logging

import pytest

from dualmem import Config, ConfigError, DualMemory, LLMError, StorageError
from dualmem.backends import chroma_http_client, make_history
from dualmem.llm.openai import OpenAILLM
from dualmem.testing import ScriptedLLM

from .test_faults import FakeOpenAI, request

KEY = "sk-test-0123456789"  # what FakeOpenAI.llm() sends
SECRETS = (KEY, "pgSECRETpw", "chromaSECRETtok")
URLS = {"history_url": "postgresql://dual:pgSECRETpw@db.internal:5432/mem",
        "index_url": "http://dual:chromaSECRETtok@chroma.internal:8000",
        "base_url": "http://proxy:pgSECRETpw@llm.internal/v1"}


def chain(e: BaseException | None) -> list[str]:
    """The messages a traceback of `e` prints (its cause and context chain)."""
    out = []
    while e is not None:
        out.append(f"{type(e).__name__}: {e}")
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return out


def clean(*texts: object) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text), f"secret leaked in: {str(text)[:300]}"


@pytest.fixture(autouse=True)
def _everything_at_debug(caplog):
    caplog.set_level(logging.DEBUG)  # the root logger: openai, httpx, httpcore, chromadb, dualmem
    yield
    clean(*(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records))


def test_config_hides_the_key_and_url_passwords(tmp_path) -> None:
    config = Config(data_dir=tmp_path, api_key=KEY, **URLS)
    clean(repr(config), str(config), config.model_dump_json(exclude={"history_url", "index_url", "base_url"}))
    saved = config.save()
    clean(saved.read_text())
    assert json.loads(saved.read_text())["history_url"] == "postgresql://dual:***@db.internal:5432/mem"
    loaded = Config.load(saved)
    assert loaded.api_key is None and loaded.n_ctx == config.n_ctx
    assert config.api_key.get_secret_value() == KEY  # still usable in memory


def test_config_from_env_and_its_errors(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("DUALMEM_HISTORY_URL", URLS["history_url"])
    config = Config.from_env(data_dir=tmp_path)
    assert config.api_key.get_secret_value() == KEY
    clean(repr(config), config.save().read_text())
    monkeypatch.setenv("DUALMEM_N_CTX", "lots")
    with pytest.raises(ConfigError) as info:
        Config.from_env(data_dir=tmp_path)
    clean(info.value, *chain(info.value))


def test_backend_errors_mask_url_passwords(monkeypatch) -> None:
    with pytest.raises(ConfigError) as bad_scheme:
        make_history(Config(history_url="mysql://dual:pgSECRETpw@db/mem"))
    monkeypatch.setenv("DUALMEM_CHROMA_TOKEN", "chromaSECRETtok")
    with pytest.raises(StorageError) as unreachable:
        chroma_http_client("http://dual:chromaSECRETtok@127.0.0.1:9")
    for e in (bad_scheme.value, unreachable.value):
        assert "***" in str(e)
        clean(e, *chain(e))


def test_openai_backend_repr_and_name() -> None:
    llm = OpenAILLM("gpt-4o-mini", api_key=KEY, base_url="http://127.0.0.1:9/v1")
    clean(repr(llm), str(llm), llm.name, repr(llm.client))


async def test_an_echoed_authorization_header_is_redacted_everywhere() -> None:
    with FakeOpenAI(["echo-auth"]) as server:
        with pytest.raises(LLMError) as info:
            await server.llm().acomplete(request())
    headers = {k.lower(): v for k, v in server.requests[0]["headers"].items()}
    assert headers["authorization"] == f"Bearer {KEY}"  # the key was sent
    assert "Bearer ***" in str(info.value)  # and the echo was masked
    clean(info.value, repr(info.value), *chain(info.value))


async def test_successful_and_failing_calls_log_no_key(caplog) -> None:
    with FakeOpenAI(["ok", 500, 429, "garbage"]) as server:
        llm = server.llm(max_retries=0)
        assert (await llm.acomplete(request())).text == "hi"
        for _ in range(3):
            with pytest.raises(LLMError) as info:
                await llm.acomplete(request())
            clean(info.value)
    assert any(r.name.startswith(("openai", "httpx", "httpcore")) for r in caplog.records)  # it did log


async def test_traces_and_warnings_of_dualmemory_carry_no_key(tmp_path, caplog) -> None:
    # the audit call fails with the echoed key; the trace explains it, masked
    DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False).add("I play the violin.", user_id="mel")
    with FakeOpenAI(["ok", "echo-auth", "ok"]) as server:
        memory = DualMemory(path=tmp_path, llm=server.llm(), extract=False)
        answer = await memory.aanswer("What do I play?", user_id="mel", policy="audit")
        assert "audit call failed" in answer.reason and "Bearer ***" in answer.reason
        clean(answer.model_dump_json())
        memory.config.extract = True
        with FakeOpenAI(["echo-auth"]) as failing:
            memory._llm = failing.llm(max_retries=0)
            result = await memory.aadd("I also play the cello.", user_id="mel")
        assert result.error and "Bearer ***" in result.error
        clean(result.error)
    assert any("extraction failed" in r.getMessage() for r in caplog.records)
