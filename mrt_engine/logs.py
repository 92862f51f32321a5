"""Logging: text or JSON lines (O §8.1), always through the secret-redacting filter.

A line about one source, one event or one delivery names it in fields of its JSON object
(``source``, ``fingerprint``, ``delivery``, ``channel``), so an on-call engineer can select
every line about it. The fields come from one place, :func:`log_context`: the engine wraps a
poll, and a worker a send, in the context of what they work on, and every line logged inside
(by any module) carries it. Text lines stay as they were: those names are in their messages.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType

from mrt_engine.secrets import RedactingFilter, redact
from mrt_engine.text import clean, storable

# The fields a line about one thing carries, in the order the JSON object shows them.
FIELDS = ("source", "fingerprint", "delivery", "channel")
_NONE: Mapping[str, object] = MappingProxyType({})
_context: ContextVar[Mapping[str, object]] = ContextVar("mrt_log_context", default=_NONE)


class log_context:  # named as the call it reads as: ``with log_context(source=key):``
    """Every line logged inside (in this thread) carries ``fields`` (some of :data:`FIELDS`);
    nested contexts add to the outer one. (A class, not a generator: every poll and every send
    enters one, and this costs a fifth of what @contextmanager does.)"""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: object) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        outer = _context.get()
        self._token = _context.set({**outer, **self._fields} if outer else self._fields)

    def __exit__(self, *exc: object) -> None:
        _context.reset(self._token)


class ContextFilter(logging.Filter):
    """Puts the fields of the current :func:`log_context` on each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, thread, the :data:`FIELDS` of the
    line's context (only those it has), and exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": storable(clean(record.getMessage())),
            "thread": record.threadName,
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:  # a source key may hold a URL: redacted like the message
                entry[key] = value if isinstance(value, int) else storable(clean(redact(value)))
        # exc_text first: the redacting filter has put the scrubbed traceback there.
        if record.exc_text:
            entry["exc"] = storable(clean(record.exc_text))
        elif record.exc_info:
            entry["exc"] = storable(clean(self.formatException(record.exc_info)))
        return json.dumps(entry, ensure_ascii=False)


class CleanTextFormatter(logging.Formatter):
    """The usual text format, with control characters removed from upstream text in messages,
    and text a UTF-8 log file cannot take (a lone surrogate) replaced: the line is written."""

    def format(self, record: logging.LogRecord) -> str:
        return storable(clean(super().format(record)).replace("\x00", ""))


def logs_as_json() -> bool:
    """Whether this process logs JSON lines (``setup_logging("json")``)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def setup_logging(fmt: str = "text", level: str = "info", stream=None) -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            CleanTextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # A library's warning is a log line too (in JSON, one object), never a raw stderr line.
    logging.captureWarnings(True)
    # Third-party chatter that would otherwise log request URLs (which may carry tokens).
    for noisy in ("httpx", "httpcore", "apscheduler", "peewee", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
