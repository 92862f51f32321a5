"""Apprise (``notify.apprise``): every other service, through any Apprise URL(s).

Apprise (https://github.com/caronc/apprise) reaches 100+ services from one URL each
(``tgram://bot-token/chat-id``, ``discord://id/token``, ``json://host/path``...). It is an
optional extra: ``pip install 'model-release-tracker[apprise]'``; without it the config check
says so in one line. The URLs carry tokens, so they come only from the environment variable
``urls_env`` names (several separated by spaces, commas or new lines) and never show: the
channel describes itself by service names, and each URL (and its long path segments, where
tokens travel) is registered for redaction.

Each URL is its own Apprise object, so a message is rendered within that service's
``body_maxlen`` (and at most 4,000 characters) by :func:`~mrt_engine.notify.message.render`,
which keeps the link, and sent as plain text (``body_format=text``: Apprise escapes it for
services that take HTML or Markdown). A send succeeds when every URL accepted it. Apprise tells
only success or failure, so a failure is never permanent (retried with backoff until
``delivery.max_attempts``), and its error names the services that failed with the warnings
Apprise logged for this send, redacted. A retry sends to every URL again: with several URLs, a
service that accepted the first attempt receives the message again (at-least-once). Apprise
enforces its own per-service timeouts (its ``cto``/``rto`` URL parameters, 4 s by default), not
``delivery.request_timeout_seconds``.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote, urlsplit

from mrt_engine.notify.base import (
    Channel,
    ChannelContext,
    ChannelKind,
    ChannelSettings,
    Outgoing,
    SendResult,
)
from mrt_engine.notify.message import render
from mrt_engine.secrets import Secret, register, shorten

MAX_TEXT = 4000
MAX_BYTES = None
INSTALL_HINT = "pip install 'model-release-tracker[apprise]'"
_SEPARATORS = re.compile(r"[\s,]+")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,19}")
# A path segment or query value this long in an Apprise URL is a token (bot tokens, keys).
_TOKEN_LEN = 12


class AppriseSettings(ChannelSettings):
    """``notify.apprise``."""

    urls_env: str = "APPRISE_URLS"


# The send in progress in this context. Apprise runs a service's call in its own thread pool
# with the caller's context (contextvars), so a thread id would miss its warnings; this does
# not, and keeps apart the sends of the channel's concurrent delivery workers.
_current_send: ContextVar[_SendLog | None] = ContextVar("mrt_apprise_send", default=None)


class _SendLog(logging.Handler):
    """Keeps the warnings Apprise logs for one send."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if _current_send.get() is self:
            self.lines.append(record.getMessage())


class AppriseChannel(Channel):
    name = "apprise"

    def __init__(self, settings: AppriseSettings, targets: list[tuple[str, Any, int]]) -> None:
        self.settings = settings
        self.targets = targets  # (service name, an Apprise object with one URL, body limit)

    def describe(self) -> str:
        return "Apprise: " + ", ".join(name for name, _, _ in self.targets)

    def send(self, outgoing: Outgoing) -> SendResult:
        from apprise import NotifyFormat, NotifyType

        failed: list[str] = []
        capture = _SendLog()
        apprise_log = logging.getLogger("apprise")
        apprise_log.addHandler(capture)
        token = _current_send.set(capture)
        try:
            for i, (name, target, limit) in enumerate(self.targets, start=1):
                body = render(outgoing.context, limit, self.settings) or "(empty)"
                try:
                    ok = bool(
                        target.notify(
                            body=body, notify_type=NotifyType.INFO, body_format=NotifyFormat.TEXT
                        )
                    )
                except Exception as exc:  # a plugin's bug is this URL's failure, not the others'
                    capture.lines.append(f"{type(exc).__name__}: {exc}")
                    ok = False
                if not ok:
                    failed.append(f"URL {i} ({name})")
        finally:
            _current_send.reset(token)
            apprise_log.removeHandler(capture)
        if not failed:
            return SendResult(ok=True, reply=f"accepted by {len(self.targets)} Apprise URL(s)")
        said = "; ".join(dict.fromkeys(capture.lines)) or "no detail logged"
        return SendResult(
            ok=False,
            error=shorten(
                f"Apprise could not deliver to {', '.join(failed)} of {len(self.targets)}: {said}",
                500,
            ),
        )


def _register_url_secrets(url: str) -> None:
    """Every part of an Apprise URL that may be a credential, for redaction."""
    register(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password:
        register(unquote(parts.password))
    pieces = [parts.username or "", *parts.path.split("/"), *re.split("[&=]", parts.query)]
    for piece in pieces:
        if len(piece) >= _TOKEN_LEN:
            register(piece)
            register(unquote(piece))


def build(settings: AppriseSettings, ctx: ChannelContext) -> Channel | None:
    try:
        import apprise
    except ImportError:
        ctx.secrets.errors.append(
            f"notify.apprise: the apprise package is not installed; install the extra: {INSTALL_HINT}"
        )
        return None
    secret: Secret | None = ctx.secrets.get(
        settings.urls_env,
        where="notify.apprise.urls_env",
        what="one or more Apprise URLs",
        required=True,
    )
    if secret is None:
        return None
    urls = [u for u in _SEPARATORS.split(secret.reveal()) if u]
    targets: list[tuple[str, Any, int]] = []
    for i, url in enumerate(urls, start=1):
        _register_url_secrets(url)
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        shown = f"scheme {scheme!r}" if _SCHEME.fullmatch(scheme) else "no scheme"
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            ctx.secrets.errors.append(
                f"notify.apprise.urls_env: URL {i} in {settings.urls_env} ({shown}) is not one"
                " Apprise can use (the URL is not shown; `apprise --details` lists the schemes)"
            )
            continue
        target = apprise.Apprise()
        target.add(plugin)
        limit = min(int(getattr(plugin, "body_maxlen", MAX_TEXT) or MAX_TEXT), MAX_TEXT)
        targets.append((str(getattr(plugin, "service_name", scheme) or scheme), target, limit))
    if not urls:
        ctx.secrets.errors.append(f"notify.apprise.urls_env: {settings.urls_env} holds no URL")
    if len(targets) != len(urls) or not targets:
        return None
    return AppriseChannel(settings, targets)


KIND = ChannelKind(name="apprise", settings=AppriseSettings, build=build)
