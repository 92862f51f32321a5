"""A small threaded HTTP server for simulating an upstream on 127.0.0.1.

Used by ``mrt-tui --demo`` and by the integration tests. Each simulator speaks one platform's
documented API; this base adds what every one needs: routing, JSON answers, request recording,
and faults injected on demand (status codes with headers, HTML instead of JSON, malformed or
truncated bodies, slow answers).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    """One request as the simulator saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    target: str = ""  # the request-target as sent (path and raw query)
    received_at: float = 0.0  # time.time() when it arrived (set by dispatch)

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Fault shapes that need the socket: cut the body short, or stall before answering.
    truncate_to: int | None = None
    delay: float = 0.0

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(data).encode()
        return cls(
            status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        )


@dataclass
class Fault:
    """An answer to give instead of the real one, to the next ``times`` matching requests."""

    status: int = 500
    body: bytes | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = "status"  # status | html | malformed | truncated | slow
    delay: float = 0.0
    path: str = ""  # only requests whose path starts with this
    method: str = ""
    times: int = 1
    # A body that echoes the request, like a debugging proxy or a chatty error page: ``{target}``
    # becomes the request-target, ``{method}`` the method, ``{<header-name>}`` that header.
    echo: str | None = None

    def response(self, request: Request | None = None) -> Response:
        if self.kind == "html":
            html = b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>blocked</body></html>"
            return Response(200, html, {"Content-Type": "text/html; charset=utf-8", **self.headers})
        if self.kind == "malformed":
            return Response(
                200, b'{"items": [1, 2,', {"Content-Type": "application/json", **self.headers}
            )
        if self.kind == "truncated":
            body = b'[{"number": 1, "title": "cut here'
            return Response(
                200,
                body,
                {"Content-Type": "application/json", **self.headers},
                truncate_to=len(body) // 2,
            )
        if self.kind == "slow":
            return Response(200, b"[]", {"Content-Type": "application/json"}, delay=self.delay)
        body = (
            self.body
            if self.body is not None
            else json.dumps({"message": f"simulated {self.status}"})
        )
        if self.echo is not None:
            body = _echo(self.echo, request)
        if isinstance(body, str):
            body = body.encode()
        return Response(self.status, body, {"Content-Type": "application/json", **self.headers})


def _echo(template: str, request: Request | None) -> str:
    """``template`` with ``{target}``, ``{method}`` and ``{<header-name>}`` filled from ``request``."""
    fields = {} if request is None else {**request.headers, "target": request.target}
    if request is not None:
        fields["method"] = request.method
    return re.sub(r"\{([a-z0-9-]+)\}", lambda m: fields.get(m.group(1), ""), template)


Handler = Callable[[Request, re.Match[str]], Response]


class Simulator:
    """Routes, faults and a request log over a ``ThreadingHTTPServer`` bound to 127.0.0.1."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._faults: list[Fault] = []
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        sim = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # An answer goes out in two sends (head, body): with Nagle's algorithm the body
            # waited ~40 ms for the client's delayed ACK on every keep-alive exchange. Real
            # servers (nginx, the platforms' fronts) set TCP_NODELAY too.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    self.path,
                )
                response = sim.dispatch(request)
                if response.delay:
                    time.sleep(response.delay)
                try:
                    self.send_response(response.status)
                    payload = response.body
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    if response.truncate_to is not None:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    if response.truncate_to is not None:
                        self.wfile.write(payload[: response.truncate_to])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer((host, port), _Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(target=self._serve, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        """Accept connections until :meth:`stop` writes to the wake pipe.

        ``serve_forever`` looks for its shutdown flag only every 0.5 s, so every stop waited
        that long; a pipe in the same selector ends the loop the moment it is written to.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self.server, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = selector.select()
                if any(key.fileobj == self._wake_r for key, _ in ready):
                    return
                self.server._handle_request_noblock()

    def stop(self) -> None:
        """Stop at once (idempotent)."""
        if self._wake_w < 0:
            return
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join()
            self._thread = None
        self.server.server_close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ routing
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern + r"\Z"), handler))

    def inject(self, fault: Fault) -> None:
        """Answer the next ``fault.times`` matching requests with ``fault``."""
        with self.lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def dispatch(self, request: Request) -> Response:
        request.received_at = time.time()
        with self.lock:
            self.requests.append(request)
            for fault in self._faults:
                if request.path.startswith(fault.path) and (
                    not fault.method or fault.method == request.method
                ):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return self.decorate(request, fault.response(request), fault=True)
        for method, pattern, handler in self._routes:
            if method != request.method:
                continue
            match = pattern.match(request.path)
            if match:
                try:
                    return self.decorate(request, handler(request, match), fault=False)
                except Exception as exc:  # a simulator bug shows as a 500, like a real server's
                    return Response.json({"message": f"simulator error: {exc}"}, 500)
        return Response.json({"message": "Not Found"}, 404)

    @staticmethod
    def conditional(
        request: Request, payload: Any, headers: dict[str, str] | None = None
    ) -> Response:
        """A JSON answer with a weak ETag; ``304`` when the request's If-None-Match matches."""
        body = json.dumps(payload).encode()
        etag = 'W/"' + hashlib.sha256(body).hexdigest()[:40] + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(304, b"", {"ETag": etag, **(headers or {})})
        return Response(
            200,
            body,
            {"Content-Type": "application/json; charset=utf-8", "ETag": etag, **(headers or {})},
        )

    def decorate(self, request: Request, response: Response, *, fault: bool) -> Response:
        """Hook for headers every answer carries (rate limits)."""
        return response

    def requests_to(self, prefix: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]
