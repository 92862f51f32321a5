"""Idle polls: polls that changed nothing, held in memory and written once a flush interval.

An idle poll (a ``304``, or an answer with nothing new that leaves the cursor and validators as
they were) has nothing to commit but its times, its rate-limit reading and its figures.
Committing those per poll cost several page writes and an fsync every time, at one poll a
second per source; instead they are held here, and :meth:`IdlePolls.flush` (the engine calls it
every ``scheduler.idle_flush_seconds`` and when it stops) writes them in one transaction: per
source key its latest times and rate-limit reading on its ``source_state`` row, and one
``poll_metric`` row per outcome for all its idle polls since the last flush (``polls`` of them,
their requests, their total ``duration_ms`` and the longest).

A crash between two flushes loses only those times and figures: cursors, events and alerts are
committed by the polls that change them, as before. A poll of a source that does commit (a
change, or a failure) writes that source's held polls first, in its own transaction, so the
store keeps them in the order they happened and never writes older times over newer ones.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from mrt_engine.http import HttpStats
from mrt_engine.rate_limits import RateLimitInfo
from mrt_engine.store.db import Store
from mrt_engine.store.migrations import POLL_METRIC_COUNTS
from mrt_engine.store.views import SourceView
from mrt_engine.timeutil import to_store


@dataclass
class IdleMetric:
    """The figures of a source's idle polls of one outcome since the last flush."""

    outcome: str
    started_at: datetime  # of the first
    finished_at: datetime  # of the last
    polls: int
    http_requests: int
    duration_ms: int  # all of them together
    max_duration_ms: int
    # Their answers by status class and retries (POLL_METRIC_COUNTS' order), summed.
    http_counts: tuple[int, ...] = (0, 0, 0, 0, 0)
    rate_limit_remaining: int | None = None  # the latest reading

    def add(self, other: IdleMetric) -> IdleMetric:
        return IdleMetric(
            self.outcome,
            min(self.started_at, other.started_at),
            max(self.finished_at, other.finished_at),
            self.polls + other.polls,
            self.http_requests + other.http_requests,
            self.duration_ms + other.duration_ms,
            max(self.max_duration_ms, other.max_duration_ms),
            tuple(a + b for a, b in zip(self.http_counts, other.http_counts, strict=True)),
            _latest(self.rate_limit_remaining, other.rate_limit_remaining),
        )


@dataclass
class HeldPolls:
    """What a source's idle polls since the last flush would have written."""

    source_key: str
    last_poll_at: datetime
    last_success_at: datetime
    next_poll_at: datetime
    rate_limit: RateLimitInfo | None  # the latest reading; None: none was given
    metrics: dict[str, IdleMetric] = field(default_factory=dict)  # by outcome

    def then(self, later: HeldPolls) -> HeldPolls:
        """These polls followed by ``later``'s."""
        metrics = dict(self.metrics)
        for outcome, metric in later.metrics.items():
            metrics[outcome] = metrics[outcome].add(metric) if outcome in metrics else metric
        return replace(later, rate_limit=later.rate_limit or self.rate_limit, metrics=metrics)


