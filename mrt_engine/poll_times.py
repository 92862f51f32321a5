"""When a source is polled: on time, and together with the other polls due near it.

A source's first poll runs as the engine starts (staggered a little per source, within one
tick, so the sources' later polls fall on the same ticks); its ``k``-th next poll is due ``k``
intervals later, and runs at the *tick* nearest to that time. Ticks are
``2 × jitter`` apart (``scheduler.jitter_seconds``, by default 10% of the interval; at most half
the interval), at a phase drawn when the engine starts. So a poll runs at most its jitter away
from when it is due, a source's polls come at its interval on average, and the polls due
within one tick start together.

Why ticks: an idle engine spends its CPU mostly on waking up, not on polling. A poll due at its
own instant wakes the scheduler's thread, then a poll worker, out of sleep (on a virtual machine
each wake-up of a sleeping thread costs about 0.1 ms of CPU, and the poll then runs with cold
caches); polls due together share the wake-ups. The upstream hosts see nothing more than they
allow: the polls of one tick still wait for their host's lane and request slots
(:meth:`mrt_engine.engine.Engine.start`, :mod:`mrt_engine.http`). ``tests/perf/bench_idle.py``
measures it.

APScheduler's interval trigger with ``jitter`` moved each poll at random instead, and drifted:
since APScheduler 3.7 its jitter only delays, so a source due every second was polled every
1.05 s on average.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

from apscheduler.triggers.base import BaseTrigger


def tick_for(interval: float, jitter: float) -> float:
    """The tick of polls every ``interval`` seconds that may move ``jitter`` seconds: ``2 ×
    jitter``, at most half the interval (so each poll keeps its own tick); 0: no ticks."""
    return min(2 * jitter, interval / 2)


class PollTimes(BaseTrigger):
    """An APScheduler trigger: every ``interval`` seconds from ``first``, each time moved to the
    nearest tick (``tick`` seconds apart, at ``phase`` of a tick from the Unix epoch's; a tick
    of 0 moves nothing)."""

    def __init__(self, interval: float, first: datetime, tick: float = 0.0, phase: float = 0.0):
        if interval <= 0 or not 0 <= tick <= interval / 2:
            raise ValueError(f"no poll times every {interval}s on ticks {tick}s apart")
        self.interval = interval
        self.first = first.timestamp()
        self.tick = tick
        self.offset = phase * tick  # where the ticks start, in seconds

    @classmethod
    def phase(cls, rng: random.Random | None = None) -> float:
        """A phase for one engine's ticks (every trigger of one engine takes the same one)."""
        return (rng or random).random()

    def due(self, k: int) -> float:
        """When the ``k``-th poll is due (a Unix time)."""
        return self.first + k * self.interval

    def at(self, due: float) -> float:
        """When a poll due at ``due`` runs: the nearest tick."""
        if not self.tick:
            return due
        return self.offset + round((due - self.offset) / self.tick) * self.tick

    def first_run(self) -> datetime:
        """When the first poll runs: at ``first`` itself, not on a tick (a poll that started
        the engine, a baseline, is not put off; the next one is on a tick)."""
        return datetime.fromtimestamp(self.first, UTC)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:  # (re)started: the first poll due from now on
            k = max(0, math.ceil((now.timestamp() - self.first) / self.interval))
        else:
            # A poll runs at most a quarter interval from when it is due: its number is exact.
            k = round((previous_fire_time.timestamp() - self.first) / self.interval) + 1
        return datetime.fromtimestamp(self.at(self.due(k)), UTC)

    def __str__(self) -> str:
        return f"every {self.interval:g}s on ticks of {self.tick:g}s"

    def __repr__(self) -> str:
        return (
            f"<PollTimes (interval={self.interval:g}, first={self.first:.3f},"
            f" tick={self.tick:g}, offset={self.offset:.3f})>"
        )
