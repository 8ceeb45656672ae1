"""The integration on a real local model (SmolLM2-135M: fast plumbing check, not quality)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dualmem import Config, DualMemory
from llama_index.core.base.llms.types import ChatMessage

from llama_index.memory.dualmem import DualMemMemory, DualMemQueryEngine


@pytest.mark.local_model
async def test_query_engine_and_memory_on_the_local_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    config = Config(data_dir=tmp_path, llm="local", model="smollm2-135m", n_ctx=1024, extract=False)
    store = DualMemory(config)
    memory = DualMemMemory.from_memory(store, user_id="alice", session_id="monday")
    await memory.aput(ChatMessage(role="user", content="I moved to Paris in 2021."))

    engine = DualMemQueryEngine(memory=store, user_id="alice", mode="fast")
    response = await engine.aquery("Where did I move?")
    assert response.response.strip()
    assert response.metadata["usage"]["answer"]["calls"] == 1
    assert response.metadata["usage"]["answer"]["prompt_tokens"] > 20
    assert [n.node.text for n in response.source_nodes] == ["user: I moved to Paris in 2021."]
    store.close()
