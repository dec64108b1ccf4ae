"""Log records for every process (web, worker, beat, bridge, gateway): one formatter, one context,
one redaction.

Every process configures logging from settings.LOGGING through `configure` (Django's
LOGGING_CONFIG; Celery's setup_logging signal calls it too), so uvicorn's, Celery's and our own
loggers all end in the same handler:

- `JsonFormatter` (LOG_FORMAT=json, the default without DEBUG) writes one JSON object per line:
  time, level, logger, message, the context ids known when the record was made, and the
  traceback. `TextFormatter` (LOG_FORMAT=text, the default with DEBUG) writes the same as a
  readable line.
- The context (request_id, task_id, task_name, source_id, feed_id, user_id) lives in a
  ContextVar, so it follows the request or task through async code and `sync_to_async`; bind it
  with `log_context(source_id=...)`. A record's own `extra={"source_id": ...}` wins.
- `RedactFilter` scrubs every record before it is written: WebSocket tickets and other
  credentials in query strings, Authorization values, session and CSRF cookies, passwords in
  URLs, and the literal values of the secrets in settings. Sentry events go through the same
  `redact` (infatium.sentry).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import logging.config
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

CONTEXT_KEYS = ("request_id", "task_id", "task_name", "source_id", "feed_id", "user_id")

# Each bind sets a new dict (never mutated), so a task or request never sees another's ids.
_context: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "infatium_log_context", default=None
)


def current_context() -> Mapping[str, Any]:
    return _context.get() or {}


def bind(**values: Any) -> contextvars.Token[Mapping[str, Any] | None]:
    """Add ids to the context of this task/request until `unbind(token)`; None values are left
    out. Prefer `log_context`, which cannot forget to unbind."""
    merged = {**current_context(), **{k: v for k, v in values.items() if v is not None}}
    return _context.set(merged)


def unbind(token: contextvars.Token[Mapping[str, Any] | None]) -> None:
    _context.reset(token)


@contextlib.contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Every record logged inside the block carries these ids (`source_id=3`, ...)."""
    token = bind(**values)
    try:
        yield
    finally:
        unbind(token)


# --- Redaction -----------------------------------------------------------------------------------

