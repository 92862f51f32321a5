"""Deadlines: one poll's (:class:`PollDeadline`, checked by the HTTP client before every wait)
and one request's (:class:`Deadline`, enforced below httpx on every socket operation).

httpx's timeouts bound one socket operation each (a connect, one read, one write), never a
whole request: an upstream that sends ``Content-Length: 100000`` and then one byte a second
never trips a 20 s read timeout, and its answer takes a day (encode/httpx#1450 is the open
issue; httpx has no total timeout). So the network backend of httpx's connection pool is
wrapped: while a request runs :func:`within` its :class:`Deadline`, each connect, TLS
handshake, read and write waits at most ``min(its own timeout, the time left)``, and fails at
once (an ``httpcore`` timeout, which httpx raises as its own) when no time is left or the
engine is stopping. A single blocked read therefore ends at the deadline too.

:meth:`DeadlineBackend.cut` shuts down every socket the backend opened, which wakes a read
blocked in another thread at once: the engine's stop does not wait for a silent upstream.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx


@dataclass(frozen=True, slots=True)
class PollDeadline:
    """When one poll's HTTP must be done (``time.monotonic()``), and its configured length."""

    at: float
    seconds: float

    @classmethod
    def starting_now(cls, seconds: float) -> PollDeadline:
        return cls(time.monotonic() + seconds, seconds)

    def left(self) -> float:
        return self.at - time.monotonic()

    def explain(self, problem: str) -> str:
        """The poll's error when its deadline ends it: what it was doing, and the setting."""
        return (
            f"{problem}; stopped at the poll deadline of {self.seconds:g}s"
            " (scheduler.poll_deadline_seconds)"
        )


class Deadline:
    """When the request in hand must be done (``time.monotonic()``), and the engine's stop."""

    def __init__(self, at: float, stop: threading.Event | None = None) -> None:
        self.at = at
        self.stop = stop
        self.passed = False  # set when an operation failed because this deadline came

    def left(self) -> float:
        return self.at - time.monotonic()


_current: ContextVar[Deadline | None] = ContextVar("mrt_http_deadline", default=None)


@contextlib.contextmanager
def within(deadline: Deadline) -> Iterator[Deadline]:
    """Run the socket operations of this thread's requests under ``deadline``."""
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


def _bounded(timeout: float | None, error: type[Exception]) -> tuple[float | None, bool]:
    """The timeout for one operation, and whether the deadline (not ``timeout``) sets it."""
    deadline = _current.get()
    if deadline is None:
        return timeout, False
    if deadline.stop is not None and deadline.stop.is_set():
        raise error("engine stopping")
    left = deadline.left()
    if left <= 0:
        deadline.passed = True
        raise error("request deadline passed")
    if timeout is not None and timeout < left:
        return timeout, False
    return left, True


def _timed_out(by_deadline: bool) -> None:
    """An operation timed out: when the deadline set its timeout, the deadline has passed."""
    deadline = _current.get()
    if by_deadline and deadline is not None:
        deadline.passed = True


# Each operation below is a plain try/except rather than a context manager: every request makes
# several, and a generator-based context manager costs more than the check itself.


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation honours the current :class:`Deadline`."""

    def __init__(self, inner: httpcore.NetworkStream, backend: DeadlineBackend) -> None:
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        bounded, by_deadline = _bounded(timeout, httpcore.ReadTimeout)
        try:
            return self._inner.read(max_bytes, bounded)
        except httpcore.TimeoutException:
            _timed_out(by_deadline)
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:  # h11 ends a message with an empty write: nothing to send, nothing to wait
            return
        bounded, by_deadline = _bounded(timeout, httpcore.WriteTimeout)
        try:
            self._inner.write(buffer, bounded)
        except httpcore.TimeoutException:
            _timed_out(by_deadline)
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded, by_deadline = _bounded(timeout, httpcore.ConnectTimeout)
        try:
            inner = self._inner.start_tls(ssl_context, server_hostname, bounded)
        except httpcore.TimeoutException:
            _timed_out(by_deadline)
            raise
        return self._backend.track(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, with deadlines and a way to cut every open socket."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()
        self._streams: weakref.WeakSet[_DeadlineStream] = weakref.WeakSet()
        self._lock = threading.Lock()

    def track(self, inner: httpcore.NetworkStream) -> _DeadlineStream:
        stream = _DeadlineStream(inner, self)
        with self._lock:
            self._streams.add(stream)
        return stream

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded, by_deadline = _bounded(timeout, httpcore.ConnectTimeout)
        try:
            inner = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        except httpcore.TimeoutException:
            _timed_out(by_deadline)
            raise
        return self.track(inner)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded, by_deadline = _bounded(timeout, httpcore.ConnectTimeout)
        try:
            inner = self._inner.connect_unix_socket(path, bounded, socket_options)
        except httpcore.TimeoutException:
            _timed_out(by_deadline)
            raise
        return self.track(inner)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

    def cut(self) -> int:
        """Shut down every socket still open; a read blocked on one returns at once."""
        with self._lock:
            streams = list(self._streams)
        cut = 0
        for stream in streams:
            sock = stream.get_extra_info("socket")
            if not isinstance(sock, socket.socket):
                continue
            # socket.socket's own shutdown, not SSLSocket's (which also drops its TLS state
            # under the reading thread's feet): the reader then sees an orderly end of stream.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
                cut += 1
        return cut


def install(client: httpx.Client, backend: DeadlineBackend) -> bool:
    """Put ``backend`` under every transport ``client`` made (its own and any proxy's).

    httpx does not pass httpcore's ``network_backend`` argument through, so this sets it on the
    pools it built (httpcore's ``ConnectionPool`` and its proxy subclasses hand it to each new
    connection). Returns False when there is no such pool (a transport given by a test): the
    caller's check between chunks then still ends a request at its deadline, a little later.
    """
    transports = [getattr(client, "_transport", None)]
    transports += list(getattr(client, "_mounts", {}).values())
    installed = False
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if pool is not None and hasattr(pool, "_network_backend"):
            pool._network_backend = backend
            installed = True
    return installed
