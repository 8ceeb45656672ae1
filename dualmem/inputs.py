"""Validation of what users pass in: scopes, messages, timestamps, questions.

Bad input fails fast with an `InvalidInputError`/`ScopeError` that says what to change,
before anything is written, so a rejected call stores nothing and loses nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from .errors import InvalidInputError
from .types import MAX_ID_LENGTH, Scope, Turn, is_unicode

__all__ = [
    "check_id", "check_limit", "check_messages", "check_text", "make_scope", "make_turns", "parse_timestamp",
]

MAX_TEXT_CHARS = 1_000_000
MAX_LIMIT = 2**31 - 1  # larger limits mean "no limit" (and would overflow Chroma and SQLite)
_TIME_FORMATS = (
    "%I:%M %p on %d %B, %Y",  # LoCoMo session dates: "4:12 pm on 19 March, 2024"
    "%d %B %Y",
    "%d %b %Y",
    "%B %d, %Y",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%d.%m.%Y",
)


def make_scope(
    user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None
) -> Scope:
    """The scope of a call's keywords; `Scope` itself enforces the rule (`ScopeError`)."""
    return Scope(user_id=user_id, agent_id=agent_id, session_id=session_id)


def parse_timestamp(value: Any) -> datetime:
    """datetime, date, epoch seconds or a date string -> an aware UTC datetime."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            dt = datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError) as e:
            raise InvalidInputError(f"timestamp {value!r} is out of range") from e
    elif isinstance(value, str):
        dt = _parse_string(value.strip())
    else:
        raise InvalidInputError(
            f"timestamp must be a datetime, an ISO-8601 string or epoch seconds, got {type(value).__name__}"
        )
    if dt.tzinfo is None:  # naive times are taken as UTC so that ordering is well defined
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError as e:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise InvalidInputError(f"timestamp {value!r} is out of range in UTC") from e


def _parse_string(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise InvalidInputError(f"cannot read timestamp {text[:60]!r}: use ISO-8601 such as 2023-05-08T13:56:00")


def check_text(value: Any, what: str = "message text") -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidInputError(f"{what} is not valid UTF-8: decode it first") from e
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    if not is_unicode(value):
        raise InvalidInputError(f"{what} contains characters that are not valid Unicode")
    if not value.strip():
        raise InvalidInputError(f"{what} is empty")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"{what} has {len(value)} characters; the limit is {MAX_TEXT_CHARS}")
    return value


def check_messages(messages: Any, timestamp: Any = None, *, names: Sequence[str] | None = None) -> None:
    """Raise the `InvalidInputError` that `add` would raise for these messages; store nothing.

    For a caller about to do what it cannot undo before it adds, e.g. replacing a chat
    session (delete it, then add the new messages): check first, and bad input leaves the
    stored data as it was. `names` says how the errors name each message (default
    "message 0", ...), e.g. by its place in a list the caller converted.

    ```python
    check_messages([{"content": "fine"}, {"content": "\\ud800"}])
    # InvalidInputError: message 1 content contains characters that are not valid Unicode
    ```
    """
    make_turns(messages, None, timestamp, names=names)


def make_turns(
    messages: Any, scope: Scope | None, timestamp: Any = None, *, names: Sequence[str] | None = None
) -> list[Turn]:
    """Normalise a string, a message dict, a `Turn` or a list of them into turns.

    `names` says how errors name each message (a file reader passes "turn 22"); the default
    is its position in the call ("message 0"). Two messages with one id but different content
    are refused: the history keeps one turn per id, so the second would be lost. Without a
    scope (`check_messages`) the turns carry no ids of one.
    """
    if isinstance(messages, str | bytes | Mapping | Turn):
        messages = [messages]
    if not isinstance(messages, list | tuple) or not messages:
        raise InvalidInputError(
            "messages must be a non-empty string, a {'role', 'content'} dict or a list of them"
        )
    default_ts = parse_timestamp(timestamp) if timestamp is not None else None
    owner = scope.model_dump() if scope is not None else {}
    now = datetime.now(UTC)
    turns = []
    seen: dict[str, tuple[int, Turn]] = {}
    for i, m in enumerate(messages):
        where = names[i] if names is not None else f"message {i}"
        if isinstance(m, Turn):
            m = m.model_dump(exclude={"seq", "user_id", "agent_id", "session_id"})
        if isinstance(m, str | bytes):
            m = {"role": "user", "content": m}
        if not isinstance(m, Mapping):
            raise InvalidInputError(f"{where} must be a string or a dict, got {type(m).__name__}")
        text = m.get("content", m.get("text"))
        text = check_text(text, f"{where} content")
        role = m.get("role") or "user"
        speaker = m.get("speaker") or m.get("name")
        if not all(isinstance(v, str) and is_unicode(v) for v in (role, speaker or "")):
            raise InvalidInputError(f"{where}: role and speaker must be strings of valid Unicode")
        ts = m.get("timestamp")
        try:
            when = parse_timestamp(ts) if ts is not None else default_ts or now
        except InvalidInputError as e:
            raise InvalidInputError(f"{where}: {e}") from None
        metadata = m.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise InvalidInputError(f"{where}: metadata must be a dict")
        try:  # checked here so that the history's insert cannot fail halfway through a batch
            size = len(json.dumps(metadata, ensure_ascii=False).encode("utf-8"))
        except (TypeError, ValueError) as e:  # incl. UnicodeEncodeError (lone surrogates)
            raise InvalidInputError(f"{where}: metadata must be JSON-serialisable ({e})") from e
        if size > MAX_TEXT_CHARS:  # the text's limit: metadata is stored beside it
            raise InvalidInputError(
                f"{where}: metadata has {size} bytes as JSON; the limit is {MAX_TEXT_CHARS}"
            )
        turn_id = m.get("id") or str(uuid.uuid4())
        if not isinstance(turn_id, str) or len(turn_id) > MAX_ID_LENGTH or not is_unicode(turn_id):
            raise InvalidInputError(f"{where}: id must be a string of at most {MAX_ID_LENGTH} chars")
        turn = Turn(
            id=turn_id, role=role, speaker=speaker, text=text, timestamp=when, **owner,
            metadata=dict(metadata),
        )
        if turn_id in seen:
            j, first = seen[turn_id]
            if (first.role, first.speaker, first.text) != (turn.role, turn.speaker, turn.text):
                first_name = names[j] if names is not None else f"message {j}"
                raise InvalidInputError(
                    f"{where} reuses the id {turn_id[:60]!r} of {first_name} with other content: "
                    "give each message its own id"
                )
            continue  # the same message twice: stored once, as a retry would be
        seen[turn_id] = (i, turn)
        turns.append(turn)
    return turns


def check_limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidInputError(f"limit must be a positive integer or None, got {limit!r}")
    return min(limit, MAX_LIMIT)


def check_id(value: Any, what: str = "memory_id") -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or not is_unicode(value):
        raise InvalidInputError(
            f"{what} must be a non-empty string of at most {MAX_ID_LENGTH} chars, got {value!r}"
        )
    return value
