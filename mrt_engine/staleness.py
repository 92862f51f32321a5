"""Stale sources: no successful poll for too long raises one alert, and one more when it polls
successfully again (error as state, like :mod:`mrt_engine.health`'s unhealthy sources).

A source is stale when it has had no successful poll for ``scheduler.stale_after_intervals``
of its intervals (3 by default; per source key or pattern in
``scheduler.stale_after_intervals_by_source``; 0: never), and at least
``scheduler.stale_after_min_seconds`` (a minute), whatever the cause: polls that fail,
a host that rate-limits it, polls that hang or never run. Its ``source_stale`` event is
protected (every channel, never silenced or grouped) and its ``source_fresh`` event follows
the first successful poll after it.

The state is the store's: the latest of a source's ``source_stale`` / ``source_fresh`` events,
each committed in the transaction that decides on it (which reads that latest event first).
A restarted engine (or another engine on a shared store) thus never announces a stale source
twice, and still sends its ``source_fresh`` when it works again.

The check is the engine's control job's, every second, and costs nothing most of the time:
each poll's outcome moves the source's time of freshness in memory, and the job compares the
clock with the earliest moment any source could go stale; only a source past its limit costs
a read of the store (its state row: an operator's pause, another engine's success). A paused
source is never stale: a poll that finds it paused holds its clock, as a poll that finds it
polled by another engine does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from mrt_engine.batch import prepare_batch, write_batch
from mrt_engine.config import SchedulerConfig
from mrt_engine.health import FRESH, STALE, staleness_event
from mrt_engine.logs import log_context
from mrt_engine.pipeline import load_state
from mrt_engine.rules.matcher import RuleSet
from mrt_engine.sources.base import Source
from mrt_engine.store.db import Store
from mrt_engine.store.models import Event
from mrt_engine.timeutil import Clock

log = logging.getLogger(__name__)

# Poll outcomes (PollOutcome.status) that are a successful poll.
SUCCEEDED = frozenset({"ok", "not_modified"})
# Outcomes of a source this engine is not to poll now: its clock is held, never stale.
HELD = frozenset({"paused", "elsewhere", "not_due"})


@dataclass(frozen=True)
class Watch:
    """How long one source may go without a successful poll, and how long it has to succeed
    after the engine starts (when its last success was before the engine's downtime)."""

    limit: timedelta
    grace: timedelta


def stale_watches(scheduler: SchedulerConfig, sources: Iterable[Source]) -> dict[str, Watch]:
    """The watch of each source that can go stale (a multiplier of 0 leaves it out)."""
    by_source = scheduler.stale_after_intervals_by_source
    watches = {}
    for source in sources:
        times = by_source.get(source.key)
        if times is None:
            patterns = (t for p, t in by_source.items() if fnmatchcase(source.key, p))
            times = next(patterns, scheduler.stale_after_intervals)
        if times > 0:
            floor = timedelta(seconds=scheduler.stale_after_min_seconds)
            limit = max(timedelta(seconds=source.interval * times), floor)
            grace = min(max(timedelta(seconds=source.interval), floor), limit)
            watches[source.key] = Watch(limit, grace)
    return watches


class StaleSources:
    """Watches the sources' successful polls; commits ``source_stale`` / ``source_fresh``."""

    def __init__(
        self, store: Store, health: RuleSet, watches: Mapping[str, Watch], clock: Clock
    ) -> None:
        self.store = store
        self.health = health
        self.watches = dict(watches)
        self.clock = clock
        self._lock = threading.Lock()
        self._fresh_at: dict[str, datetime] = {}  # from when each source's limit counts
        self._ok_at: dict[str, datetime] = {}  # each source's last successful poll seen
        self._stale: set[str] = set()  # announced stale, not yet fresh again
        self._recovered: set[str] = set()  # stale sources that have polled successfully
        self._next_check: datetime | None = None  # no source can go stale before (None: now)

    def load(self) -> None:
        """Read what the store says (once, as the engine opens): which sources are stale, and
        their last successful polls. A source that last succeeded long ago (the engine was
        down) gets its grace (an interval, at least ``stale_after_min_seconds``) from now to
        succeed before it is stale."""
        started = self.clock()
        latest = _latest_events(self.store)
        for key, watch in self.watches.items():
            row = load_state(self.store, key)
            floor = started - watch.limit + watch.grace
            last = row.last_success_at if row is not None else None
            self._fresh_at[key] = max(last, floor) if last is not None else floor
            if latest.get(key, (None,))[0] == STALE:
                self._stale.add(key)
        self._next_check = None

    def saw(self, key: str, status: str) -> None:
        """A poll of ``key`` ended with ``status`` (called by the engine after each poll)."""
        if key not in self.watches:
            return
        if status in SUCCEEDED:
            now = self.clock()
            with self._lock:
                self._fresh_at[key] = self._ok_at[key] = now
                if key in self._stale:
                    self._recovered.add(key)
        elif status in HELD:
            self._fresh_at[key] = self.clock()

    @property
    def stale(self) -> frozenset[str]:
        """The sources announced stale and not fresh again."""
        return frozenset(self._stale)

    def check(self, held: set[str] | None = None) -> int:
        """Commit the alerts now due: a stale source's ``source_fresh``, and ``source_stale``
        for each source past its limit (``held``: the sources this engine polls on a shared
        store; None: all). Returns the alerts committed. A store fault raises; what it
        prevented is tried again on the next call."""
        now = self.clock()
        recovered: set[str] = set()
        if self._recovered:
            with self._lock:
                recovered, self._recovered = self._recovered, set()
        alerts = 0
        try:
            while recovered:
                alerts += self._commit_fresh(next(iter(recovered)), now)
                recovered.pop()
        finally:
            if recovered:
                with self._lock:
                    self._recovered |= recovered
        if self._next_check is not None and now < self._next_check:
            return alerts
        self._next_check = None
        next_check: datetime | None = None
        for key, watch in self.watches.items():
            if key in self._stale:
                continue
            if held is not None and key not in held:  # another engine's to judge
                self._fresh_at[key] = now
            deadline = self._fresh_at[key] + watch.limit
            if deadline <= now:
                alerts += self._commit_stale(key, watch, now)
                if key in self._stale:
                    continue
                deadline = self._fresh_at[key] + watch.limit
            next_check = deadline if next_check is None else min(next_check, deadline)
        self._next_check = next_check
        return alerts

    def _commit_stale(self, key: str, watch: Watch, now: datetime) -> int:
        seen_ok = self._ok_at.get(key)
        with log_context(source=key), self.store.write():
            if _latest_events(self.store, key).get(key, (None,))[0] == STALE:
                self._stale.add(key)  # announced already (before a restart, or elsewhere)
                return 0
            row = load_state(self.store, key)
            if row is None or row.paused:
                self._fresh_at[key] = now
                return 0
            last = row.last_success_at
            if last is not None and last + watch.limit > now:  # polled well elsewhere
                self._fresh_at[key] = max(self._fresh_at[key], last)
                return 0
            event = staleness_event(key, STALE, last, watch.limit, row.last_error, now)
            counts = write_batch(self.store, prepare_batch([event], self.health, now))
        with self._lock:
            self._stale.add(key)
            if self._ok_at.get(key) != seen_ok:  # it succeeded while this was decided
                self._recovered.add(key)
        log.warning("%s: %s", key, event.title)
        return counts.alerts

    def _commit_fresh(self, key: str, now: datetime) -> int:
        alerts = 0
        with log_context(source=key), self.store.write():
            kind, stale_at = _latest_events(self.store, key).get(key, (None, None))
            if kind == STALE:
                event = staleness_event(key, FRESH, stale_at, self.watches[key].limit, None, now)
                alerts = write_batch(self.store, prepare_batch([event], self.health, now)).alerts
        with self._lock:
            self._stale.discard(key)
        self._next_check = None  # watched again
        if alerts:
            log.warning("%s: %s", key, event.title)
        return alerts


def _latest_events(store: Store, key: str | None = None) -> dict[str, tuple[str, datetime]]:
    """Each source's latest ``source_stale`` / ``source_fresh`` event: its type and time (of
    one source, ``key``, or of all)."""
    query = Event.select(Event.source_key, Event.event_type, Event.occurred_at).where(
        (Event.source == "mrt") & Event.event_type.in_([STALE, FRESH])
    )
    if key is not None:
        query = query.where(Event.source_key == key).order_by(Event.id.desc()).limit(1)
    else:
        query = query.order_by(Event.id)
    return {row.source_key: (row.event_type, row.occurred_at) for row in query}
