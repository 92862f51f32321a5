"""Secrets: read from the environment variables the config names, and kept out of every output.

A resolved secret is registered here, in every form text may show it in (as given,
percent-decoded, percent-encoded), with the token parameters of a URL; :func:`redact` replaces
every registered form in any text that leaves the process: log lines, stored errors, console
output. Text that is shortened goes through :func:`shorten`, which redacts *before* it cuts and
then removes a secret's start left dangling at the cut. The :class:`Secret` wrapper never shows
its value in ``repr``/``str``.
"""

from __future__ import annotations

import logging
import re
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import (
    parse_qsl,
    quote,
    quote_plus,
    unquote,
    unquote_plus,
    urlencode,
    urlsplit,
    urlunsplit,
)

from mrt_engine.text import excerpt

log = logging.getLogger(__name__)

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None
# Starts of registered values (at least _MIN_PREFIX long): what a cut can leave of a secret.
_prefixes: frozenset[str] = frozenset()
_longest_prefix = 0

# Query parameters that carry credentials in webhook URLs (WeLink token, DingTalk access_token,
# WeCom key, Feishu hook ids travel in the path and are covered by the registered full URL).
_SECRET_PARAMS = {
    "token", "access_token", "key", "secret", "sign", "signature", "sig", "apikey", "api_key",
    "api-key",
}  # fmt: skip
_MIN_SECRET_LEN = 4
# A credential parameter written into any text (an echoed request line, a URL in an error):
# its value goes by the name, since clients encode the same token differently ("/" as "%2F" or
# not, "+" as "%2B" or not) and no list of registered forms covers them all.
_SECRET_PARAM_VALUE = re.compile(
    r"(?i)(?<![\w-])(" + "|".join(sorted(_SECRET_PARAMS)) + r")=[^&\s\"'<>]+"
)
# A cut that leaves fewer characters says too little of a secret to be worth a false positive.
_MIN_PREFIX = 8
# Where a text was cut: an ellipsis (ours or an upstream's), or the end of the text.
_CUT = re.compile(r"…|\.\.\.|\Z")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


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
    global _pattern, _prefixes, _longest_prefix
    candidates = _forms(value)
    parts = urlsplit(value) if "://" in value else None
    if parts and parts.query:
        # The raw query, not parse_qsl's decoding: "Ab+Cd%2F" must stay findable as written.
        for pair in re.split("[&;]", parts.query):
            name, _, param = pair.partition("=")
            if unquote_plus(name).lower() in _SECRET_PARAMS:
                candidates |= _forms(param)
    with _lock:
        added = {c for c in candidates if len(c) >= _MIN_SECRET_LEN} - _values
        if not added:
            return
        _values.update(added)
        ordered = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(_flexible(v) for v in ordered))
        _prefixes = frozenset(v[:n] for v in _values for n in range(_secret_from(v) + 1, len(v)))
        _longest_prefix = max((len(p) for p in _prefixes), default=0)


def _secret_from(value: str) -> int:
    """How many leading characters of ``value`` say nothing secret on their own: fewer than
    ``_MIN_PREFIX``, or a URL up to its host (userinfo is secret) or, when its query carries a
    token parameter, up to that parameter's value."""
    shown = _MIN_PREFIX - 1
    if "://" not in value:
        return shown
    try:
        parts = urlsplit(value)
    except ValueError:
        return shown
    if "@" in parts.netloc:
        return shown
    public = len(parts.scheme) + 3 + len(parts.netloc)
    if parts.query:
        offset = value.index("?") + 1
        for pair in re.split("([&;])", parts.query):
            name, equals, _ = pair.partition("=")
            if equals and unquote_plus(name).lower() in _SECRET_PARAMS:
                public = offset + len(name) + 1
                break
            offset += len(pair)
    return max(shown, public)


def _forms(value: str) -> set[str]:
    """Every way ``value`` is commonly written: as given, percent-decoded (``+`` as a plus and as
    a space), and percent-encoded as ``quote``/``quote_plus`` do it, in either hex case."""
    decoded = {value, unquote(value), unquote_plus(value)}
    forms = set(decoded)
    for plain in decoded:
        for encoded in (
            quote(plain, safe=""),
            quote(plain),  # keeps "/"
            quote_plus(plain),
            quote_plus(plain, safe="/"),
        ):
            forms.add(encoded)
            forms.add(_PERCENT_ESCAPE.sub(lambda m: m.group().lower(), encoded))
    return forms


