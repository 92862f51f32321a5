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

Sleeps wait on the engine's stop event, so shutdown never waits for a backoff to finish.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from mrt_engine.config import HostPolicy, HttpConfig
from mrt_engine.secrets import redact, redact_url
from mrt_engine.text import excerpt
from mrt_engine.timeutil import Clock, utcnow
from mrt_engine.wording import plural

log = logging.getLogger(__name__)

SECONDARY_LIMIT_MIN_WAIT = 60.0
SECONDARY_LIMIT_MAX_WAIT = 900.0
_RATELIMIT_T = re.compile(r"(?:^|[;,\s])(?:t|reset)\s*=\s*(\d+)")


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


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    remaining: int | None
    reset_at: datetime | None


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

    def json(self) -> Any:
        """The body as JSON, or :class:`MalformedResponse` saying what came instead."""
        try:
            return json.loads(self.content)
        except (ValueError, UnicodeDecodeError) as exc:
            kind = self.headers.get("content-type", "no content-type").split(";")[0]
            sample = excerpt(self.content[:200].decode("utf-8", "replace"), 80)
            raise MalformedResponse(
                f"expected JSON from {redact_url(self.url)}, got {kind} "
                f"({len(self.content)} bytes: {sample!r}): {exc}"
            ) from None


@dataclass
class HttpStats:
    """What one poll spent: requests made, 304s, and the last rate-limit reading."""

    requests: int = 0
    not_modified: int = 0
    rate_limit: RateLimitInfo | None = None


class _HostGate:
    """Concurrency, spacing and the rate-limit block of one host."""

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy
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
    _defaults: dict[str, HostPolicy] = field(default_factory=dict)
    _gates: dict[str, _HostGate] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: httpx.Client | None = None

    def __post_init__(self) -> None:
        self._client = httpx.Client(
            timeout=self.config.timeout_seconds,
            follow_redirects=True,
            headers={"User-Agent": self.config.user_agent},
            transport=self.transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
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
                base = self._defaults.get(key, HostPolicy())
                hostname = key.rsplit(":", 1)[0]
                override = (
                    self.config.hosts.get(key) or self.config.hosts.get(hostname) or HostPolicy()
                )
                merged = HostPolicy(
                    max_concurrency=override.max_concurrency or base.max_concurrency or 4,
                    min_interval_seconds=(
                        override.min_interval_seconds
                        if override.min_interval_seconds is not None
                        else base.min_interval_seconds or 0.0
                    ),
                    timeout_seconds=override.timeout_seconds or base.timeout_seconds,
                )
                gate = self._gates[key] = _HostGate(merged)
            return gate

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
    ) -> Fetched:
        """Send one logical request, retrying what is worth retrying. See the module doc."""
        host = urlsplit(url).hostname or ""
        gate = self._gate(url)
        send_headers = dict(headers or {})
        if validators:
            send_headers.update(validators.headers())
        retries = 0
        while True:
            self._wait_for_host(gate, url)
            try:
                with self._turn(gate):
                    if stats is not None:
                        stats.requests += 1
                    fetched = self._send(method, url, send_headers, params, json_body, gate)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__} for {method} {redact_url(url)}: {exc}"
                retries += 1
                if retries > self.config.max_retries:
                    raise NetworkError(
                        f"{problem} (after {plural(retries, 'try', 'tries')})"
                    ) from None
                self._sleep(self._backoff(retries), why=problem)
                continue
            info = _rate_limit_info(fetched.headers, self.clock())
            if stats is not None and info is not None:
                stats.rate_limit = info
            status = fetched.status
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
            where = f"{method} {redact_url(url)}"
            if status == 401:
                raise AuthError(f"401 Unauthorized from {host}: token missing or invalid")
            wait = self._rate_limit_wait(fetched, info, gate)
            if wait is not None:
                until = self.clock() + timedelta(seconds=wait)
                reason = f"rate limited by {host} ({status}); retry after {wait:.0f}s"
                if (
                    wait <= self.config.max_inline_wait_seconds
                    and retries < self.config.max_retries
                ):
                    retries += 1
                    self._sleep(wait, why=reason)
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
                self._sleep(self._backoff(retries), why=problem)
                continue
            detail = excerpt(fetched.content[:300].decode("utf-8", "replace"), 120)
            raise UpstreamError(f"{status} from {where}: {detail}", status)

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        params: Mapping[str, Any] | None,
        json_body: Any,
        gate: _HostGate,
    ) -> Fetched:
        assert self._client is not None
        timeout = gate.policy.timeout_seconds or self.config.timeout_seconds
        request = self._client.build_request(
            method, url, headers=headers, params=params, json=json_body, timeout=timeout
        )
        response = self._client.send(request, stream=True)
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
        finally:
            response.close()
        return Fetched(
            url=str(response.url),
            status=response.status_code,
            headers=response.headers,
            content=b"".join(chunks),
            links=_links(response),
        )

    # ----------------------------------------------------------------- waiting
    @contextmanager
    def _turn(self, gate: _HostGate) -> Iterator[None]:
        """Hold one of the host's slots, spaced ``min_interval_seconds`` after the last start."""
        while not gate.slots.acquire(timeout=0.2):
            if self.stop.is_set():
                raise Stopped("engine stopping")
        try:
            spacing = gate.policy.min_interval_seconds or 0.0
            if spacing:
                with gate.lock:
                    now = time.monotonic()
                    start = max(now, gate.next_start)
                    gate.next_start = start + spacing
                if start > now:
                    self._sleep(start - now, why="host spacing")
            yield
        finally:
            gate.slots.release()

    def _wait_for_host(self, gate: _HostGate, url: str) -> None:
        if self.stop.is_set():
            raise Stopped("engine stopping")
        until = gate.blocked_until
        if until is None:
            return
        wait = (until - self.clock()).total_seconds()
        if wait <= 0:
            gate.blocked_until = None
            return
        if wait <= self.config.max_inline_wait_seconds:
            self._sleep(wait, why=gate.block_reason)
            return
        raise RateLimited(
            f"{gate.block_reason}; host blocked until {until:%Y-%m-%d %H:%M:%S}Z", until
        )

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
        retry_after = _retry_after(fetched.headers, self.clock())
        if retry_after is not None:
            gate.secondary_strikes += 1
            return max(retry_after, 0.0)
        if info is not None and info.remaining == 0 and info.reset_at is not None:
            return max((info.reset_at - self.clock()).total_seconds(), 1.0)
        says_limit = b"rate limit" in fetched.content[:2000].lower()
        if status == 429 or says_limit:
            # GitHub's secondary limit without headers: at least a minute, then doubling.
            gate.secondary_strikes += 1
            wait = SECONDARY_LIMIT_MIN_WAIT * 2 ** (gate.secondary_strikes - 1)
            return min(wait, SECONDARY_LIMIT_MAX_WAIT)
        return None

    def _backoff(self, retry: int) -> float:
        base = min(
            self.config.retry_initial_seconds * 2 ** (retry - 1), self.config.retry_max_seconds
        )
        return base * self.rng.uniform(0.8, 1.2)

    def _sleep(self, seconds: float, *, why: str) -> None:
        if seconds <= 0:
            return
        log.debug("waiting %.1fs: %s", seconds, why)
        if self.stop.wait(seconds):
            raise Stopped("engine stopping")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _links(response: httpx.Response) -> dict[str, dict[str, str]]:
    try:
        return response.links
    except (ValueError, KeyError):
        return {}


