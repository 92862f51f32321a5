"""One POST of a channel's message, bounded as a whole (every HTTP channel sends through it).

The timeout is also the most one whole send may take (see :mod:`mrt_engine.http_deadline`): a
reply trickled a byte at a time would otherwise hold a delivery worker for ever. A failure to
get an answer is a :class:`SendResult` (never an exception), its text free of secrets.

A send is one of a delivery worker's largest costs, so what does not change between sends is
prepared once per channel: the headers every POST carries (httpx's defaults and the channel's
own) are encoded once, the URL parsed once while it stays the same, and the request is handed
to the client's ``send`` as built (``client.post`` merged, checked and encoded all of them again
on every send: a third of a send's CPU), and it goes to the transport the client would pick
(its own, or a proxy's when the environment names one), as ``Client.send`` would hand it over
without the layers that have nothing to do for a channel: no auth (a channel signs its own
requests), no redirects (a 3xx is an answer: retried), no hooks, no timing, no cookies (a
channel keeps none: each POST stands alone), as :meth:`mrt_engine.http.Http._open` does for
sources. The connection pool and its deadline backend are the client's.
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
    """An HTTP client for one channel: ``post`` answers a response or a failed ``SendResult``.

    ``headers``: what every POST of the channel carries (``Content-Type``, ``User-Agent``),
    encoded once; a header given to :meth:`post` with the same name replaces its value."""

    def __init__(
        self,
        platform: str,
        timeout: float,
        timeout_key: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.platform = platform
        self.timeout = timeout
        self.timeout_key = timeout_key  # the setting to name when the deadline passes
        self._client = httpx.Client(timeout=timeout)
        install(self._client, DeadlineBackend())
        # By lower-case name (httpx's default headers, then the channel's), as sent: bytes.
        constant = httpx.Headers(self._client.headers)
        constant.update(headers or {})
        self._headers = {name.decode().lower(): (name, value) for name, value in constant.raw}
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}  # as the client's
        # The last URL, parsed, and the transport the client picks for it.
        self._url: tuple[str, httpx.URL, httpx.BaseTransport] | None = None

    def post(
        self, url: str, content: bytes, headers: Mapping[str, str] | None = None
    ) -> httpx.Response | SendResult:
        """POST ``content`` with the channel's headers and ``headers`` (this send's); the
        response whatever its status, or why there was none."""
        deadline = Deadline(time.monotonic() + self.timeout)
        try:
            with within(deadline):
                return self._send(url, content, headers or {})
        except httpx.HTTPError as exc:
            if deadline.passed:
                return SendResult(
                    ok=False,
                    error=f"no complete answer from {self.platform} within {self.timeout:g}s"
                    f" ({self.timeout_key})",
                )
            return SendResult(ok=False, error=redact(f"{type(exc).__name__}: {exc}"))

    def _send(self, url: str, content: bytes, headers: Mapping[str, str]) -> httpx.Response:
        """The request as ``client.post`` would build it, from what was prepared once, through
        the transport the client picks for its URL; the answer, read."""
        if self._client.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        target = self._url
        if target is None or target[0] != url:
            parsed = httpx.URL(url)
            target = self._url = (url, parsed, self._client._transport_for_url(parsed))
        own = {name.lower() for name in headers}
        sent: list = [pair for name, pair in self._headers.items() if name not in own]
        sent += headers.items()  # encoded by httpx as client.post does (ASCII)
        request = httpx.Request(
            "POST", target[1], headers=sent, content=content, extensions=self._extensions
        )
        if target[1].userinfo:  # a URL's user:password is Basic auth the client builds
            return self._client.send(request)
        response = target[2].handle_request(request)
        response.request = request
        try:
            response.read()  # (then closed: the connection goes back to the pool)
        except BaseException:
            response.close()
            raise
        return response

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
