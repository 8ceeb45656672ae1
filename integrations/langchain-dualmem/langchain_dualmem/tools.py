"""Agent tools: `recall_memory` (ask the memory a question) and `remember` (save a fact)."""

from __future__ import annotations

from typing import Any, Literal

from dualmem import AddResult, Answer, DualMemory, Mode, ScopeError
from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from ._scope import Scoped

__all__ = [
    "DualMemRecallTool",
    "DualMemRememberTool",
    "RecallInput",
    "RememberInput",
    "create_recall_tool",
    "create_remember_tool",
]

RECALL_DESCRIPTION = (
    "Answer a question from long-term memory of earlier conversations with this user "
    "(facts they told you, preferences, events and their dates). Ask one specific question."
)
REMEMBER_DESCRIPTION = (
    "Save a fact to long-term memory so it can be recalled in later conversations. "
    "Pass one self-contained sentence, e.g. 'The user's sister Ana lives in Lisbon.'"
)
NO_MEMORIES = "No memories are stored for this user yet, so there is nothing to recall."


class RecallInput(BaseModel):
    question: str = Field(description="A specific question to answer from memory.")


class RememberInput(BaseModel):
    text: str = Field(description="The fact to remember, as one self-contained sentence.")


def format_answer(answer: Answer) -> str:
    """The text the agent sees: the answer, how it was produced, and why it escalated.

    A kept fast answer (gate passed, or fast mode) needs no explanation; an escalated one
    does, and so does a degraded one (e.g. escalated, deliberation failed, fast answer kept).
    """
    lines = [f"Answer: {answer.reply}", f"Path: {answer.path}" + (" (degraded)" if answer.degraded else "")]
    if (answer.path == "deliberate" or answer.degraded) and answer.reason:
        lines.append(f"Reason: {answer.reason}")
    return "\n".join(lines)


class DualMemRecallTool(Scoped, BaseTool):
    """Ask the memory a question and get its (gated) answer.

    The content is the answer with its path ("fast" or "deliberate") and, when the quality
    gate escalated, the reason; the artifact is the full `Answer` as a JSON dict (None when
    nothing is stored for the scope yet).
    """

    name: str = "recall_memory"
    description: str = RECALL_DESCRIPTION
    args_schema: type[BaseModel] = RecallInput
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    mode: Mode = "gated"
    k: int | None = Field(default=None, ge=1)

    def _result(self, answer: Answer | None) -> tuple[str, dict[str, Any] | None]:
        if answer is None:
            return NO_MEMORIES, None
        return format_answer(answer), answer.model_dump(mode="json")

    def _run(
        self, question: str, run_manager: CallbackManagerForToolRun | None = None
    ) -> tuple[str, dict[str, Any] | None]:
        try:
            answer = self.scoped_memory.answer(question, k=self.k, mode=self.mode)
        except ScopeError:  # the scope ids were checked at construction: nothing stored yet
            answer = None
        return self._result(answer)

    async def _arun(
        self, question: str, run_manager: AsyncCallbackManagerForToolRun | None = None
    ) -> tuple[str, dict[str, Any] | None]:
        try:
            answer = await self.scoped_memory.aanswer(question, k=self.k, mode=self.mode)
        except ScopeError:
            answer = None
        return self._result(answer)


NOTHING_SAVED = (
    "Nothing was saved to memory: the text reads as an instruction to the assistant or holds no "
    "lasting fact, and memory keeps only facts (instructions are kept out as a defence against "
    "prompt injection). The text is in the conversation history. To keep a preference, state it "
    "as a fact, e.g. 'The user prefers replies in French.'"
)


def format_added(result: AddResult) -> str:
    """What the agent is told about a save: what was stored, and when nothing was, why."""
    if result.error:
        return f"Saved the text, but fact extraction failed ({result.error}); it is kept in history."
    if not result.turns:
        return "Already remembered."
    if result.pending:
        return "Saved; its facts are being extracted in the background."
    if not result.added and not result.updated:
        return NOTHING_SAVED
    return f"Remembered ({len(result.added)} new, {len(result.updated)} updated memories)."


class DualMemRememberTool(Scoped, BaseTool):
    """Save a fact the agent chose to remember; it is stored and indexed like any message."""

    name: str = "remember"
    description: str = REMEMBER_DESCRIPTION
    args_schema: type[BaseModel] = RememberInput
    role: str = "user"

    def _message(self, text: str) -> dict[str, Any]:
        return {"role": self.role, "content": text, "metadata": {"source": self.name}}

    def _run(self, text: str, run_manager: CallbackManagerForToolRun | None = None) -> str:
        return format_added(self.scoped_memory.add(self._message(text)))

    async def _arun(self, text: str, run_manager: AsyncCallbackManagerForToolRun | None = None) -> str:
        return format_added(await self.scoped_memory.aadd(self._message(text)))


def create_recall_tool(
    memory: DualMemory,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    session_id: str | None = None,
    mode: Mode = "gated",
    k: int | None = None,
    name: str = "recall_memory",
    description: str = RECALL_DESCRIPTION,
) -> DualMemRecallTool:
    """A tool that answers the agent's question from the memory of this user/agent."""
    return DualMemRecallTool(
        memory=memory, user_id=user_id, agent_id=agent_id, session_id=session_id, mode=mode, k=k,
        name=name, description=description,
    )


def create_remember_tool(
    memory: DualMemory,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    session_id: str | None = None,
    name: str = "remember",
    description: str = REMEMBER_DESCRIPTION,
) -> DualMemRememberTool:
    """A tool that saves the text the agent passes (stored, then indexed/extracted)."""
    return DualMemRememberTool(
        memory=memory, user_id=user_id, agent_id=agent_id, session_id=session_id,
        name=name, description=description,
    )