_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def _flexible(value: str) -> str:
    """A pattern of ``value`` that also finds it partly percent-encoded: each character that
    URLs may escape, as itself or as its ``%XX`` escapes (either hex case), a space also as
    ``+``. Clients and servers each escape a query their own way (httpx 0.25 writes a token's
    ``/`` as ``%2F`` and leaves its ``+`` and ``=``), so no list of whole forms is complete."""
    parts = []
    for char in value:
        if char in _UNRESERVED:
            parts.append(re.escape(char))
            continue
        octets = char.encode("utf-8", "surrogatepass")
        options = [re.escape(char), "".join(_escape_pattern(octet) for octet in octets)]
        if char == " ":
            options.append(r"\+")
        parts.append("(?:" + "|".join(options) + ")")
    return "".join(parts)


def _escape_pattern(octet: int) -> str:
    """``%XX`` of ``octet``, its hex letters in either case."""
    return "%" + "".join(f"[{d}{d.lower()}]" if d.isalpha() else d for d in f"{octet:02X}")


def redact(text: object) -> str:
    """``text`` with every registered secret replaced by ``***``, and so is the start of one
    (8+ characters) that ends where the text was cut: before an ellipsis or at its end."""
    message = "" if text is None else str(text)
    pattern = _pattern
    if pattern is None:
        return message
    message = _SECRET_PARAM_VALUE.sub(r"\1=***", pattern.sub("***", message))
    return _redact_cut_starts(message)


def shorten(text: object, limit: int, *, one_line: bool = True) -> str:
    """``text`` safe to show in at most ``limit`` characters: every secret is redacted before
    the cut, and a secret's start left dangling at the cut is redacted after it.

    ``one_line`` makes an excerpt (control characters removed, whitespace folded, cut at a word
    when one is near); otherwise the text keeps its lines and is cut at ``limit``. Both end in
    an ellipsis when cut. Every place that shortens text that may carry a secret uses this.
    """
    safe = redact(text)
    if one_line:
        cut = excerpt(safe, limit)
    else:
        cut = safe if len(safe) <= limit else safe[: max(limit - 1, 0)] + "…"
    return redact(cut)


def _redact_cut_starts(text: str) -> str:
    """Replace the longest registered-secret start that ends at each cut of ``text``."""
    prefixes, longest = _prefixes, _longest_prefix
    if not prefixes or len(text) < _MIN_PREFIX:
        return text
    spans: list[tuple[int, int]] = []
    for cut in _CUT.finditer(text):
        end = cut.start()
        floor = spans[-1][1] if spans else 0  # spans never overlap
        for size in range(min(longest, end - floor), _MIN_PREFIX - 1, -1):
            if text[end - size : end] in prefixes:
                spans.append((end - size, end))
                break
    for start, end in reversed(spans):
        text = text[:start] + "***" + text[end:]
    return text


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
            # Formatters reuse exc_text when it is set (JsonFormatter too): fill it redacted.
            if record.exc_info and not record.exc_text:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            elif record.exc_text:
                record.exc_text = redact(record.exc_text)
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
        return True


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Tokens whose shape is a valid variable name: GitHub's (ghp_, gho_, ghu_, ghs_, ghr_,
# github_pat_), HuggingFace's (hf_) and Standard Webhooks signing secrets (whsec_, when their
# base64 has no "+", "/" or "="), each with a long random tail.
_TOKEN_SHAPES = re.compile(r"(gh[pousr]_|github_pat_|hf_|whsec_)[A-Za-z0-9_]{20,}")


def looks_like_a_secret(name: str) -> bool:
    """Whether ``name``, given as an environment variable's name, is rather a secret itself:
    not a variable name at all (a URL, a password with punctuation), or a well-known token."""
    return not _ENV_NAME.fullmatch(name) or bool(_TOKEN_SHAPES.fullmatch(name))


class MissingSecret(Exception):
    """A required secret's environment variable is not set."""


@dataclass
class SecretResolver:
    """Reads the variables a config names; collects what is missing for one clear report."""

    environ: Mapping[str, str]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Every variable asked for, set or not (``mrt-engine doctor`` names them; never their values).
    named: list[str] = field(default_factory=list)

    def get(self, env: str | None, *, where: str, what: str, required: bool) -> Secret | None:
        """The secret named by ``env`` (a config value found at ``where``), or ``None``."""
        if env and not looks_like_a_secret(env):
            self.named.append(env)
        if not env:
            if required:
                self.errors.append(f"{where}: required: name the environment variable for {what}")
            return None
        value = self.environ.get(env, "")
        if value.strip():
            return Secret(value.strip(), env)
        if looks_like_a_secret(env):
            # The usual slip: the secret itself where its variable's name belongs. Never echo it.
            self.errors.append(
                f"{where}: expected the name of an environment variable that holds {what}; the"
                " value given looks like the secret itself (not shown): put it in an environment"
                " variable and give that variable's name here"
            )
            return None
        message = f"{where}: environment variable {env} is not set ({what})"
        if required:
            self.errors.append(message)
        else:
            self.warnings.append(message)
        return None
