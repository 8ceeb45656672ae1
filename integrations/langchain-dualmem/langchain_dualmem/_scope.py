"""The scope fields shared by the retriever and the tools."""

from __future__ import annotations

from typing import Self

from dualmem import DualMemory, ScopedMemory
from pydantic import BaseModel, ConfigDict, model_validator


class Scoped(BaseModel):
    """Bound to one `DualMemory` and one scope; bad or missing ids fail at construction."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    memory: DualMemory
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None

    @model_validator(mode="after")
    def _check_scope(self) -> Self:
        self.scoped_memory  # noqa: B018 - raises ScopeError for bad ids
        return self

    @property
    def scoped_memory(self) -> ScopedMemory:
        """The memory bound to this object's scope (read on each use: the fields may change)."""
        return self.memory.scoped(user_id=self.user_id, agent_id=self.agent_id, session_id=self.session_id)
