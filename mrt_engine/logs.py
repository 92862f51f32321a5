"""Logging: text or JSON lines (O §8.1), always through the secret-redacting filter."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from mrt_engine.secrets import RedactingFilter
from mrt_engine.text import clean, storable


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": storable(clean(record.getMessage())),
            "thread": record.threadName,
        }
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


def setup_logging(fmt: str = "text", level: str = "info", stream=None) -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            CleanTextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter that would otherwise log request URLs (which may carry tokens).
    for noisy in ("httpx", "httpcore", "apscheduler", "peewee", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
