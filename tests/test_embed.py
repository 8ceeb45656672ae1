"""The local MiniLM embedding: shape, normalisation, determinism, semantics, no network."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dualmem.embed import MiniLMEmbedding, OpenAIEmbedding, make_embedding
from dualmem.errors import ConfigError


@pytest.fixture(scope="module")
def embed() -> MiniLMEmbedding:
    return MiniLMEmbedding()


def test_shape_and_norm(embed):
    vectors = embed(["I moved to Paris last year.", "x", "a much longer sentence " * 100, ""])
    assert len(vectors) == 4
    for v in vectors:
        assert v.shape == (384,) and v.dtype == np.float32
    assert np.linalg.norm(vectors[:3], axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)


def test_deterministic_and_independent_of_batching(embed):
    texts = ["short", "a medium length sentence about cats", "tiny"]
    together = embed(texts)
    alone = [embed([t])[0] for t in texts]
    small_batches = MiniLMEmbedding(batch_size=1)(texts)
    for a, b, c in zip(together, alone, small_batches, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a, c, atol=1e-5)
    np.testing.assert_array_equal(embed(texts)[1], together[1])


def test_batches_bound_texts_and_padded_tokens():
    from dualmem.embed import BATCH_TOKENS

    lengths = [10] * 100 + [60] * 30 + [300]
    batches = MiniLMEmbedding(batch_size=64)._batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # each text once
    for b in batches:
        widest = max(lengths[i] for i in b)
        assert len(b) <= 64 and (len(b) == 1 or len(b) * widest <= BATCH_TOKENS)
        assert [lengths[i] for i in b] == sorted(lengths[i] for i in b)
    # short texts fill whole batches; long chat turns go a few at a time; an overlong one alone
    assert [len(b) for b in batches][:2] == [BATCH_TOKENS // 10, 100 - BATCH_TOKENS // 10]
    assert max(len(b) for b in batches if lengths[b[0]] == 60) == BATCH_TOKENS // 60
    assert batches[-1] == [130]


def test_mixed_lengths_embed_as_they_do_alone(embed):
    texts = ["ok", "a medium length sentence about cats and dogs " * 3, "hi there", "word " * 200]
    for a, t in zip(embed(texts), texts, strict=True):
        np.testing.assert_allclose(a, embed([t])[0], atol=1e-5)


def test_similar_sentences_are_closer(embed):
    a, b, c = embed([
        "Hilde adopted a puppy last week.",
        "Last week Hilde got a new dog.",
        "The quarterly tax report is due on Friday.",
    ])
    assert float(a @ b) > 0.6
    assert float(a @ b) > float(a @ c) + 0.3


def test_shares_one_session(embed):
    embed(["warm up"])
    assert MiniLMEmbedding._session is not None
    first = MiniLMEmbedding._session
    MiniLMEmbedding(max_length=128)(["again"])
    assert MiniLMEmbedding._session is first


def test_chroma_config_round_trip():
    e = MiniLMEmbedding(max_length=128, batch_size=8)
    rebuilt = MiniLMEmbedding.build_from_config(e.get_config())
    assert (rebuilt.max_length, rebuilt.batch_size) == (128, 8)
    assert MiniLMEmbedding.name() != OpenAIEmbedding.name()


def test_make_embedding():
    assert isinstance(make_embedding("minilm"), MiniLMEmbedding)
    assert isinstance(make_embedding("openai", "m", "http://x"), OpenAIEmbedding)
    with pytest.raises(ConfigError):
        make_embedding("word2vec")


def test_embedding_and_index_use_no_network(tmp_path):
    # a fresh process (nothing cached) with every non-loopback connection refused
    code = textwrap.dedent(f"""
        import socket
        real_connect = socket.socket.connect
        def guarded(self, address):
            host = address[0] if isinstance(address, tuple) else address
            if host not in ("127.0.0.1", "::1", "localhost") and not isinstance(address, str):
                raise RuntimeError(f"network access to {{address}}")
            return real_connect(self, address)
        socket.socket.connect = guarded
        socket.getaddrinfo = lambda *a, **k: (_ for _ in ()).throw(RuntimeError(f"dns {{a}}"))
        from dualmem.embed import MiniLMEmbedding
        from dualmem.index import ChromaMemoryIndex
        from dualmem.types import Memory, Scope
        from datetime import datetime, UTC
        v = MiniLMEmbedding()(["offline"])[0]
        index = ChromaMemoryIndex({str(tmp_path)!r})
        now = datetime.now(UTC)
        index.upsert([Memory(id="m", text="tea", user_id="u", created_at=now, updated_at=now)])
        hits = index.search("tea", Scope(user_id="u"), 1)
        print(len(v), hits[0].id)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["384", "m"]
