"""A host's poll workers (its "lane"): as many threads as the host takes polls at once, but only
as many running as the polls need to stay on time.

Sources polled on the same tick are due together. A thread pool hands each of them to a thread of
its own at once, so when the host answers fast (a 304 in a millisecond) four threads wake for
four polls of a millisecond each and pass the interpreter's lock to and fro between every read
and write of their sockets: an idle engine spent more on those hand-overs than on the polls
(``tests/perf/bench_idle.py``: 1.03–1.10 ms of CPU per idle poll with four workers, 0.72–0.81 ms
with one). A :class:`LanePool` runs a lane's due polls one after another on one thread while they
are quick, and starts the next waiting poll on another thread when it has waited
``spill_seconds`` for a busy one, so a slow or trickling upstream still holds only the threads
its own polls need (up to ``size``; past that, a poll waits for a thread, as in any pool).

The order of the polls is kept: the oldest waiting poll is always the next to start.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from apscheduler.executors.pool import BasePoolExecutor

# How long a due poll waits for a busy lane thread before another thread takes it: a delay no
# schedule notices (polls are seconds to minutes apart), longer than a conditional request to a
# fast upstream takes.
SPILL_SECONDS = 0.05


@dataclass(slots=True)
class _Work:
    future: Future
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    due: float = field(default_factory=time.monotonic)


class LanePool(Executor):
    """A thread pool of at most ``size`` threads that starts a second thread for waiting work
    only when the work has waited ``spill_seconds`` (see the module doc)."""

    def __init__(
        self, size: int, *, spill_seconds: float = SPILL_SECONDS, name: str = "lane"
    ) -> None:
        if size < 1:
            raise ValueError("a lane needs at least one thread")
        self.size = size
        self.spill_seconds = spill_seconds
        self.name = name
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Work] = deque()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for work
        # A thread was told to look at the queue and has not looked yet. Any idle thread that
        # wakes looks, so any clears it: a notify can reach a thread whose wait has just timed
        # out, which then looks as the notified one would have.
        self._waking = False
        self._running = 0  # threads running work
        self._watching = False  # an idle thread is timing the oldest waiting work's spill
        self._shutdown = False

    @property
    def threads(self) -> int:
        """Threads started so far (they are started when first needed, and then kept)."""
        return len(self._threads)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        with self._cond:
            if self._shutdown:
                raise RuntimeError("cannot schedule new polls after shutdown")
            self._queue.append(_Work(future, fn, args, kwargs))
            self._dispatch()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; the work already queued still runs (unless ``cancel_futures``)."""
        with self._cond:
            self._shutdown = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft().future.cancel()
            self._cond.notify_all()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    # ------------------------------------------------------------------ under the lock
    def _dispatch(self) -> None:
        """Wake a thread when waiting work needs one: to run it when nothing runs, or to time
        its spill when something runs and a thread is left to spill to."""
        if not self._queue or self._waking:
            return
        if self._running == 0 or (not self._watching and self._running < self.size):
            self._wake()

    def _wake(self) -> None:
        if self._idle:
            self._waking = True
            self._cond.notify()
        elif len(self._threads) < self.size:
            self._waking = True
            thread = threading.Thread(
                target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        # else every thread runs work: the first to finish takes the oldest waiting

    def _take(self, *, finished: bool) -> _Work | None:
        """The work this thread runs next: the oldest waiting, if a thread that just finished
        work asks, or nothing runs, or it has waited its spill; else ``None``."""
        if not self._queue:
            return None
        if finished or self._running == 0:
            return self._queue.popleft()
        if time.monotonic() - self._queue[0].due >= self.spill_seconds:
            return self._queue.popleft()
        return None

    # ------------------------------------------------------------------ a lane thread
    def _work(self) -> None:
        with self._cond:
            self._waking = False  # a new thread was started to look at the queue
            finished = False
            while True:
                work = self._take(finished=finished)
                if work is None:
                    finished = False
                    if self._shutdown and not self._queue:
                        return
                    self._wait()
                    continue
                self._running += 1
                self._dispatch()  # more waiting work: someone times its spill
                self._cond.release()
                try:
                    if work.future.set_running_or_notify_cancel():
                        _run(work)
                    del work
                finally:
                    self._cond.acquire()
                    self._running -= 1
                finished = True

    def _wait(self) -> None:
        """Wait for work: for ever, or as the lane's watcher until the oldest waiting work has
        waited its spill."""
        timeout = None
        watcher = False
        if self._queue and self._running and not self._watching:
            watcher = self._watching = True
            timeout = max(self._queue[0].due + self.spill_seconds - time.monotonic(), 0.0)
        self._idle += 1
        try:
            self._cond.wait(timeout)
        finally:
            self._idle -= 1
            self._waking = False
            if watcher:
                self._watching = False


def _run(work: _Work) -> None:
    try:
        result = work.fn(*work.args, **work.kwargs)
    except BaseException as exc:
        work.future.set_exception(exc)
    else:
        work.future.set_result(result)


class PollLane(BasePoolExecutor):
    """An APScheduler executor that runs a host's polls in a :class:`LanePool`."""

    def __init__(self, size: int, *, name: str = "lane") -> None:
        super().__init__(LanePool(size, name=name))
