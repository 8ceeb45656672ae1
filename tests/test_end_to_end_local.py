"""End to end with the real local model (SmolLM2, fast) and real embeddings: marked, kept in CI.

Answer quality of a 135M model is not asserted (see STACK.md (f)); the plumbing is: JSON
extraction through the grammar, logprobs reaching the gate, deliberation over real turns,
and a complete, serialisable trace.
"""

from __future__ import annotations

import pytest

from dualmem import Answer, Config, DualMemory

pytestmark = pytest.mark.local_model


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Config:
    return Config(data_dir=tmp_path_factory.mktemp("e2e"), model="smollm2-135m", n_ctx=2048)


def test_extract_then_gated_answer_with_the_real_model(config) -> None:
    memory = DualMemory(config)
    result = memory.add(
        [{"speaker": "Maya", "content": "I adopted a beagle called Biscuit last Saturday."},
         {"speaker": "Assistant", "content": "Congratulations on adopting Biscuit!"}],
        user_id="maya", session_id="s1", timestamp="2025-03-03T18:20:00",
    )
    assert len(result.turns) == 2
    # a 135M model may produce nothing worth keeping; it must not lose the turns or crash
    assert result.error is None or "kept in history" in result.error
    assert len(memory.history(user_id="maya")) == 2
    answer = memory.answer("What is the name of Maya's dog?", user_id="maya", policy="signals")
    assert answer.text
    assert answer.gate is not None and answer.logprobs  # logprobs from the local model
    entropy = next(s for s in answer.gate.signals if s.name == "entropy")
    assert entropy.available and 0.0 <= entropy.score <= 1.0
    full = memory.answer("What is the name of Maya's dog?", user_id="maya", mode="full")
    assert full.path == "deliberate" or full.degraded
    assert Answer.model_validate_json(full.model_dump_json()) == full