def _retry_after(headers: httpx.Headers, now: datetime) -> float | None:
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max((when - now).total_seconds(), 0.0)
    ratelimit = headers.get("ratelimit")
    if ratelimit:
        match = _RATELIMIT_T.search(ratelimit)
        remaining = re.search(r"(?:^|[;,\s])(?:r|remaining)\s*=\s*(\d+)", ratelimit)
        if match and (remaining is None or remaining.group(1) == "0"):
            return float(match.group(1))
    return None


def _rate_limit_info(headers: httpx.Headers, now: datetime) -> RateLimitInfo | None:
    remaining = headers.get("x-ratelimit-remaining")
    reset = headers.get("x-ratelimit-reset")
    if remaining is None and reset is None:
        return None
    try:
        left = int(remaining) if remaining is not None else None
    except ValueError:
        left = None
    reset_at = None
    if reset is not None:
        try:
            number = float(reset)
        except ValueError:
            number = None
        if number is not None:
            # Epoch seconds (GitHub) or, when small, seconds from now.
            if number > 10**9:
                reset_at = datetime.fromtimestamp(number, UTC)
            else:
                reset_at = now + timedelta(seconds=number)
    return RateLimitInfo(left, reset_at)


def host_key(url: str) -> str:
    """``host:port`` of ``url`` (the port defaulted from the scheme): one rate-limit budget."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


class PollSession:
    """The HTTP view one poll gets: the shared client, counting what this poll spends."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.stats = HttpStats()

    def get(self, url: str, **kwargs: Any) -> Fetched:
        return self.client.request("GET", url, stats=self.stats, **kwargs)

    def request(self, method: str, url: str, **kwargs: Any) -> Fetched:
        return self.client.request(method, url, stats=self.stats, **kwargs)

    @property
    def stopping(self) -> bool:
        return self.client.stop.is_set()
