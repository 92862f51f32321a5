"""The shared HTTP client: per-host limits, rate-limit obedience, backoff, conditional requests.

Every source talks to its upstream through one :class:`HttpClient`. Limits are grouped per host,
so all GitHub repositories share one budget (S2). The same rules apply to every platform (S1):

* ``304 Not Modified`` for a conditional request is a cheap success with no body;
* a rate limit (``Retry-After``, ``x-ratelimit-reset`` when ``x-ratelimit-remaining`` is 0,
  ``RateLimit: ...;t=N``, or a bare 403/429 that says so) blocks the *host* until it lifts; a
  short wait is slept inline, a long one fails the poll with :class:`RateLimited` so the
  scheduler can skip that host without spending requests;
* 5xx, 408 and transport errors are retried with exponential backoff and jitter;
* 401 is :class:`AuthError` ("token missing or invalid") and is never retried.

Time is bounded twice. One try of a request ends by ``http.request_deadline_seconds``, connect
and every read included (see :mod:`mrt_engine.http_deadline`: httpx's own timeouts bound one
socket operation each, so a trickling upstream never trips them). One poll ends by
``scheduler.poll_deadline_seconds`` (:class:`PollSession`): every request, retry, backoff and
rate-limit wait of the poll fits in it, and a wait that would not fit fails the poll at once.

Sleeps wait on the engine's stop event, so shutdown never waits for a backoff to finish;
:meth:`HttpClient.abort` cuts the requests in flight.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from mrt_engine.config import HostPolicy, HttpConfig
from mrt_engine.http_deadline import Deadline, DeadlineBackend, PollDeadline, install, within
from mrt_engine.rate_limits import (
    MAX_RATE_LIMIT_WAIT,
    RateLimitInfo,
    rate_limit_info,
    retry_after,
    secondary_limit_wait,
)
from mrt_engine.secrets import redact, redact_url, shorten
from mrt_engine.timeutil import Clock, doubling, utcnow
from mrt_engine.untrusted_json import Shape, parse_json
from mrt_engine.wording import plural

log = logging.getLogger(__name__)

try:  # how httpx's transport wraps its pool's answers and errors (HttpClient._open)
    from httpx._transports.default import ResponseStream as _PoolStream
    from httpx._transports.default import map_httpcore_exceptions as _pool_errors
except ImportError:  # another httpx: its transport does it
    _PoolStream = None  # type: ignore[assignment,misc]

# Requests kept to be sent again (HttpClient._built): a few per source.
MAX_KEPT_REQUESTS = 1024


class FetchError(Exception):
    """A request that did not produce a usable answer. ``str()`` is one line, secret-free."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class RateLimited(FetchError):
    """The host asked us to wait until ``until``."""

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class AuthError(FetchError):
    """401: the token is missing or invalid."""


