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


# ---------------------------------------------------------------- issue 20: five more forms

FORMS = {
    "libpq keyword DSN": "host=db.internal port=5432 password=pw-SECRET1 dbname=db user=u",
    "quoted DSN value": "host=db.internal password='pw SECRET1 x' dbname=db",
    "password in the query": "postgresql://u@db.internal/db?password=pw-SECRET1",
    "sslpassword in the query": "postgresql://u@db.internal/db?sslmode=require&sslpassword=pw-SECRET1",
    "encoded query name": "postgresql://u@db.internal/db?pass%77ord=pw-SECRET1",
    "bad percent-escape": "postgresql://u:p%zzpw-SECRET1@db.internal/db",
    "percent-encoded password": "postgresql://u:pw%2DSECRET1@db.internal/db",
}


@pytest.mark.parametrize("url", FORMS.values(), ids=FORMS.keys())
def test_every_url_form_is_masked_in_repr_str_json_and_saved_config(tmp_path, url) -> None:
    config = Config(data_dir=tmp_path, history_url=url, index_url=url.replace("db.internal", "c"))
    shown = [repr(config), str(config), config.model_dump_json(), config.save().read_text()]
    for text in shown:
        assert "SECRET1" not in text, text[:400]
    assert "***" in shown[2]
    assert config.history_url == url  # the live config still connects


@pytest.mark.parametrize("url", [
    "postgresql://u:p%zzpw-SECRET1@127.0.0.1:9/db",
    "postgresql://u@127.0.0.1:9/db?password=pw-SECRET1",
    "host=127.0.0.1 port=9 password=pw-SECRET1 dbname=db connect_timeout=2",
], ids=["bad escape", "query", "keyword DSN"])
def test_driver_errors_do_not_echo_the_password(url) -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StorageError) as info:
        make_history(Config(history_url=url))
    for text in [str(info.value), repr(info.value), *chain(info.value)]:
        assert "SECRET1" not in text and "zzpw" not in text, text


async def test_userinfo_in_the_base_url_is_not_logged_by_the_http_client(caplog) -> None:
    caplog.set_level(logging.INFO)
    with FakeOpenAI(["ok"]) as server:
        base = server.url.replace("http://", "http://proxyuser:proxySECRET2@")
        llm = OpenAILLM("fake", api_key=KEY, base_url=base, timeout=2)
        assert (await llm.acomplete(request())).text == "hi"
    logged = [f"{r.name} {r.getMessage()}" for r in caplog.records]
    assert any(line.startswith("httpx") and "HTTP Request" in line for line in logged)  # it did log
    assert not [line for line in logged if "proxySECRET2" in line]


async def test_a_server_echoing_the_key_gets_it_into_no_answer_or_memory(tmp_path) -> None:
    with FakeOpenAI(["echo-key"] * 4) as server:
        memory = DualMemory(path=tmp_path, llm=server.llm(), extract=True, index_turns=False)
        result = await memory.aadd("I play the violin.", user_id="mel")
        assert result.error is None and result.added
        answer = await memory.aanswer("What do I play?", user_id="mel", mode="fast")
        server.script[:] = ["echo-key"] * 4
    texts = [answer.text, answer.model_dump_json(), *(m.text for m in memory.get_all(user_id="mel"))]
    assert "***" in answer.text
    clean(*texts)
    memory.close()
    # nor in any file of the data dir
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
