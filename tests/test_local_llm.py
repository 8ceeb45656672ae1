"""LocalLLM (llama-cpp-python) and the model files behind it.

Unmarked tests are fast (no model). `local_model` tests run SmolLM2-135M (fast) and, once,
the real Qwen2.5-0.5B assembly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys

import pytest

from dualmem import models
from dualmem.errors import InvalidInputError, LLMError, ModelNotFoundError
from dualmem.llm.base import ChatRequest
from dualmem.llm.local import LocalLLM, _logprobs

QA = [
    {"role": "system", "content": "Answer the question using only the context. Be brief."},
    {"role": "user", "content": "Context: Alice moved to Paris in 2021.\nQuestion: Where did Alice move?"},
]


# -- resolve_model (fast) --------------------------------------------------------------------


def test_missing_path_raises(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFoundError, match="nope.gguf"):
        models.resolve_model(str(missing))


def test_existing_path_is_returned(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    assert models.resolve_model(str(f)) == f


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(models, "_SMOLLM2_PACKAGE", "no_such_package_dualmem_test")
    with pytest.raises(ModelNotFoundError, match=r'pip install "dualmem\[local\]"'):
        models.resolve_model(models.SMOLLM2)


def test_missing_qwen_part_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("DUALMEM_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(models, "_QWEN_PACKAGES", [("no_such_package_dualmem_test", "x.bin")])
    with pytest.raises(ModelNotFoundError, match=r"pip install"):
        models.resolve_model(models.QWEN)


@pytest.fixture
def fake_qwen(monkeypatch, tmp_path):
    """Three tiny part files standing in for the six Qwen chunk packages."""
    parts_dir, cache = tmp_path / "parts", tmp_path / "cache"
    parts_dir.mkdir()
    parts = []
    for i, data in enumerate([b"GGUF-part-one|", b"part-two|" * 1000, b"end"]):
        p = parts_dir / f"part{i}.bin"
        p.write_bytes(data)
        parts.append(p)
    whole = b"".join(p.read_bytes() for p in parts)
    calls = []

    def fake_parts():
        calls.append(1)
        return parts

    monkeypatch.setenv("DUALMEM_MODEL_DIR", str(cache))
    monkeypatch.setattr(models, "_qwen_parts", fake_parts)
    monkeypatch.setattr(models, "QWEN_SHA256", hashlib.sha256(whole).hexdigest())
    monkeypatch.setattr(models, "QWEN_SIZE", len(whole))
    return cache, whole, calls


def test_qwen_assembly_concatenates_and_verifies(fake_qwen):
    cache, whole, calls = fake_qwen
    path = models.resolve_model(models.QWEN)
    assert path.parent == cache and path.read_bytes() == whole
    assert (cache / (path.name + ".sha256")).read_text().strip() == models.QWEN_SHA256
    assert sorted(p.name for p in cache.iterdir()) == [path.name, path.name + ".sha256"]
    assert len(calls) == 1


def test_qwen_cached_file_is_reused(fake_qwen, monkeypatch):
    cache, whole, calls = fake_qwen
    path = models.resolve_model(models.QWEN)
    mtime = path.stat().st_mtime_ns
    assert models.resolve_model(models.QWEN) == path
    assert len(calls) == 1 and path.stat().st_mtime_ns == mtime  # parts not even located

    path.write_bytes(whole[:-1])  # a truncated file is rebuilt
    assert models.resolve_model(models.QWEN).read_bytes() == whole
    assert len(calls) == 2


def test_qwen_sha_mismatch_raises_and_leaves_no_file(fake_qwen, monkeypatch):
    cache, _, _ = fake_qwen
    monkeypatch.setattr(models, "QWEN_SHA256", "0" * 64)
    with pytest.raises(ModelNotFoundError, match="sha256"):
        models.resolve_model(models.QWEN)
    assert list(cache.iterdir()) == []


def test_pinned_qwen_hash_matches_stack_notes():
    assert models.QWEN_SHA256.startswith("1d961463") and models.QWEN_SHA256.endswith("ff32")


# -- LocalLLM without a model (fast) --------------------------------------------------------


def test_name_and_context():
    assert LocalLLM().name == "local:qwen2.5-0.5b"
    assert LocalLLM("smollm2-135m").name == "local:smollm2-135m"
    llm = LocalLLM("/models/My-Model.Q4_K_M.gguf", n_ctx=2048)
    assert llm.name == "local:My-Model.Q4_K_M" and llm.context_tokens == 2048
    assert llm.supports_logprobs


def test_missing_llama_cpp_raises_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(ModelNotFoundError, match=r'pip install "dualmem\[local\]"'):
        LocalLLM("smollm2-135m").complete(ChatRequest(messages=QA))


def test_logprobs_math_matches_float64_log_softmax():
    import numpy as np

    logits = np.random.default_rng(0).normal(0, 4, 1000).astype(np.float32)
    x = logits.astype(np.float64)
    ref = x - x.max() - np.log(np.exp(x - x.max()).sum())
    token, logprob, top = _logprobs(logits, 7, 5)
    assert token == 7 and logprob == pytest.approx(ref[7], abs=1e-6)
    assert [i for i, _ in top] == list(np.argsort(-ref)[:5])
    assert [lp for _, lp in top] == pytest.approx(sorted(ref, reverse=True)[:5], abs=1e-6)
    assert _logprobs(logits, 7, 0)[2] == []


class _FakeTokenizer:
    pieces = {1: b"Par", 2: b"is", 3: b".", 4: b"\n\n", 5: b"", 6: b"\xc3", 7: b"\xa9"}

    def detokenize(self, ids, special=False):
        return b"".join(self.pieces[i] for i in ids)


@pytest.mark.parametrize(
    ("ids", "text", "kept"),
    [
        ([1, 2, 3, 5], "Paris.", [1, 2, 3]),  # end-of-turn token (empty) dropped
        ([1, 2, 3], "Paris.", [1, 2, 3]),  # max_tokens: all kept
        ([1, 2, 4, 3], "Paris", [1, 2]),  # stop string "\n\n" cut from the text
        ([1, 2, 6, 7], "Parisé", [1, 2, 6, 7]),  # a character split over two tokens
        ([5], "", []),
    ],
)
def test_token_logprobs_follow_the_returned_text(ids, text, kept):
    steps = [(i, -0.5, [(i, -0.5), (3, -1.0)]) for i in ids]
    out = LocalLLM._token_logprobs(_FakeTokenizer(), steps, text)
    assert [t.token for t in out] == [
        _FakeTokenizer.pieces[i].decode("utf-8", errors="replace") for i in kept
    ]
    assert all(t.logprob == -0.5 and len(t.top_logprobs) >= 1 for t in out)


# -- SmolLM2 (local_model) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol():
    pytest.importorskip("llama_cpp")
    llm = LocalLLM("smollm2-135m", n_ctx=1024)
    llm.load()
    return llm


@pytest.mark.local_model
def test_returns_text_logprobs_and_usage(smol):
    c = smol.complete(ChatRequest(messages=QA, max_tokens=24, logprobs=True, top_logprobs=5))
    assert c.text.strip() and c.finish_reason == "stop"
    assert c.usage.prompt_tokens > 20 and c.usage.calls == 1
    # one entry per generated token (the end-of-turn token is not part of the text)
    assert c.logprobs is not None and len(c.logprobs) == c.usage.completion_tokens
    assert "".join(t.token for t in c.logprobs) == c.text
    for t in c.logprobs:
        assert t.logprob <= 0 and len(t.top_logprobs) == 5
        assert t.logprob <= max(t.top_logprobs.values()) + 1e-9
    assert c.logprobs[0].top_logprobs[c.logprobs[0].token] == pytest.approx(c.logprobs[0].logprob)


@pytest.mark.local_model
def test_logprobs_match_llama_cpp_logits_all(smol):
    from llama_cpp import Llama

    ref = Llama(model_path=str(models.resolve_model(models.SMOLLM2)), n_ctx=1024,
                n_threads=smol.n_threads, logits_all=True, verbose=False, seed=0)
    r = ref.create_chat_completion(messages=QA, max_tokens=16, temperature=0.0,
                                   logprobs=True, top_logprobs=5)
    expected = r["choices"][0]["logprobs"]["content"]
    c = smol.complete(ChatRequest(messages=QA, max_tokens=16, logprobs=True, top_logprobs=5))
    assert c.text == r["choices"][0]["message"]["content"]
    assert [t.token for t in c.logprobs] == [e["token"] for e in expected]
    for got, exp in zip(c.logprobs, expected, strict=True):
        assert got.logprob == pytest.approx(exp["logprob"], abs=1e-3)
        ref_top = {a["token"]: a["logprob"] for a in exp["top_logprobs"]}
        assert set(got.top_logprobs) == set(ref_top)
        for tok, lp in ref_top.items():
            assert got.top_logprobs[tok] == pytest.approx(lp, abs=1e-3)


@pytest.mark.local_model
def test_length_and_stop_strings(smol):
    c = smol.complete(ChatRequest(messages=QA, max_tokens=3, logprobs=True))
    assert c.finish_reason == "length" and c.usage.completion_tokens == 3
    assert len(c.logprobs) == 3 and "".join(t.token for t in c.logprobs) == c.text

    full = smol.complete(ChatRequest(messages=QA, max_tokens=24)).text
    word = " " + full.split()[2]  # stop at the third word
    c = smol.complete(ChatRequest(messages=QA, max_tokens=24, logprobs=True, stop=[word]))
    assert c.text == full[: full.index(word)] and c.finish_reason == "stop"
    assert "".join(t.token for t in c.logprobs) == c.text  # no logprobs for the stop string


@pytest.mark.local_model
def test_no_logprobs_unless_asked(smol):
    c = smol.complete(ChatRequest(messages=QA, max_tokens=8))
    assert c.logprobs is None and c.text


@pytest.mark.local_model
def test_json_mode_returns_json_with_logprobs(smol):
    messages = [
        {"role": "system", "content": 'Reply with a JSON object {"answer": "..."}.'},
        QA[1],
    ]
    c = smol.complete(ChatRequest(messages=messages, max_tokens=48, json_mode=True, logprobs=True))
    assert isinstance(json.loads(c.text), dict)
    assert c.logprobs and "".join(t.token for t in c.logprobs) == c.text


@pytest.mark.local_model
@pytest.mark.parametrize("reply", ["extract", "reconcile", "audit", "facts"])
def test_structured_replies_are_decoded_under_their_schema(smol, reply):
    # under the grammar made from the pydantic model a reply has the model's shape; what the
    # grammar cannot prevent is a reply cut by max_tokens (a 135M model may write one long string)
    from dualmem.answering.deliberate.scan import _FactsReply
    from dualmem.answering.gate.checks import _AuditReply
    from dualmem.ingest.extract import ExtractReply, ReconcileReply
    from dualmem.llm.base import parse_json_reply, reply_schema

    schema = {"extract": ExtractReply, "reconcile": ReconcileReply, "audit": _AuditReply,
              "facts": _FactsReply}[reply]
    messages = [{"role": "system", "content": "Reply with JSON."},
                {"role": "user", "content": "Alice moved to Paris on 2021-03-01. She has a dog."}]
    c = smol.complete(ChatRequest(messages=messages, max_tokens=200, json_mode=True,
                                  json_schema=reply_schema(schema)))
    if c.finish_reason != "length":
        assert isinstance(parse_json_reply(c.text, schema), schema)
    assert smol._grammars and all(g is not None for g in smol._grammars.values())


@pytest.mark.local_model
@pytest.mark.parametrize("reply", ["extract", "forced", "bounded"])
def test_grammar_first_sampling_writes_what_the_grammar_chain_writes(smol, reply):
    # the best raw token is checked against the grammar first, and the whole vocabulary only
    # when it is refused: greedy decoding must give exactly the tokens of llama.cpp's own chain
    # ("forced" makes the grammar refuse what the model wants to write, the slow path;
    # "bounded" cuts a string at maxLength, as the facts' schemas do)
    from llama_cpp import Llama, LlamaGrammar

    from dualmem.ingest.extract import ExtractReply
    from dualmem.llm.base import reply_schema

    schema = {
        "extract": reply_schema(ExtractReply),
        "forced": {"type": "object", "properties": {"animal": {"enum": ["zebra crossing", "okapi"]}},
                   "required": ["animal"]},
        "bounded": {"type": "object", "properties": {"story": {"type": "string", "maxLength": 12}},
                    "required": ["story"]},
    }[reply]
    messages = [{"role": "system", "content": "Reply with JSON."},
                {"role": "user", "content": "Alice moved to Paris on 2021-03-01. She has a dog."}]
    ref = Llama(model_path=str(models.resolve_model(models.SMOLLM2)), n_ctx=1024,
                n_threads=smol.n_threads, verbose=False, seed=0)
    ref.chat_handler = smol._formatter.to_chat_handler()
    expected = ref.create_chat_completion(
        messages=messages, max_tokens=60, temperature=0.0,
        grammar=LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False))
    c = smol.complete(ChatRequest(messages=messages, max_tokens=60, json_mode=True, json_schema=schema))
    assert c.text == expected["choices"][0]["message"]["content"]
    assert c.usage.completion_tokens == expected["usage"]["completion_tokens"]
    if reply == "forced":
        assert json.loads(c.text)["animal"] in ("zebra crossing", "okapi")
    if reply == "bounded":
        assert 0 < len(json.loads(c.text)["story"]) <= 12


@pytest.mark.local_model
def test_too_long_prompt_raises_invalid_input(smol):
    long = [{"role": "user", "content": "Alice moved to Paris. " * 400}]  # > 1024 tokens
    with pytest.raises(InvalidInputError, match="context window"):
        smol.complete(ChatRequest(messages=long, max_tokens=16))
    # fits alone, but not with the room asked for the answer
    medium = [{"role": "user", "content": "Alice moved to Paris. " * 150}]
    with pytest.raises(InvalidInputError, match="max_tokens"):
        smol.complete(ChatRequest(messages=medium, max_tokens=600))
    assert smol.complete(ChatRequest(messages=QA, max_tokens=4)).text  # still usable


@pytest.mark.local_model
def test_malformed_messages_raise_invalid_input(smol):
    with pytest.raises(InvalidInputError, match="cannot format"):
        smol.complete(ChatRequest(messages=[{"role": "user"}]))


@pytest.mark.local_model
async def test_concurrent_calls_are_serialised_and_deterministic(smol):
    req = ChatRequest(messages=QA, max_tokens=16, logprobs=True)
    a, b = await asyncio.gather(smol.acomplete(req), smol.acomplete(req))
    assert a.text == b.text
    assert [t.logprob for t in a.logprobs] == pytest.approx([t.logprob for t in b.logprobs])


@pytest.mark.local_model
async def test_timeout_stops_generation_and_frees_the_model(smol):
    story = [{"role": "user", "content": "Write a long story about a cat."}]
    smol.timeout = 0.05
    try:
        with pytest.raises(LLMError, match="no reply within"):
            await smol.acomplete(ChatRequest(messages=story, max_tokens=900))
    finally:
        smol.timeout = 600
    # the worker thread noticed the cancellation: it released the model after a few tokens
    assert smol._lock.acquire(timeout=60)
    try:
        assert smol._llm.n_tokens < 200  # ~40 prompt tokens; a full story is several hundred
    finally:
        smol._lock.release()
    c = await asyncio.wait_for(smol.acomplete(ChatRequest(messages=QA, max_tokens=4)), 60)
    assert c.text


# -- Qwen2.5-0.5B, the default reader (local_model) ------------------------------------------


@pytest.mark.local_model
def test_qwen_assembles_verifies_and_answers(monkeypatch, tmp_path):
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("DUALMEM_MODEL_DIR", str(tmp_path))
    path = models.resolve_model(models.QWEN)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == models.QWEN_SHA256
    assert path.stat().st_size == models.QWEN_SIZE

    llm = LocalLLM(models.QWEN)
    c = llm.complete(ChatRequest(messages=QA, max_tokens=16, logprobs=True))
    assert "Paris" in c.text
    assert c.logprobs and all(len(t.top_logprobs) == 5 for t in c.logprobs)
