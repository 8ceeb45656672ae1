"""Credentials: the one place that finds them in URLs and DSNs and masks them in any text.

Every form is parsed, not pattern-matched on the whole string: URL userinfo passwords (also
when their percent-escapes are broken), secret-looking query values (`?password=`, `token=`,
`api_key=`, ...) and libpq `key=value` settings (`password=...`). What a process was given is
also remembered (`remember`), so that the exact values can be masked wherever text leaves
dualmem: error messages from drivers that echo a URL, log records of the HTTP client
(`install_log_filter`), and model replies from a server that echoes the API key.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import unquote, urlsplit

__all__ = ["MASK", "install_log_filter", "redact_url", "remember", "scrub", "secrets_in"]

MASK = "***"
# query parameters (and libpq key=value settings) whose value is a credential
_SECRET_NAME = re.compile(
    r"(pass(word)?|passwd|pwd|secret|token|key|auth(orization)?|credentials?|sig(nature)?)$", re.I
)
_DSN_SETTING = re.compile(r"(\w+)(\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")
# userinfo in any URL inside free text (a log line, a driver's message): scheme://user:pw@
_URL_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)@", re.I)
# a value shorter than this is not masked by value (it would mask ordinary words)
_MIN_SECRET = 4

_known: set[str] = set()
_lock = threading.Lock()


def redact_url(url: str) -> str:
    """The URL with its password and secret-looking query values masked as `***`; everything
    else kept, so that a message still says which server and options were meant. A libpq
    `key=value` DSN is masked the same way."""
    if "://" not in url:
        return _DSN_SETTING.sub(lambda m: m[1] + m[2] + (MASK if _SECRET_NAME.search(m[1]) else m[3]), url)
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:  # e.g. a broken IPv6 host: nothing of it is safe to show
        return "<unparseable URL>"
    netloc = parts.netloc
    if has_password:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{host}"
    query = "&".join(_mask_parameter(p) for p in parts.query.split("&"))
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if parts.query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


def _mask_parameter(parameter: str) -> str:
    name, equals, _ = parameter.partition("=")
    return f"{name}={MASK}" if equals and _SECRET_NAME.search(unquote(name)) else parameter


def secrets_in(url: str) -> set[str]:
    """The credential values a URL or DSN carries, as written and decoded (a driver may echo
    either form)."""
    found: set[str] = set()
    if "://" not in url:
        for m in _DSN_SETTING.finditer(url):
            if _SECRET_NAME.search(m[1]):
                found.add(m[3])
                found.add(m[3].strip("'"))
    else:
        netloc = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        userinfo = netloc.rpartition("@")[0]
        if ":" in userinfo:
            found.add(userinfo.partition(":")[2])
        query = url.partition("?")[2].partition("#")[0]
        for parameter in query.split("&"):
            name, equals, value = parameter.partition("=")
            if equals and _SECRET_NAME.search(unquote(name)):
                found.add(value)
    return {v for s in found for v in (s, unquote(s)) if len(v) >= _MIN_SECRET}


def remember(*, keys: tuple[str | None, ...] = (), urls: tuple[str | None, ...] = ()) -> None:
    """Register credentials to be masked by `scrub` from now on: API keys as they are, and
    the secrets that URLs or DSNs carry."""
    with _lock:
        _known.update(k for k in keys if k and len(k) >= _MIN_SECRET)
        for url in urls:
            if url:
                _known.update(secrets_in(url))


def scrub(text: str, *extra: str) -> str:
    """`text` with every remembered credential (and `extra` ones) masked, and the password of
    any URL in it too."""
    with _lock:
        values = sorted(_known | {e for e in extra if len(e) >= _MIN_SECRET}, key=len, reverse=True)
    for value in values:  # longest first: a secret that contains another is masked whole
        if value in text:
            text = text.replace(value, MASK)
    return _URL_USERINFO.sub(lambda m: m[1] + MASK + "@", text)


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = _ScrubFilter()
# the loggers that print request URLs and options: httpx at INFO ("HTTP Request: POST
# http://user:pw@host/v1/..."), openai's client at DEBUG (request options and URLs). openai 3
# ships its own fork of httpx (httpx2, httpcore2), which logs under those names.
_HTTP_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "openai._base_client", "chromadb")


def install_log_filter() -> None:
    """Mask credentials in what the HTTP clients log (idempotent). Filters sit on the loggers
    that create the records, which is where a record can still be changed for every handler."""
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