class UpstreamError(FetchError):
    """An HTTP error status from the upstream (after retries, for the retryable ones)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NetworkError(FetchError):
    """Connection failures and timeouts, after retries."""


class MalformedResponse(FetchError):
    """A 2xx answer that is not what the API documents (HTML, truncated or wrong JSON)."""


class Stopped(FetchError):
    """The engine is stopping; the request was abandoned."""


@dataclass(frozen=True, slots=True)
class Validators:
    """What a conditional request sends back: the ETag and Last-Modified of the last answer."""

    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str]:
        out = {}
        if self.etag:
            out["If-None-Match"] = self.etag
        if self.last_modified:
            out["If-Modified-Since"] = self.last_modified
        return out

    def __bool__(self) -> bool:
        return bool(self.etag or self.last_modified)


@dataclass
class Fetched:
    """An answer: status, headers, the (bounded) body."""

    url: str
    status: int
    headers: httpx.Headers
    content: bytes
    links: dict[str, dict[str, str]]

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def validators(self) -> Validators:
        return Validators(self.headers.get("etag"), self.headers.get("last-modified"))

    def next_url(self) -> str | None:
        """The ``rel="next"`` URL of the Link header, verbatim."""
        return self.links.get("next", {}).get("url")

    def json(self, shape: Shape | None = None) -> Any:
        """The body as JSON (with ``shape``: only what it names, see
        :class:`~mrt_engine.untrusted_json.Shape`), or :class:`MalformedResponse` saying what
        came instead."""
        try:
            return parse_json(self.content, shape=shape)
        except ValueError as exc:
            kind = self.headers.get("content-type", "no content-type").split(";")[0]
            sample = shorten(self.content[:200].decode("utf-8", "replace"), 80)
            raise MalformedResponse(
                f"expected JSON from {redact_url(self.url)}, got {kind} "
                f"({len(self.content)} bytes: {sample!r}): {exc}"
            ) from None


@dataclass
class HttpStats:
    """What one poll spent: requests made, 304s, and the last rate-limit reading; its answers
    by status class (every try, a retried one too) and how many requests were tries again."""

    requests: int = 0
    not_modified: int = 0
    rate_limit: RateLimitInfo | None = None
    http_2xx: int = 0
    http_304: int = 0
    http_4xx: int = 0
    http_5xx: int = 0
    retries: int = 0

    def answered(self, status: int) -> None:
        """Count one answer of ``status`` (a redirect httpx followed counts as its last hop;
        other 1xx and 3xx answers are in ``requests`` only)."""
        if status == 304:
            self.http_304 += 1
        elif 200 <= status < 300:
            self.http_2xx += 1
        elif 400 <= status < 500:
            self.http_4xx += 1
        elif status >= 500:
            self.http_5xx += 1


class _SetCookies(httpx.Cookies):
    """A client's cookie jar that looks only at answers setting a cookie.

    httpx hands every answer to its jar, which first copies the request and every header of the
    answer into urllib's types: the costliest step of httpx's own handling of a ``304``. The jar
    takes cookies from ``Set-Cookie`` and ``Set-Cookie2`` only, so an answer with neither is
    skipped; the cookies kept and sent are the same.
    """

    # Once any answer set a cookie, requests are built afresh (the jar adds its cookies then).
    kept_one = False

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            self.kept_one = True
            super().extract_cookies(response)


class _HostGate:
    """Concurrency, spacing and the rate-limit block of one host."""

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy
        self.timeout = httpx.Timeout(policy.timeout_seconds)  # what each request is built with
        self.slots = threading.BoundedSemaphore(policy.max_concurrency or 4)
        self.lock = threading.Lock()
        self.next_start = 0.0  # monotonic
        self.blocked_until: datetime | None = None
        self.block_reason = ""
        self.secondary_strikes = 0


@dataclass
class HttpClient:
    """One per engine; thread-safe."""

    config: HttpConfig
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Clock = utcnow
    transport: httpx.BaseTransport | None = None
    rng: random.Random = field(default_factory=random.Random)
    # ``scheduler.poll_deadline_seconds``: the time each PollSession gets; None: no limit.
    poll_deadline_seconds: float | None = None
    _defaults: dict[str, HostPolicy] = field(default_factory=dict)
    _gates: dict[str, _HostGate] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: httpx.Client | None = None
    _backend: DeadlineBackend = field(default_factory=DeadlineBackend)
    _in_flight: int = 0  # requests being sent or read now (what abort cuts short)
    _lean: bool = False  # see _open
    _requests: dict[tuple[Any, ...], _Prepared] = field(default_factory=dict)  # see _built

    def __post_init__(self) -> None:
        self._client = httpx.Client(
            timeout=self.config.timeout_seconds,
            follow_redirects=True,
            headers={"User-Agent": self.config.user_agent},
            transport=self.transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        if isinstance(getattr(self._client, "_cookies", None), httpx.Cookies):
            self._client._cookies = _SetCookies()  # no public way to give a client its jar
        # Whether _open may skip Client.send's layers: the httpx internals it uses are there,
        # and the client has no auth and no hooks for them to run.
        self._lean = (
            hasattr(self._client, "_transport_for_url")
            and hasattr(self._client, "_build_redirect_request")
            and self._client.auth is None
            and not any(self._client.event_hooks.values())
        )
        if not install(self._client, self._backend) and self.transport is None:
            log.warning(
                "this httpx version hides its connection pool: a request deadline is checked"
                " between reads only"
            )

    # ----------------------------------------------------------------- host policy
    def set_host_defaults(self, url: str, policy: HostPolicy) -> None:
        """A platform's default limits for the host of ``url``; ``http.hosts`` overrides them."""
        with self._lock:
            self._defaults.setdefault(host_key(url), policy)

    def _gate(self, url: str) -> _HostGate:
        key = host_key(url)
        with self._lock:
            gate = self._gates.get(key)
            if gate is None:
                gate = self._gates[key] = _HostGate(self._policy(key))
            return gate

    def _policy(self, key: str) -> HostPolicy:
        """The limits of host ``key``, field by field: what the user set for this host
        (``host:port`` before the bare host name), else the user's global setting, else the
        platform's default, else the built-in one. An explicit setting always beats a default."""
        hosts = {name.lower(): policy for name, policy in self.config.hosts.items()}
        mine = [p for p in (hosts.get(key), hosts.get(key.rsplit(":", 1)[0])) if p is not None]
        platform = self._defaults.get(key, HostPolicy())
        global_timeout = (
            self.config.timeout_seconds
            if "timeout_seconds" in self.config.model_fields_set
            else None
        )

        def pick(name: str, user_global: Any, built_in: Any) -> Any:
            for value in (*(getattr(p, name) for p in mine), user_global):
                if value is not None:
                    return value
            value = getattr(platform, name)
            return built_in if value is None else value

        return HostPolicy(
            max_concurrency=pick("max_concurrency", None, 4),
            min_interval_seconds=pick("min_interval_seconds", None, 0.0),
            timeout_seconds=pick("timeout_seconds", global_timeout, self.config.timeout_seconds),
        )

    def host_policy(self, url: str) -> HostPolicy:
        """The limits that apply to the host of ``url`` (see :meth:`_policy` for precedence)."""
        return self._gate(url).policy

    def blocked_until(self, url: str) -> datetime | None:
        """When the host of ``url`` is rate-limited, the time it lifts; else ``None``."""
        gate = self._gate(url)
        until = gate.blocked_until
        return until if until and until > self.clock() else None

    # ----------------------------------------------------------------- requests
    def get(self, url: str, **kwargs: Any) -> Fetched:
        return self.request("GET", url, **kwargs)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        validators: Validators | None = None,
        stats: HttpStats | None = None,
        ok_statuses: tuple[int, ...] = (),
        deadline: PollDeadline | None = None,
    ) -> Fetched:
        """Send one logical request, retrying what is worth retrying, all of it before
        ``deadline`` (the poll's). See the module doc."""
        gate = self._gate(url)
        send_headers = dict(headers or {})
        if validators:
            send_headers.update(validators.headers())
        where = _Where(method, url)  # what an error names: the URL is redacted only then
        retries = 0
        while True:
            self._wait_for_host(gate, deadline)
            attempt = self._attempt_deadline(deadline)
            try:
                with self._turn(gate, deadline, where):
                    if stats is not None:
                        stats.requests += 1
                    fetched = self._send(
                        method, url, send_headers, params, json_body, gate, attempt
                    )
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if self.stop.is_set():
                    raise Stopped("engine stopping") from None
                if attempt.passed and deadline is not None and attempt.at >= deadline.at:
                    raise NetworkError(deadline.explain(f"{where}: no complete answer")) from None
                if attempt.passed:
                    problem = (
                        f"{where}: no complete answer within "
                        f"{self.config.request_deadline_seconds:g}s (http.request_deadline_seconds)"
                    )
                else:
                    problem = f"{type(exc).__name__} for {where}: {exc}"
                retries += 1
                if retries > self.config.max_retries:
                    raise NetworkError(
                        f"{problem} (after {plural(retries, 'try', 'tries')})"
                    ) from None
                self._sleep(self._backoff(retries), why=problem, deadline=deadline)
                if stats is not None:
                    stats.retries += 1
                continue
            info = rate_limit_info(fetched.headers, self.clock())
            status = fetched.status
            if stats is not None:
                stats.answered(status)
                if info is not None:
                    stats.rate_limit = info
            if status == 304:
                if stats is not None:
                    stats.not_modified += 1
                gate.secondary_strikes = 0
                return fetched
            if 200 <= status < 300 or status in ok_statuses:
                gate.secondary_strikes = 0
                if info and info.remaining == 0 and info.reset_at:
                    # The budget is spent: the next request would fail, so block until reset.
                    self._block(gate, info.reset_at, "rate limit budget exhausted")
                return fetched
            if status == 401:
                raise AuthError(f"401 Unauthorized from {where.host}: token missing or invalid")
            wait = self._rate_limit_wait(fetched, info, gate)
            if wait is not None:
                until = self.clock() + timedelta(seconds=wait)
                reason = f"rate limited by {where.host} ({status}); retry after {wait:.0f}s"
                if self._may_wait(wait, deadline) and retries < self.config.max_retries:
                    retries += 1
                    self._sleep(wait, why=reason, deadline=deadline)
                    if stats is not None:
                        stats.retries += 1
                    continue
                self._block(gate, until, reason)
                raise RateLimited(f"{reason}, until {until:%Y-%m-%d %H:%M:%S}Z", until)
            if status >= 500 or status == 408:
                retries += 1
                problem = f"{status} from {where}"
                if retries > self.config.max_retries:
                    raise UpstreamError(
                        f"{problem} (after {plural(retries, 'try', 'tries')})", status
                    )
                self._sleep(self._backoff(retries), why=problem, deadline=deadline)
                if stats is not None:
                    stats.retries += 1
                continue
            detail = shorten(fetched.content[:300].decode("utf-8", "replace"), 120)
            raise UpstreamError(f"{status} from {where}: {detail}", status)

    def _attempt_deadline(self, poll: PollDeadline | None) -> Deadline:
        """One try's deadline: the request deadline from now, or the poll's when that is sooner."""
        at = time.monotonic() + self.config.request_deadline_seconds
        if poll is not None:
            at = min(at, poll.at)
        return Deadline(at, self.stop)

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        params: Mapping[str, Any] | None,
        json_body: Any,
        gate: _HostGate,
        deadline: Deadline,
    ) -> Fetched:
        prepared = self._built(method, url, headers, params, json_body, gate)
        with self._lock:
            self._in_flight += 1
        try:
            return self._exchange(prepared, url, deadline)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _built(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        params: Mapping[str, Any] | None,
        json_body: Any,
        gate: _HostGate,
    ) -> _Prepared:
        """The request to send: a request without a body or parameters is built once and sent
        again as long as it is the same (a source asks for the same listing with the same
        validators poll after poll, until something changes). httpx sends a request as it is
        (``Client.send``: "the request is sent as-is, unmodified"); what the client adds when
        building it is its default headers and the cookies of its jar, and the jar is empty
        until an answer sets a cookie (then every request is built afresh)."""
        assert self._client is not None
        key = None
        if (
            params is None
            and json_body is None
            and not getattr(self._client.cookies, "kept_one", True)
        ):
            key = (method, url, tuple(headers.items()), id(gate))  # a gate lives as long
            kept = self._requests.get(key)
            if kept is not None:
                return kept
        prepared = _Prepared(
            self._client.build_request(
                method,
                parsed_url(url),
                headers=headers,
                params=params,
                json=json_body,
                timeout=gate.timeout,
            ),
            kept=key is not None,
        )
        if key is not None:
            if len(self._requests) >= MAX_KEPT_REQUESTS:
                self._requests.clear()  # validators moved on: most kept ones are stale
            self._requests[key] = prepared
        return prepared

    def _exchange(self, prepared: _Prepared, url: str, deadline: Deadline) -> Fetched:
        """Send the request and read its whole (bounded) answer before ``deadline``."""
        request = prepared.request
        with within(deadline):
            response = self._open(prepared)
            try:
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.config.max_response_bytes:
                        raise MalformedResponse(
                            f"answer from {redact_url(url)} is larger than "
                            f"{self.config.max_response_bytes} bytes; refused"
                        )
                    chunks.append(chunk)
                    if deadline.left() <= 0:  # the backend ends a blocked read; this, the rest
                        deadline.passed = True
                        raise httpx.ReadTimeout("request deadline passed", request=request)
            finally:
                response.close()
        return Fetched(
            url=str(response.url),
            status=response.status_code,
            headers=response.headers,
            content=b"".join(chunks),
            links=_links(response),
        )

    def _open(self, prepared: _Prepared) -> httpx.Response:
        """Send the request; its answer, streaming: what ``Client.send(request, stream=True)``
        does for this client, without the layers that have nothing to do for it.

        An idle engine's CPU goes mostly to its conditional requests, and a request run after a
        sleep runs on cold caches: every layer costs several times what it costs in a loop.
        ``Client.send`` walks auth, redirect and hook layers, each in a generator, and times
        the answer in a stream of its own; this client has no auth, no hooks and needs no
        timing, so the request goes to the transport the client would pick (a proxy's, when
        the environment names one) and its answer gets what the client gives one: the request,
        the cookie jar's look at it (:class:`_SetCookies`), and the next hop of a redirect
        (followed by ``Client.send``, as before). A kept request goes on to httpx's own
        transport's pool as that transport would hand it over (:meth:`_Prepared.to_pool`),
        built once too. ``tests/perf/bench_idle.py`` measures it.
        """
        client = self._client
        assert client is not None
        request = prepared.request
        if not self._lean or client.is_closed or request.url.userinfo:
            # A URL's user:password is auth the client builds: its own path does that.
            return client.send(request, stream=True)
        transport = client._transport_for_url(request.url)
        try:
            if prepared.kept and type(transport) is httpx.HTTPTransport and _PoolStream:
                response = prepared.to_pool(transport._pool)
            else:
                response = transport.handle_request(request)
        except httpx.RequestError as exc:
            if exc._request is None:  # as Client.send says which request failed
                exc.request = request
            raise
        response.request = request
        try:
            client.cookies.extract_cookies(response)
            if not response.has_redirect_location:
                return response
            response.read()
            hop = client._build_redirect_request(request, response)
        except BaseException:
            response.close()
            raise
        response.close()
        return client.send(hop, stream=True)

    # ----------------------------------------------------------------- waiting
    @contextmanager
    def _turn(
        self, gate: _HostGate, deadline: PollDeadline | None, where: _Where
    ) -> Iterator[None]:
        """Hold one of the host's slots, spaced ``min_interval_seconds`` after the last start."""
        while not gate.slots.acquire(timeout=0.2):
            if self.stop.is_set():
                raise Stopped("engine stopping")
            if deadline is not None and deadline.left() <= 0:
                raise NetworkError(
                    deadline.explain(f"{where}: still waiting for a turn on its host")
                )
        try:
            spacing = gate.policy.min_interval_seconds or 0.0
            if spacing:
                with gate.lock:
                    now = time.monotonic()
                    start = max(now, gate.next_start)
                    gate.next_start = start + spacing
                if start > now:
                    self._sleep(start - now, why="host spacing", deadline=deadline)
            yield
        finally:
            gate.slots.release()

    def _wait_for_host(self, gate: _HostGate, deadline: PollDeadline | None) -> None:
        if self.stop.is_set():
            raise Stopped("engine stopping")
        until = gate.blocked_until
        if until is None:
            return
        wait = (until - self.clock()).total_seconds()
        if wait <= 0:
            gate.blocked_until = None
            return
        if self._may_wait(wait, deadline):
            self._sleep(wait, why=gate.block_reason, deadline=deadline)
            return
        raise RateLimited(
            f"{gate.block_reason}; host blocked until {until:%Y-%m-%d %H:%M:%S}Z", until
        )

    def _may_wait(self, seconds: float, deadline: PollDeadline | None) -> bool:
        """Whether a rate-limit wait is short enough to sleep inline (else the host is skipped)."""
        if seconds > self.config.max_inline_wait_seconds:
            return False
        return deadline is None or seconds < deadline.left()

    def _block(self, gate: _HostGate, until: datetime, reason: str) -> None:
        with gate.lock:
            if gate.blocked_until is None or until > gate.blocked_until:
                gate.blocked_until = until
                gate.block_reason = reason
        log.warning("%s; pausing requests until %s", reason, until.isoformat())

    def _rate_limit_wait(
        self, fetched: Fetched, info: RateLimitInfo | None, gate: _HostGate
    ) -> float | None:
        """Seconds to wait if this error answer is a rate limit, else ``None``."""
        status = fetched.status
        if status not in (403, 429):
            return None
        asked = retry_after(fetched.headers, self.clock())
        if asked is not None:
            gate.secondary_strikes += 1
            return min(max(asked, 0.0), MAX_RATE_LIMIT_WAIT)
        if info is not None and info.remaining == 0 and info.reset_at is not None:
            return max((info.reset_at - self.clock()).total_seconds(), 1.0)
        says_limit = b"rate limit" in fetched.content[:2000].lower()
        if status == 429 or says_limit:
            gate.secondary_strikes += 1
            return secondary_limit_wait(gate.secondary_strikes)
        return None

    def _backoff(self, retry: int) -> float:
        base = doubling(self.config.retry_initial_seconds, retry - 1, self.config.retry_max_seconds)
        return base * self.rng.uniform(0.8, 1.2)

    def _sleep(self, seconds: float, *, why: str, deadline: PollDeadline | None = None) -> None:
        if seconds <= 0:
            return
        if deadline is not None and seconds >= deadline.left():
            raise NetworkError(deadline.explain(why))  # sleeping first would only fail later
        log.debug("waiting %.1fs: %s", seconds, why)
        if self.stop.wait(seconds):
            raise Stopped("engine stopping")

    def abort(self) -> None:
        """Cut every request in flight now (the engine is stopping): a read blocked on a silent
        or trickling upstream returns at once, and its poll is discarded."""
        with self._lock:
            busy = self._in_flight
        self._backend.cut()  # idle kept-alive connections too: nothing more will be sent
        if busy:
            log.info("cut %s short", plural(busy, "request in flight", "requests in flight"))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class _Prepared:
    """A request, and when it is kept to be sent again (:meth:`HttpClient._built`), what the
    pool of httpx's transport is handed for it, built at its first send."""

    __slots__ = ("_core", "kept", "request")

    def __init__(self, request: httpx.Request, *, kept: bool) -> None:
        self.request = request
        self.kept = kept
        self._core: httpcore.Request | None = None

    def to_pool(self, pool: Any) -> httpx.Response:
        """Send through ``pool`` what ``httpx.HTTPTransport.handle_request`` would, and wrap its
        answer as that does (the same httpcore request, the same errors, the same stream)."""
        core = self._core
        if core is None:
            request, url = self.request, self.request.url
            core = self._core = httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        with _pool_errors():
            answer = pool.handle_request(core)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_PoolStream(answer.stream),
            extensions=answer.extensions,
        )


