"""Prometheus exposition of the engine's figures (``mrt-engine run --metrics-port N``).

Mechanism: a custom collector that follows the store. At each scrape it reads the ``poll_metric``
and ``attempt`` rows added since the last scrape (by primary key: ``id > last``) into counters
kept in memory, and the gauges (queue depth, oldest queued delivery, last success, rate-limit
budget) from the store's small tables and indexes, the same queries as ``mrt-engine metrics``.
Why the store and not counters bumped where the engine polls and sends: the store already holds
every figure, committed with what it describes, so the exposition cannot disagree with
``mrt-engine metrics`` or the console; the poll and delivery paths stay as they are (nothing to
keep in step in two places); and a scrape costs what happened since the last one, never a scan.

Counters count from the exporter's start (a restart is a counter reset, which ``rate()`` and
``increase()`` handle). The polls that changed nothing reach the store once a flush interval
(``scheduler.idle_flush_seconds``, 60 s at most), so their counts may lag that much. On a store
shared by several engines each engine's exporter counts the whole store: scrape one of them.

Rows appear in id order on SQLite (one writer at a time). On PostgreSQL ids come from a sequence
and transactions may commit out of that order, so an id skipped over is looked for again at the
next scrapes (for :data:`LATE_SECONDS`); an attempt still in flight is counted once it ends.

The listener is prometheus-client's own HTTP server, on 127.0.0.1 unless the config names an
address. A scrape that fails on the store answers with what it has and logs one line: it never
stops the engine. A port that cannot be bound is an :class:`ExporterError` (one line, exit 2)
before the engine starts.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from mrt_engine import __version__
from mrt_engine.metrics import queue_state
from mrt_engine.secrets import shorten
from mrt_engine.store.db import Store
from mrt_engine.timeutil import from_store, utcnow

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1"
# Seconds of one poll (histogram buckets): a 304 takes tens of ms, a page of items a second or so.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# How long an id skipped over (a transaction not yet committed on PostgreSQL) is looked for.
LATE_SECONDS = 300.0
MAX_WAITING = 10_000  # ids looked for again, at most (the oldest are given up first)
BATCH = 5_000  # rows read per statement
MAX_ROWS = 100_000  # rows read per table per scrape: the rest at the next scrape
OUTCOMES = ("ok", "not_modified", "error")  # of a poll (poll_metric.outcome)
STATUS_CLASSES = (
    ("2xx", "http_2xx"),
    ("304", "http_304"),
    ("4xx", "http_4xx"),
    ("5xx", "http_5xx"),
)

_POLL_ROWS = (
    "SELECT id, source_key, outcome, polls, http_2xx, http_304, http_4xx, http_5xx,"
    " http_retries, duration_ms, COALESCE(max_duration_ms, duration_ms), events_new,"
    " alerts_created FROM poll_metric"
)
# Each attempt's channel by its delivery's key (a subquery: a join may read delivery whole).
_ATTEMPT_ROWS = (
    "SELECT a.id, (SELECT d.channel FROM delivery d WHERE d.id = a.delivery_id), a.outcome,"
    " a.failure, a.delivery_status FROM attempt a"
)


class ExporterError(Exception):
    """The exporter cannot listen where it was asked to (one line)."""


@dataclass
class _Follower:
    """Where the reading of one table stands: every id up to ``last`` was read, except the
    ``waiting`` ones (not committed yet, or an attempt in flight), with when each was first
    missed (monotonic seconds)."""

    last: int
    waiting: dict[int, float] = field(default_factory=dict)

    def rows(
        self, cursor: Any, select: str, alias: str, final: Callable[[tuple], bool]
    ) -> Iterator[tuple]:
        """The rows to count now: waiting ones that are final, then new ones in id order."""
        now = time.monotonic()
        ids = list(self.waiting)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            cursor.execute(f"{select} WHERE {alias}id IN ({marks})", chunk)
            for row in cursor.fetchall():
                if final(row):
                    del self.waiting[row[0]]
                    yield row
        for row_id, since in list(self.waiting.items()):
            if now - since > LATE_SECONDS:
                del self.waiting[row_id]  # rolled back or deleted: it will not come
        read = 0
        while read < MAX_ROWS:
            cursor.execute(
                f"{select} WHERE {alias}id > ? ORDER BY {alias}id LIMIT {BATCH}", (self.last,)
            )
            batch = cursor.fetchall()
            for row in batch:
                for missing in range(self.last + 1, min(row[0], self.last + 1 + MAX_WAITING)):
                    self.waiting.setdefault(missing, now)
                self.last = row[0]
                if final(row):
                    yield row
                else:
                    self.waiting[row[0]] = now
            read += len(batch)
            if len(batch) < BATCH:
                break
        while len(self.waiting) > MAX_WAITING:
            del self.waiting[min(self.waiting)]


@dataclass
class _Source:
    polls: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # by outcome
    answers: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # by status class
    retries: int = 0
    events_new: int = 0
    alerts: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    duration_count: int = 0
    duration_sum: float = 0.0

    def observe(self, seconds: float, times: int = 1) -> None:
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += times
        self.duration_count += times
        self.duration_sum += seconds * times


@dataclass
class _Channel:
    sends: int = 0
    successes: int = 0
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # by kind
    dead_letters: int = 0


class StoreCollector:
    """A prometheus-client collector of the figures of the store ``store()`` returns (``None``
    while the engine has not opened it yet: then only ``mrt_build_info``)."""

    def __init__(self, store: Callable[[], Store | None]) -> None:
        self._store = store
        self._lock = threading.Lock()  # one scrape at a time: each row is counted once
        self._polls: _Follower | None = None
        self._attempts: _Follower | None = None
        self._sources: dict[str, _Source] = defaultdict(_Source)
        self._channels: dict[str, _Channel] = defaultdict(_Channel)

    def collect(self) -> Iterator[Metric]:
        """Every ``mrt_*`` family, read from the store now (called by each scrape)."""
        info = GaugeMetricFamily(
            "mrt_build_info", "The running tracker's version.", labels=["version", "python"]
        )
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info
        store = self._store()
        if store is None:
            return
        with self._lock:
            gauges: list[Metric] = []
            try:
                with _connection(store), store.read():
                    self.follow(store)
                    gauges = self.gauges(store)
            except Exception as exc:  # a scrape never stops the engine: it says what failed
                log.warning("metrics: could not read the store: %s", shorten(exc, 300))
            yield from self._counters()
            yield from gauges

    def follow(self, store: Store) -> None:
        """Count the poll metrics and the attempts written since the last scrape."""
        cursor = store.db.cursor()
        if self._polls is None or self._attempts is None:
            cursor.execute("SELECT COALESCE(MAX(id), 0) FROM poll_metric")
            self._polls = _Follower(cursor.fetchone()[0])
            cursor.execute("SELECT COALESCE(MAX(id), 0) FROM attempt")
            self._attempts = _Follower(cursor.fetchone()[0])
            # Sends under way now are counted when they end (attempt_outcome: a few rows).
            cursor.execute("SELECT id FROM attempt WHERE outcome = 'in_flight'")
            now = time.monotonic()
            self._attempts.waiting.update((row_id, now) for (row_id,) in cursor.fetchall())
        for row in self._polls.rows(cursor, _POLL_ROWS, "", lambda row: True):
            self._count_poll(row)
        for row in self._attempts.rows(
            cursor, _ATTEMPT_ROWS, "a.", lambda row: row[2] != "in_flight"
        ):
            self._count_attempt(row)

    def _count_poll(self, row: tuple) -> None:
        _, key, outcome, polls, h2xx, h304, h4xx, h5xx, retries, total_ms, max_ms, new, alerts = row
        source = self._sources[key]
        source.polls[outcome] += polls
        for (name, _), n in zip(STATUS_CLASSES, (h2xx, h304, h4xx, h5xx), strict=True):
            source.answers[name] += n
        source.retries += retries
        source.events_new += new
        source.alerts += alerts
        # An idle-polls row holds its polls' total and longest: the longest is observed as
        # itself, the others at their mean (the sum and the count stay exact).
        if polls <= 1:
            source.observe(total_ms / 1000)
        else:
            source.observe(max_ms / 1000)
            source.observe(max(total_ms - max_ms, 0) / 1000 / (polls - 1), polls - 1)

    def _count_attempt(self, row: tuple) -> None:
        _, name, outcome, failure, status = row
        if name is None:
            return  # its delivery was pruned meanwhile
        channel = self._channels[name]
        if outcome == "sent":
            channel.sends += 1
            channel.successes += 1
        elif outcome == "failed":
            channel.sends += 1
            channel.failures["permanent" if failure == "permanent" else "temporary"] += 1
            if status == "dead":
                channel.dead_letters += 1

    def _counters(self) -> Iterator[Metric]:
        polls = CounterMetricFamily(
            "mrt_polls", "Polls of a source, by outcome.", labels=["source", "outcome"]
        )
        answers = CounterMetricFamily(
            "mrt_http_requests",
            "Answers from a source's upstream, by status class (every try).",
            labels=["source", "status_class"],
        )
        retries = CounterMetricFamily(
            "mrt_http_retries", "Requests a source's polls sent again.", labels=["source"]
        )
        events = CounterMetricFamily(
            "mrt_events_new", "New events a source's polls stored.", labels=["source"]
        )
        alerts = CounterMetricFamily(
            "mrt_alerts_created", "Alerts a source's polls raised.", labels=["source"]
        )
        duration = HistogramMetricFamily(
            "mrt_poll_duration_seconds", "How long a poll took.", labels=["source"]
        )
        for key, s in sorted(self._sources.items()):
            for outcome in OUTCOMES:
                polls.add_metric([key, outcome], s.polls.get(outcome, 0))
            for name, _ in STATUS_CLASSES:
                answers.add_metric([key, name], s.answers.get(name, 0))
            retries.add_metric([key], s.retries)
            events.add_metric([key], s.events_new)
            alerts.add_metric([key], s.alerts)
            buckets = [(str(b), n) for b, n in zip(DURATION_BUCKETS, s.buckets, strict=True)]
            buckets.append(("+Inf", s.duration_count))
            duration.add_metric([key], buckets, s.duration_sum)
        sends = CounterMetricFamily(
            "mrt_delivery_sends", "Sends to a channel (attempts that ended).", labels=["channel"]
        )
        successes = CounterMetricFamily(
            "mrt_delivery_successes", "Sends a channel accepted.", labels=["channel"]
        )
        failures = CounterMetricFamily(
            "mrt_delivery_failures",
            "Sends that failed: temporary (retried) or permanent (refused for good).",
            labels=["channel", "kind"],
        )
        dead = CounterMetricFamily(
            "mrt_delivery_dead_letters",
            "Deliveries that went dead (no more retries).",
            labels=["channel"],
        )
        for name, c in sorted(self._channels.items()):
            sends.add_metric([name], c.sends)
            successes.add_metric([name], c.successes)
            for kind in ("temporary", "permanent"):
                failures.add_metric([name, kind], c.failures.get(kind, 0))
            dead.add_metric([name], c.dead_letters)
        yield from (polls, answers, retries, events, alerts, duration)
        yield from (sends, successes, failures, dead)

    def gauges(self, store: Store) -> list[Metric]:
        """The figures of now: per source its last success, budget and failing streak; per
        channel its queue and the age of its oldest queued delivery."""
        success = GaugeMetricFamily(
            "mrt_source_last_success_timestamp_seconds",
            "When a source's last successful poll ended (Unix time).",
            labels=["source"],
        )
        budget = GaugeMetricFamily(
            "mrt_rate_limit_remaining",
            "The rate-limit budget the upstream said was left, at a source's last poll.",
            labels=["source"],
        )
        failing = GaugeMetricFamily(
            "mrt_source_consecutive_failures",
            "Polls of a source that failed in a row.",
            labels=["source"],
        )
        cursor = store.db.cursor()
        cursor.execute(
            "SELECT source_key, last_success_at, rate_limit_remaining, consecutive_failures"
            " FROM source_state"
        )
        for key, last_success, remaining, failures in cursor.fetchall():
            self._sources.setdefault(key, _Source())  # its counters show 0 before its first poll
            when = from_store(last_success)
            if when is not None:
                success.add_metric([key], when.timestamp())
            if remaining is not None:
                budget.add_metric([key], remaining)
            failing.add_metric([key], failures)
        depth = GaugeMetricFamily(
            "mrt_outbox_queue_depth",
            "Deliveries of a channel waiting to be sent (pending or retrying).",
            labels=["channel"],
        )
        oldest = GaugeMetricFamily(
            "mrt_outbox_oldest_pending_seconds",
            "Age of a channel's oldest delivery waiting to be sent (0: none waits).",
            labels=["channel"],
        )
        for channel, queued, age in queue_state(store, utcnow()):
            self._channels.setdefault(channel, _Channel())  # shown from 0, like a source
            depth.add_metric([channel], queued)
            oldest.add_metric([channel], age or 0.0)
        deliveries = GaugeMetricFamily(
            "mrt_outbox_deliveries",
            "Deliveries in the outbox, by channel and status (dead: dead letters to requeue).",
            labels=["channel", "status"],
        )
        cursor.execute("SELECT channel, status, n FROM delivery_count WHERE n <> 0")
        for channel, status, n in sorted(cursor.fetchall()):
            deliveries.add_metric([channel, status], n)
        return [success, budget, failing, depth, oldest, deliveries]


@contextmanager
def _connection(store: Store) -> Iterator[None]:
    """This thread's connection to the store: a scrape runs in a thread of the HTTP server's,
    which opens one for the scrape and closes it after (one already open is left open)."""
    opened = store.db.is_closed()
    if opened:
        store.db.connect()
    try:
        yield
    finally:
        if opened:
            store.db.close()


@dataclass
class Exporter:
    """The listening exporter; :meth:`close` stops it."""

    server: Any
    thread: threading.Thread
    address: str
    port: int

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def listen(port: int, address: str, store: Callable[[], Store | None]) -> Exporter:
    """Serve the figures of ``store()`` on ``address:port`` (``/metrics``), in daemon threads."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    try:
        server, thread = start_http_server(port, addr=address, registry=registry)
    except (OSError, ValueError) as exc:  # in use, not an address of this host, no permission
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ExporterError(f"metrics: cannot listen on {address}:{port}: {reason}") from None
    bound = server.server_address[1]
    log.info("metrics: Prometheus exposition on http://%s:%d/metrics", address, bound)
    return Exporter(server, thread, address, bound)


def configured(config: Any, port: int | None) -> tuple[int, str] | None:
    """(port, address) the exporter listens on: ``--metrics-port`` over the config's
    ``observability.prometheus``; ``None``: no exporter."""
    section = config.observability.prometheus
    address = section.address if section is not None else DEFAULT_ADDRESS
    if port is None:
        port = section.port if section is not None else None
    return None if port is None else (port, address)
