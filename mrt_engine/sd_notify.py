"""Tell systemd how the engine is doing (sd_notify(3)), with nothing but the standard library.

A service of ``Type=notify`` gets ``NOTIFY_SOCKET`` in its environment: the address of a
datagram socket (a path, or an abstract name written with a leading ``@``). The engine sends
``READY=1`` once it is up (store open, scheduler started), ``STATUS=...`` lines that
``systemctl status`` shows, ``STOPPING=1`` when it shuts down and, when the unit sets
``WatchdogSec=`` (``WATCHDOG_USEC``), ``WATCHDOG=1`` at half that interval from the engine's
main loop, so a hung engine is restarted. Without ``NOTIFY_SOCKET`` nothing is sent. A send that
fails is one debug line, never an error: readiness is a courtesy to the service manager, and the
engine works the same without it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(value: str) -> str | bytes | None:
    """The socket address ``NOTIFY_SOCKET`` names: a path, or an abstract name (``@name``,
    sent as a leading NUL byte); ``None`` for what this module cannot use (a ``vsock:``
    address, anything relative)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_seconds(environ: Mapping[str, str]) -> float | None:
    """The watchdog interval systemd expects pings within (sd_watchdog_enabled(3)): from
    ``WATCHDOG_USEC``, when ``WATCHDOG_PID`` is unset or this process's; else ``None``."""
    pid = environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


class SystemdNotifier:
    """Sends state lines to ``NOTIFY_SOCKET`` (nothing when it is unset)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        raw = environ.get("NOTIFY_SOCKET", "")
        self.address = _address(raw) if raw else None
        if raw and self.address is None:
            log.debug("NOTIFY_SOCKET %r is not a socket this engine can use; not notifying", raw)
        self.watchdog = watchdog_seconds(environ) if self.address is not None else None
        self._last_ping = 0.0
        self._status: str | None = None  # the last STATUS= sent

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram; whether it was sent. Never raises."""
        if self.address is None:
            return False
        message = "\n".join(lines).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            log.debug("could not notify the service manager: %s", exc)
            return False
        return True

    def status(self, text: str) -> bool:
        """A one-line status (``systemctl status`` shows it); sent when it changed."""
        line = " ".join(text.split())
        if line == self._status:
            return False
        self._status = line
        return self.send(f"STATUS={line}")

    def ready(self, text: str) -> bool:
        """The engine is up: the service manager may start what depends on it."""
        self._last_ping = time.monotonic()
        self._status = " ".join(text.split())
        return self.send("READY=1", f"STATUS={self._status}")

    def stopping(self, text: str = "stopping") -> bool:
        """The engine is shutting down."""
        return self.send("STOPPING=1", f"STATUS={' '.join(text.split())}")

    def wait_seconds(self, longest: float) -> float:
        """How long the main loop may sleep: ``longest``, or less when the watchdog needs
        pings more often (every half of its interval)."""
        if self.watchdog is None:
            return longest
        return max(min(longest, self.watchdog / 2), 0.01)

    def keep_alive(self) -> bool:
        """Ping the watchdog when half its interval has passed since the last ping."""
        if self.watchdog is None:
            return False
        now = time.monotonic()
        if now - self._last_ping < self.watchdog * 0.45:  # the loop wakes every half interval
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")
