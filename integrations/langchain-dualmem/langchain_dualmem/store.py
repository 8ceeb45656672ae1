"""`DualMemStore`: dualmem as a LangGraph `BaseStore` (`create_agent(..., store=...)`).

Namespaces map onto dualmem scopes through templates: with the default
`("memories", "{user_id}")`, the item `("memories", "alice", "prefs"), "theme"` lives in the
scope `user_id="alice"`, and the labels after the template (`"prefs"`) narrow inside it.
Each item is one turn of that scope, stored by an id derived from its namespace and key, so:

- `put` overwrites (dualmem replaces a turn re-added under its id with new content) and keeps
  the first `created_at`; `delete` erases the turn and its memory (`DualMemory.forget`), so a
  deleted item never comes back, not even after `reindex`;
- `search(query=...)` is dualmem's hybrid search (dense + BM25) over the scope; `score` is its
  ranking score (`Memory.relevance`), best first;
- the value is kept whole in the turn's metadata and refused beyond `add`'s size limits;
  a failed write writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from dualmem import DualMemory, Scope, ScopedMemory, ScopeError, Turn, run_sync
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)
from langgraph.store.base.embed import get_text_at_path

__all__ = ["DEFAULT_NAMESPACES", "DualMemStore"]

#: LangMem's convention: one namespace per user
DEFAULT_NAMESPACES: tuple[tuple[str, ...], ...] = (("memories", "{user_id}"),)
_PLACEHOLDERS = {"{user_id}": "user_id", "{agent_id}": "agent_id", "{session_id}": "session_id"}
# the turn metadata key that marks a turn as a store item and holds it
_ITEM = "langgraph_item"
_ROLE = "memory"


class DualMemStore(BaseStore):
    """A LangGraph store whose items are dualmem memories, searchable by dualmem's hybrid search.

    ```python
    from dualmem import DualMemory
    from langchain_dualmem import DualMemStore

    store = DualMemStore(DualMemory())                       # namespaces ("memories", user_id)
    store.put(("memories", "alice"), "diet", {"text": "Alice is vegetarian."})
    store.search(("memories", "alice"), query="what does alice eat?")
    ```

    `namespaces` lists the templates a namespace may start with; `{user_id}`, `{agent_id}`
    and `{session_id}` bind the scope ids, other labels must match. `fields` are the JSON paths
    whose text is indexed (LangGraph's syntax; `"$"`, the default, is the whole value as JSON);
    `put(..., index=[...])` picks them per item and `index=False` keeps an item out of search.
    """

    def __init__(
        self,
        memory: DualMemory,
        *,
        namespaces: Sequence[Sequence[str]] = DEFAULT_NAMESPACES,
        fields: Sequence[str] = ("$",),
    ) -> None:
        self.memory = memory
        self.namespaces = [tuple(t) for t in namespaces]
        if not self.namespaces or not all(
            any(label in _PLACEHOLDERS for label in t) for t in self.namespaces
        ):
            raise ScopeError(
                "every namespace template needs a scope placeholder: {user_id}, {agent_id} or {session_id}"
            )
        self.fields = list(fields)

    # ------------------------------------------------------------------ namespaces -> scopes

    def _scope(self, namespace: tuple[str, ...]) -> ScopedMemory:
        """The scope a namespace (or a search prefix) lies in: the first template it starts with."""
        for template in self.namespaces:
            if len(namespace) < len(template):
                continue
            ids: dict[str, str] = {}
            for label, want in zip(namespace, template, strict=False):
                if want in _PLACEHOLDERS:
                    ids[_PLACEHOLDERS[want]] = label
                elif label != want:
                    break
            else:
                return self.memory.scoped(**ids)
        shapes = " or ".join(repr(t) for t in self.namespaces)
        raise ScopeError(
            f"namespace {namespace!r} maps to no dualmem scope: this store expects namespaces "
            f"starting with {shapes} (e.g. ('memories', user_id)); pass namespaces=[...] to "
            "DualMemStore to map other shapes"
        )

    def _renders(self, scope: Scope) -> bool:
        """Whether some template names exactly this scope's ids (so it may hold items)."""
        ids = {key for key, value in scope.model_dump().items() if value is not None}
        return any({_PLACEHOLDERS[x] for x in t if x in _PLACEHOLDERS} == ids for t in self.namespaces)

    # ------------------------------------------------------------------ batch

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return run_sync(self.abatch(ops))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations in order (a read sees the writes before it)."""
        results: list[Result] = []
        for op in ops:
            if isinstance(op, GetOp):
                results.append(await self._get(op))
            elif isinstance(op, SearchOp):
                results.append(await self._search(op))
            elif isinstance(op, PutOp):
                results.append(await self._put(op))
            elif isinstance(op, ListNamespacesOp):
                results.append(await self._list_namespaces(op))
            else:
                raise TypeError(f"unknown store operation {type(op).__name__}")
        return results

    async def _get(self, op: GetOp) -> Item | None:
        turns = await self._scope(op.namespace).ahistory(turn_ids=[_item_id(op.namespace, op.key)])
        return _item(turns[0]) if turns else None

    async def _put(self, op: PutOp) -> None:
        scoped = self._scope(op.namespace)
        item_id = _item_id(op.namespace, op.key)
        if op.value is None:
            await scoped.aforget([item_id])
            return
        if not isinstance(op.value, Mapping):
            raise TypeError(f"a store value must be a dict, got {type(op.value).__name__}")
        value = dict(op.value)
        old = await scoped.ahistory(turn_ids=[item_id])
        now = datetime.now(UTC)
        created = old[0].metadata[_ITEM]["created_at"] if old else now.isoformat()
        text = self._text(value, op.index)
        turn = {
            "id": item_id, "role": _ROLE, "content": text or _json(value), "timestamp": now,
            "metadata": {_ITEM: {"namespace": list(op.namespace), "key": op.key, "value": value,
                                 "created_at": created}},
        }
        await scoped.aadd(turn, extract=False)
        if op.index is False or not text:  # kept (get, list) but out of search
            await scoped.adelete(item_id)

    def _text(self, value: dict[str, Any], index: Any) -> str:
        paths = self.fields if index is None or index is False else list(index)
        return "\n".join(text for path in paths for text in get_text_at_path(value, path))

    async def _search(self, op: SearchOp) -> list[SearchItem]:
        scoped = self._scope(op.namespace_prefix)
        history = await scoped.ahistory()
        turns = [
            t for t in _items(history, op.namespace_prefix)
            if not op.filter or all(_matches(t.metadata[_ITEM]["value"].get(k), v)
                                    for k, v in op.filter.items())
        ]
        if not turns:
            return []
        by_id = {t.id: t for t in turns}
        ranked: list[tuple[Turn, float | None]] = []
        if op.query:
            # rank the whole scope, then keep this namespace's items in dualmem's order
            found = await scoped.asearch(op.query, k=len(history))
            ranked = [(by_id[m.id], m.relevance) for m in found if m.id in by_id]
        seen = {t.id for t, _ in ranked}
        ranked += [(t, None) for t in turns if t.id not in seen]  # not searchable: last, no score
        return [
            SearchItem(**_fields(t), score=score) for t, score in ranked[op.offset : op.offset + op.limit]
        ]

    async def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        prefix = next((c.path for c in op.match_conditions or () if c.match_type == "prefix"), ())
        try:  # a prefix that names a scope reads that scope only
            scopes = [self._scope(tuple(prefix)).scope] if "*" not in prefix else None
        except ScopeError:
            scopes = None
        if scopes is None:
            scopes = [s for s in await self.memory.ascopes() if self._renders(s)]
        found: set[tuple[str, ...]] = set()
        for scope in scopes:
            scoped = self.memory.scoped(**scope.model_dump())
            found |= {tuple(t.metadata[_ITEM]["namespace"]) for t in _items(await scoped.ahistory(), ())}
        namespaces = [ns for ns in found if all(_does_match(c, ns) for c in op.match_conditions or ())]
        if op.max_depth is not None:
            namespaces = list({ns[: op.max_depth] for ns in namespaces})
        return sorted(namespaces)[op.offset : op.offset + op.limit]


def _items(turns: list[Turn], prefix: tuple[str, ...]) -> list[Turn]:
    """The store items among a scope's turns, under a namespace prefix, oldest first."""
    return [
        t for t in turns
        if isinstance(item := t.metadata.get(_ITEM), dict)
        and tuple(item["namespace"][: len(prefix)]) == prefix
    ]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _item_id(namespace: tuple[str, ...], key: str) -> str:
    """One turn id per (namespace, key): unique inside the scope's partition."""
    return "lg-" + hashlib.sha256(_json([list(namespace), key]).encode()).hexdigest()[:40]


def _fields(turn: Turn) -> dict[str, Any]:
    item = turn.metadata[_ITEM]
    return {
        "namespace": tuple(item["namespace"]), "key": item["key"], "value": item["value"],
        "created_at": datetime.fromisoformat(item["created_at"]), "updated_at": turn.timestamp,
    }


def _item(turn: Turn) -> Item:
    return Item(**_fields(turn))


def _does_match(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    """LangGraph's prefix/suffix match, `*` matching any one label."""
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    start = 0 if condition.match_type == "prefix" else len(namespace) - len(path)
    part = namespace[start : start + len(path)]
    return all(want in ("*", got) for got, want in zip(part, path, strict=True))


def _matches(value: Any, wanted: Any) -> bool:
    """LangGraph's filter semantics: equality, nested dicts, and $eq/$ne/$gt/$gte/$lt/$lte."""
    if isinstance(wanted, dict):
        if any(k.startswith("$") for k in wanted):
            return all(_compare(value, op, operand) for op, operand in wanted.items())
        return isinstance(value, dict) and all(_matches(value.get(k), v) for k, v in wanted.items())
    return value == wanted


def _compare(value: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return value == operand
    if op == "$ne":
        return value != operand
    if value is None:
        return False
    checks = {"$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__, "$lte": float.__le__}
    if op not in checks:
        raise ValueError(f"unsupported filter operator {op!r}: use $eq, $ne, $gt, $gte, $lt or $lte")
    return checks[op](float(value), float(operand))
