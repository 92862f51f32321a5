"""One POST of a channel's message, bounded as a whole (every HTTP channel sends through it).

The timeout is also the most one whole send may take (see :mod:`mrt_engine.http_deadline`): a
reply trickled a byte at a time would otherwise hold a delivery worker for ever. A failure to
get an answer is a :class:`SendResult` (never an exception), its text free of secrets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from mrt_engine.http_deadline import Deadline, DeadlineBackend, install, within
from mrt_engine.notify.base import ChannelContext, SendResult
from mrt_engine.rate_limits import retry_after as asked_wait
from mrt_engine.secrets import Secret, redact
from mrt_engine.text import clean_line


class Poster:
    """An HTTP client for one channel: ``post`` answers a response or a failed ``SendResult``."""

    def __init__(self, platform: str, timeout: float, timeout_key: str) -> None:
        self.platform = platform
        self.timeout = timeout
        self.timeout_key = timeout_key  # the setting to name when the deadline passes
        self._client = httpx.Client(timeout=timeout)
        install(self._client, DeadlineBackend())

    def post(
        self, url: str, content: bytes, headers: dict[str, str]
    ) -> httpx.Response | SendResult:
        """POST ``content``; the response whatever its status, or why there was none."""
        deadline = Deadline(time.monotonic() + self.timeout)
        try:
            with within(deadline):
                return self._client.post(url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            if deadline.passed:
                return SendResult(
                    ok=False,
                    error=f"no complete answer from {self.platform} within {self.timeout:g}s"
                    f" ({self.timeout_key})",
                )
            return SendResult(ok=False, error=redact(f"{type(exc).__name__}: {exc}"))

    def close(self) -> None:
        self._client.close()


def probe_http(url: str, timeout: float) -> SendResult:
    """One ``HEAD`` of ``url``: whether something answers there (connection, TLS, an HTTP
    answer), no message sent. Any answer but a server error counts: a webhook that takes only
    POST answers 405, a robot's path without its token 404; 501 is a server without HEAD."""
    deadline = Deadline(time.monotonic() + timeout)
    with httpx.Client(timeout=timeout) as client:
        install(client, DeadlineBackend())
        try:
            with within(deadline):
                status = client.head(url).status_code
        except httpx.HTTPError as exc:
            if deadline.passed:
                return SendResult(ok=False, error=f"no complete answer within {timeout:g}s")
            return SendResult(ok=False, error=redact(f"{type(exc).__name__}: {exc}"))
    if status >= 500 and status != 501:
        return SendResult(ok=False, http_status=status, error=f"HTTP {status}: a server error")
    return SendResult(ok=True, http_status=status, reply=f"HTTP {status}")


def resolve_url(ctx: ChannelContext, where: str, env: str, what: str) -> tuple[Secret | None, bool]:
    """A channel's URL from the variable ``env`` (named at config key ``where``; required, as
    it holds a token), and whether it is usable (an http(s) URL). Problems go to the config's
    one report, never with the value."""
    url = ctx.secrets.get(env, where=where, what=what, required=True)
    if url is None:
        return None, False
    try:
        parts = urlsplit(url.reveal())
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        ctx.secrets.errors.append(f"{where}: {env} does not hold an http(s) URL")
        return url, False
    return url, True


def preview_post(where: str, body: bytes, headers: Mapping[str, str] | None = None) -> str:
    """What one POST would carry, for ``mrt-engine preview``: ``where`` (the channel's
    ``describe()``, already safe to show), the headers and the JSON body, indented."""
    try:
        shown = json.dumps(json.loads(body), ensure_ascii=False, indent=2)
    except ValueError:
        shown = body.decode("utf-8", "replace")
    lines = [f"POST to {where}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return "\n".join(lines) + "\n\n" + shown


def retry_after(response: httpx.Response) -> str:
    """`` (Retry-After: N)`` when the answer asks the sender to wait, for the recorded error."""
    value = clean_line(response.headers.get("retry-after", ""))
    return f" (Retry-After: {value[:40]})" if value else ""


def wait_asked(response: httpx.Response) -> float | None:
    """Seconds the answer asks the sender to wait (``Retry-After``: seconds or an HTTP date,
    RFC 9110 §10.2.3), or ``None``; the outbox schedules the retry no earlier."""
    return asked_wait(response.headers, datetime.now(UTC))
