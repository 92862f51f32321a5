"""SIGTERM, SIGHUP and SIGINT end the console the way ``q`` does: the engine stops cleanly.

A service manager sends SIGTERM; a terminal that goes away (an SSH session dropping) sends
SIGHUP. Python's default for both ends the process on the spot: the embedded engine never stops,
its leases stay held, the store keeps its -wal and -shm files, the demo leaves its folder. Here a
signal only asks: while the app runs it exits at the next turn of its event loop, and the
caller's ``finally`` stops the engine; a signal during start-up is remembered and the app exits
as soon as it is up; one during the engine's stop changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType, TracebackType

from textual.app import App

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class StopSignals:
    """A context that turns the stop signals into a request to exit the attached app."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._app: App | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def attach(self, app: App) -> None:
        """Called by the app once its event loop runs (on mount): signals now exit it."""
        self._app, self._loop = app, asyncio.get_running_loop()
        if self.received is not None:
            app.exit()

    def detach(self) -> None:
        self._app = self._loop = None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # Runs in the main thread, between two bytecodes of whatever it was doing (the app's
        # event loop, or the engine's stop): only note the signal and wake the loop.
        if self.received is not None:
            log.warning("received %s while already stopping", signal.Signals(signum).name)
            return
        self.received = signal.Signals(signum)
        if signum == signal.SIGHUP:
            # A hang-up comes with a SIGCONT (the kernel sends both to the session leader), and
            # Textual takes SIGCONT for a return from ctrl+z: it would restart its output on the
            # dead terminal and block the exit forever. There is no terminal to resume.
            signal.signal(signal.SIGCONT, signal.SIG_DFL)
        log.info("received %s: the console stops its engine and exits", self.received.name)
        if self._app is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._app.exit)
