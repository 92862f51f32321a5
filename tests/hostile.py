"""Hostile upstreams on 127.0.0.1, as raw socket servers: they misbehave below HTTP's level.

* ``trickle``: reads the request, answers headers with ``Content-Length: 100000``, then sends one
  byte per ``interval`` seconds (a slow-loris upstream: no single read ever times out);
* ``silent``: accepts the connection and never answers.

Every connection is held until the client goes away or :meth:`HostileServer.stop` closes it.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class HostileServer:
    """A raw TCP server that accepts HTTP requests and misbehaves as ``mode`` says."""

    def __init__(self, mode: str = "trickle", interval: float = 1.0) -> None:
        assert mode in ("trickle", "silent")
        self.mode = mode
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept, name=f"hostile-{mode}", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> HostileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            with self._lock:
                self.requests += 1
            if self.mode == "silent":
                self._stop.wait()
                return
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n["
            )
            while not self._stop.wait(self.interval):
                conn.sendall(b" ")  # JSON whitespace: the body stays valid, only slow
        except OSError:
            return