class IdlePolls:
    """The idle polls of every source since the last flush (thread-safe)."""

    def __init__(self) -> None:
        self._held: dict[str, HeldPolls] = {}
        self._lock = threading.Lock()
        # Counts every idle poll: a view showing live times can tell when to look again.
        self.revision = 0

    def record(
        self,
        source_key: str,
        *,
        outcome: str,
        started: datetime,
        finished: datetime,
        next_poll_at: datetime,
        http_requests: int,
        duration_ms: int,
        rate_limit: RateLimitInfo | None,
        http: HttpStats | None = None,
    ) -> None:
        """Hold one idle poll of ``source_key`` (``http``: what its requests got)."""
        metric = IdleMetric(
            outcome,
            started,
            finished,
            1,
            http_requests,
            duration_ms,
            duration_ms,
            http_counts(http) if http else (0, 0, 0, 0, 0),
            rate_limit.remaining if rate_limit else None,
        )
        poll = HeldPolls(source_key, started, finished, next_poll_at, rate_limit, {outcome: metric})
        with self._lock:
            earlier = self._held.get(source_key)
            self._held[source_key] = earlier.then(poll) if earlier else poll
            self.revision += 1

    def held(self) -> dict[str, HeldPolls]:
        """What is held now, by source key (for views that show live times)."""
        with self._lock:
            return dict(self._held)

    def live(self, views: list[SourceView]) -> list[SourceView]:
        """``views`` as stored, with the times and rate-limit readings of the idle polls that
        are not written yet (what an engine in the same process knows)."""
        held = self.held()
        return [_with_held(v, held[v.source_key]) if v.source_key in held else v for v in views]

    @contextmanager
    def committing(self, store: Store, source_key: str) -> Iterator[None]:
        """A write transaction of a poll of ``source_key`` that commits: the source's held idle
        polls are written first, in it (and held again if it fails)."""
        with self._writing(store, source_key):
            yield

    def flush(self, store: Store) -> int:
        """Write every held idle poll in one transaction; returns how many sources had some."""
        with self._lock:
            if not self._held:
                return 0  # nothing to say: not even a transaction
        with self._writing(store, None) as written:
            pass
        return len(written)

    @contextmanager
    def _writing(self, store: Store, source_key: str | None) -> Iterator[list[HeldPolls]]:
        taken: list[HeldPolls] = []
        try:
            with store.write():
                # Taken under the write lock: a poll committing meanwhile (a newer state of the
                # same source) cannot be overwritten by what is taken here.
                taken = self._take(source_key)
                _write(store, taken)
                yield taken
        except BaseException:
            self._put_back(taken)
            raise

    def _take(self, source_key: str | None) -> list[HeldPolls]:
        with self._lock:
            if source_key is None:
                taken = list(self._held.values())
                self._held.clear()
                return taken
            held = self._held.pop(source_key, None)
            return [held] if held else []

    def _put_back(self, taken: list[HeldPolls]) -> None:
        """Hold again what a failed transaction could not write (before anything newer)."""
        with self._lock:
            for held in taken:
                newer = self._held.get(held.source_key)
                self._held[held.source_key] = held.then(newer) if newer else held


def _with_held(view: SourceView, held: HeldPolls) -> SourceView:
    if view.last_poll_at is not None and view.last_poll_at > held.last_poll_at:
        return view  # written meanwhile by a newer poll
    rate = held.rate_limit
    return replace(
        view,
        last_poll_at=held.last_poll_at,
        last_success_at=held.last_success_at,
        next_poll_at=held.next_poll_at,
        rate_limit_remaining=rate.remaining if rate else view.rate_limit_remaining,
        rate_limit_reset_at=rate.reset_at if rate else view.rate_limit_reset_at,
    )


def _write(store: Store, taken: list[HeldPolls]) -> None:
    cursor = store.db.cursor()
    for held in taken:
        success = to_store(held.last_success_at)
        params: list[Any] = [to_store(held.last_poll_at), success, success]
        params.append(to_store(held.next_poll_at))
        rate = ""
        if held.rate_limit is not None:
            rate = ", rate_limit_remaining = ?, rate_limit_reset_at = ?"
            params += [held.rate_limit.remaining, to_store(held.rate_limit.reset_at)]
        cursor.execute(
            "UPDATE source_state SET last_poll_at = ?, last_success_at = ?, updated_at = ?,"
            f" next_poll_at = ?{rate} WHERE source_key = ?",
            [*params, held.source_key],
        )
        cursor.executemany(
            "INSERT INTO poll_metric (source_key, started_at, finished_at, duration_ms, outcome,"
            f" http_requests, polls, max_duration_ms, {', '.join(POLL_METRIC_COUNTS)},"
            " rate_limit_remaining) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    held.source_key,
                    to_store(m.started_at),
                    to_store(m.finished_at),
                    m.duration_ms,
                    m.outcome,
                    m.http_requests,
                    m.polls,
                    m.max_duration_ms,
                    *m.http_counts,
                    m.rate_limit_remaining,
                )
                for m in held.metrics.values()
            ],
        )


def http_counts(stats: HttpStats) -> tuple[int, int, int, int, int]:
    """A poll's answers by status class and its retries, in ``POLL_METRIC_COUNTS``' order."""
    return (stats.http_2xx, stats.http_304, stats.http_4xx, stats.http_5xx, stats.retries)


def _latest(earlier: int | None, later: int | None) -> int | None:
    return earlier if later is None else later