class _Where:
    """``METHOD url`` for messages, the URL redacted: written only when a message needs it (a
    request that goes well needs none, and redacting costs more than the rest of a request's
    own bookkeeping)."""

    __slots__ = ("_text", "method", "url")

    def __init__(self, method: str, url: str) -> None:
        self.method = method
        self.url = url
        self._text: str | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def __str__(self) -> str:
        if self._text is None:
            self._text = f"{self.method} {redact_url(self.url)}"
        return self._text


def _links(response: httpx.Response) -> dict[str, dict[str, str]]:
    try:
        return response.links
    except (ValueError, KeyError):
        return {}


# A source asks for the same few URLs poll after poll (its listing, the same until its cursor
# moves): each is parsed once (~20 µs of CPU), not on every request.
@functools.lru_cache(maxsize=1024)
def parsed_url(url: str) -> httpx.URL:
    """``url`` as httpx parses it (:class:`httpx.InvalidURL` when it cannot); remembered."""
    return httpx.URL(url)


@functools.lru_cache(maxsize=1024)
def host_key(url: str) -> str:
    """``host:port`` of ``url`` (the port defaulted from the scheme): one rate-limit budget."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


class PollSession:
    """The HTTP view one poll gets: the shared client, counting what this poll spends, and the
    poll's deadline (``client.poll_deadline_seconds`` from when the session starts)."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.stats = HttpStats()
        seconds = client.poll_deadline_seconds
        self.deadline = PollDeadline.starting_now(seconds) if seconds else None

    def get(self, url: str, **kwargs: Any) -> Fetched:
        return self.request("GET", url, **kwargs)

    def request(self, method: str, url: str, **kwargs: Any) -> Fetched:
        return self.client.request(method, url, stats=self.stats, deadline=self.deadline, **kwargs)

    @property
    def stopping(self) -> bool:
        return self.client.stop.is_set()
