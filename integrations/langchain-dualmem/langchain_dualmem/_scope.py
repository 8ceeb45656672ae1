"""The scope fields shared by the retriever and the tools."""

from __future__ import annotations

from typing import Self

from dualmem import DualMemory
from dualmem.inputs import make_scope
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
        make_scope(self.user_id, self.agent_id, self.session_id)
        return self

    @property
    def scope(self) -> dict[str, str | None]:
        return {"user_id": self.user_id, "agent_id": self.agent_id, "session_id": self.session_id}