REDACTED = "[redacted]"
# Names whose values are credentials wherever they appear: query strings, form bodies, cookies,
# "name=value" and "name: value" in messages, dict and JSON reprs.
_SECRET_NAMES = (
    r"ticket|token|access_token|refresh_token|id_token|api[_-]?key|apikey|password|passwd|pwd|"
    r"secret|client_secret|sessionid|session_id|csrftoken|csrfmiddlewaretoken|csrf_token|"
    r"authorization|cookie|dsn|telegram_session|secret_key|metrics_token|llm_api_key|"
    r"flower_basic_auth"
)
# Names too common in prose to redact there: only as query-string parameters (?key=...&sig=...).
_QUERY_NAMES = r"key|sig|signature|auth|session|code"
_VALUE = r"[^\s&;,#\"'<>]+"
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # scheme://user:password@host -> scheme://user:[redacted]@host (DSNs, REDIS_URL, NATS_URL)
    (
        re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/?#@\"']*:)[^\s@/?#\"']+@"),
        rf"\1{REDACTED}@",
    ),
    # 'Authorization': 'Bearer x', "password": "x" (dict and JSON reprs)
    (
        re.compile(rf"""(?i)(["'](?:{_SECRET_NAMES})["']\s*:\s*)(["'])(?:(?!\2).)*\2"""),
        rf"\1\2{REDACTED}\2",
    ),
    # Authorization: Bearer x / authorization=Token x (headers written out in messages)
    (
        re.compile(r"(?i)\b(authorization\s*[:=]\s*)(?:(?:bearer|token|basic)\s+)?[^\s,;\"']+"),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\1{REDACTED}"),
    (re.compile(r"\b((?:Token|Basic)\s+)[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1{REDACTED}"),
    # ?ticket=x&password=y, sessionid=x; csrftoken=y, password: x
    (
        re.compile(rf"(?i)(?<![\w-])((?:{_SECRET_NAMES})(?:\s*=\s*|:\s*)){_VALUE}"),
        rf"\1{REDACTED}",
    ),
    (re.compile(rf"(?i)([?&;](?:{_QUERY_NAMES})=){_VALUE}"), rf"\1{REDACTED}"),
    (re.compile(rf"(?i)\b((?:__Host-|__Secure-)[\w-]+=){_VALUE}"), rf"\1{REDACTED}"),
]
# Settings and environment variables holding long random secrets: their literal text is replaced
# wherever it appears (an exception message quoting a token, a URL the patterns did not match).
# Passwords people choose (the database's, the admin's) are not: "infatium" would vanish from
# every line. They are caught where they appear in URLs and name=value pairs.
_SECRET_SETTINGS = (
    "SECRET_KEY",
    "METRICS_TOKEN",
    "TELEGRAM_SESSION",
    "TELEGRAM_API_HASH",
    "LLM_API_KEY",
    "SENTRY_DSN",
    "FLOWER_BASIC_AUTH",
)
_SECRET_ENV = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
_MIN_SECRET_LENGTH = 12  # shorter values are too likely to be ordinary words
_literal_cache: tuple[tuple[str, ...], re.Pattern[str] | None] = ((), None)


def _secret_values() -> tuple[str, ...]:
    values: list[str] = []
    from django.conf import settings

    if settings.configured:  # never import the settings from here (they may be importing us)
        values += [str(getattr(settings, name, "") or "") for name in _SECRET_SETTINGS]
    values += [os.environ.get(name, "") for name in _SECRET_ENV]
    found: set[str] = set()
    for value in values:
        found.add(value)
        if "://" in value:  # a DSN: its key (user part) and password are secret on their own
            userinfo = value.split("://", 1)[1].split("@", 1)
            if len(userinfo) == 2:
                found.update(userinfo[0].split(":", 1))
        elif ":" in value:  # user:password
            found.add(value.split(":", 1)[1])
    return tuple(sorted((v for v in found if len(v) >= _MIN_SECRET_LENGTH), key=len, reverse=True))


def _literal_pattern() -> re.Pattern[str] | None:
    global _literal_cache
    values = _secret_values()
    if values != _literal_cache[0]:
        pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None
        _literal_cache = (values, pattern)
    return _literal_cache[1]


def redact(text: str) -> str:
    """`text` without credentials (see the module docstring for what is recognised)."""
    if not text:
        return text
    literal = _literal_pattern()
    if literal is not None:
        text = literal.sub(REDACTED, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_data(value: Any, *, depth: int = 0) -> Any:
    """`redact` applied to every string inside nested dicts, lists and tuples (Sentry events)."""
    if isinstance(value, str):
        return redact(value)
    if depth > 20:
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and _is_secret_name(key)
            else redact_data(item, depth=depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_data(item, depth=depth + 1) for item in value)
    return value


_SECRET_NAME = re.compile(rf"(?i)^(?:{_SECRET_NAMES}|.*(?:password|secret|token|api_key))$")


def _is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.match(name))


class RedactFilter(logging.Filter):
    """Replaces the record's message with its redacted text (arguments merged in)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is, never lose the record
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact(message)
        record.args = None
        return True


class ContextFilter(logging.Filter):
    """Copies the current context onto the record (its own `extra` ids are kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current_context().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


# --- Formatters ----------------------------------------------------------------------------------


class _Redacting(logging.Formatter):
    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return redact(super().formatStack(stack_info))


def _context_of(record: logging.LogRecord) -> dict[str, Any]:
    context = {key: getattr(record, key, None) for key in CONTEXT_KEYS}
    return {key: value for key, value in context.items() if value is not None}


class JsonFormatter(_Redacting):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, context ids,
    and `exc_info` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context_of(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            # Again: another handler may have cached the text before this one redacted it.
            entry["exc_info"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        # ensure_ascii=False: messages stay readable (and greppable) in any language.
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(_Redacting):
    """`time LEVEL logger: message [request_id=... source_id=...]` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # The whole text: a traceback cached by another handler was not redacted.
        text = redact(super().format(record))
        context = _context_of(record)
        if not context:
            return text
        ids = " ".join(f"{key}={value}" for key, value in context.items())
        first, newline, rest = text.partition("\n")
        return f"{first} [{ids}]{newline}{rest}"


# --- Configuration -------------------------------------------------------------------------------


def configure(config: dict[str, Any]) -> None:
    """settings.LOGGING_CONFIG: dictConfig, keeping uvicorn's --no-access-log.

    uvicorn configures its own loggers before it imports the app (and with it Django); LOGGING
    then routes `uvicorn` and `uvicorn.access` to our handler. An access logger uvicorn left
    without handlers (--no-access-log) stays without.
    """
    access = logging.root.manager.loggerDict.get("uvicorn.access")
    access_off = isinstance(access, logging.Logger) and not access.handlers
    logging.config.dictConfig(config)
    if access_off:
        logging.getLogger("uvicorn.access").handlers = []
