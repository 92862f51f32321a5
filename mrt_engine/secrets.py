"""Secrets: read from the environment variables the config names, and kept out of every output.

A resolved secret is registered here; :func:`redact` replaces every registered value (and the
token-bearing parts of URLs) in any text that leaves the process: log lines, stored errors,
console output. The :class:`Secret` wrapper never shows its value in ``repr``/``str``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

log = logging.getLogger(__name__)

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None

# Query parameters that carry credentials in webhook URLs (WeLink token, DingTalk access_token,
# WeCom key, Feishu hook ids travel in the path and are covered by the registered full URL).
_SECRET_PARAMS = {"token", "access_token", "key", "secret", "sign", "signature", "sig", "apikey"}
_MIN_SECRET_LEN = 4


class Secret:
    """A secret value that refuses to be printed."""

    __slots__ = ("_value", "env")

    def __init__(self, value: str, env: str) -> None:
        self._value = value
        self.env = env
        register(value)

    def reveal(self) -> str:
        """The value, for the one call that needs it (an Authorization header, an SMTP login)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(env={self.env!r}, value='***')"

    __str__ = __repr__


def register(value: str) -> None:
    """Remember ``value`` (and a URL's token parameters) so :func:`redact` removes it."""
    global _pattern
    candidates = {value}
    parts = urlsplit(value) if "://" in value else None
    if parts and parts.query:
        for name, param in parse_qsl(parts.query, keep_blank_values=True):
            if name.lower() in _SECRET_PARAMS:
                candidates.add(param)
    with _lock:
        added = {c for c in candidates if len(c) >= _MIN_SECRET_LEN} - _values
        if not added:
            return
        _values.update(added)
        ordered = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in ordered))


def redact(text: object) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    message = "" if text is None else str(text)
    pattern = _pattern
    if pattern is None:
        return message
    return pattern.sub("***", message)


def redact_url(url: str) -> str:
    """A URL safe to show: credentials in userinfo and token-like query values replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*"
        )
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from the formatted message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is not None:
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            elif record.exc_text:
                record.exc_text = redact(record.exc_text)
        return True


class MissingSecret(Exception):
    """A required secret's environment variable is not set."""


@dataclass
class SecretResolver:
    """Reads the variables a config names; collects what is missing for one clear report."""

    environ: Mapping[str, str]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def get(self, env: str | None, *, where: str, what: str, required: bool) -> Secret | None:
        """The secret named by ``env`` (a config value found at ``where``), or ``None``."""
        if not env:
            if required:
                self.errors.append(f"{where}: required: name the environment variable for {what}")
            return None
        value = self.environ.get(env, "")
        if value.strip():
            return Secret(value.strip(), env)
        message = f"{where}: environment variable {env} is not set ({what})"
        if required:
            self.errors.append(message)
        else:
            self.warnings.append(message)
        return None
