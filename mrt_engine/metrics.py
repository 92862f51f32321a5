"""The figures an on-call engineer asks for, summed per source and per channel since a time.

Per source (from ``poll_metric``, one row per committed poll or per flush of idle polls): polls
by outcome, HTTP requests and their answers by status class, retries, new events, alerts, poll
time (total and longest) and the rate-limit budget left (the latest reading). Per channel (from
``attempt``, one row per try at a send, and the outbox's counters): sends, successes, temporary
and permanent failures, dead letters, and now: the queue's depth and the age of its oldest
delivery. ``mrt-engine metrics`` prints them; :mod:`mrt_engine.prometheus` exports the same
figures as counters and gauges.

Every query reads an index: a source's metric rows by ``poll_metric_source`` (one range per
source key), attempts by ``attempt_started`` (each one's channel by its delivery's key), queue
depths from the trigger-kept ``delivery_count`` and a channel's oldest queued delivery from the
channel's first entry in the partial index ``delivery_queue_age`` (schema 7).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from mrt_engine.store.db import Store
from mrt_engine.store.migrations import POLL_METRIC_COUNTS
from mrt_engine.timeutil import from_store, to_store

QUEUED = ("pending", "retrying")


@dataclass
class SourceFigures:
    """One source key's polls since a time."""

    source_key: str
    polls: dict[str, int] = field(default_factory=dict)  # by outcome: ok | not_modified | error
    http_requests: int = 0
    http_2xx: int = 0
    http_304: int = 0
    http_4xx: int = 0
    http_5xx: int = 0
    http_retries: int = 0
    events_new: int = 0
    alerts_created: int = 0
    duration_ms: int = 0  # all polls together
    max_duration_ms: int = 0
    rate_limit_remaining: int | None = None  # the latest reading (source_state)
    last_success_at: datetime | None = None

    @property
    def total_polls(self) -> int:
        return sum(self.polls.values())


@dataclass
class ChannelFigures:
    """One channel's sends since a time, and its queue now."""

    channel: str
    sends: int = 0  # attempts that finished: successes + failures
    successes: int = 0
    temporary_failures: int = 0  # retried (or dead after the last attempt)
    permanent_failures: int = 0  # refused for good: dead at once
    dead_letters: int = 0  # attempts that left their delivery dead
    queue_depth: int = 0  # pending + retrying, now
    oldest_pending_seconds: float | None = None  # age of the oldest queued delivery, now


@dataclass
class Figures:
    """Every source's and channel's figures since ``since`` (None: all that is kept)."""

    since: datetime | None
    now: datetime
    sources: list[SourceFigures]
    channels: list[ChannelFigures]

    def to_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return to_store(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        return plain(
            {
                "since": self.since,
                "now": self.now,
                "sources": [asdict(s) for s in self.sources],
                "channels": [asdict(c) for c in self.channels],
            }
        )


def figures(store: Store, since: datetime | None, now: datetime) -> Figures:
    """The figures of every source and channel from ``since`` to ``now``, in one snapshot."""
    with store.read():
        return Figures(since, now, source_figures(store, since), channel_figures(store, since, now))


def source_figures(store: Store, since: datetime | None) -> list[SourceFigures]:
    """Per source key (every one the store knows), its polls since ``since``."""
    cursor = store.db.cursor()
    cursor.execute(
        "SELECT source_key, rate_limit_remaining, last_success_at FROM source_state"
        " ORDER BY source_key"
    )
    out = [
        SourceFigures(key, rate_limit_remaining=rate, last_success_at=from_store(success))
        for key, rate, success in cursor.fetchall()
    ]
    sums = ", ".join(f"SUM({name})" for name in ("http_requests", *POLL_METRIC_COUNTS))
    query = (
        f"SELECT outcome, SUM(polls), {sums}, SUM(events_new), SUM(alerts_created),"
        " SUM(duration_ms), MAX(COALESCE(max_duration_ms, duration_ms))"
        " FROM poll_metric WHERE source_key = ? AND started_at >= ? GROUP BY outcome"
    )
    start = to_store(since) if since is not None else ""
    for figures in out:
        cursor.execute(query, (figures.source_key, start))
        for outcome, polls, requests, *counts, new, alerts, total, longest in cursor.fetchall():
            figures.polls[outcome] = int(polls)
            figures.http_requests += int(requests)
            for name, n in zip(POLL_METRIC_COUNTS, counts, strict=True):
                setattr(figures, name, getattr(figures, name) + int(n))
            figures.events_new += int(new)
            figures.alerts_created += int(alerts)
            figures.duration_ms += int(total)
            figures.max_duration_ms = max(figures.max_duration_ms, int(longest or 0))
    return out


def channel_figures(store: Store, since: datetime | None, now: datetime) -> list[ChannelFigures]:
    """Per channel, its sends since ``since`` and its queue at ``now``."""
    cursor = store.db.cursor()
    found: dict[str, ChannelFigures] = {}

    def of(channel: str) -> ChannelFigures:
        return found.setdefault(channel, ChannelFigures(channel))

    # Attempts in time order (attempt_started), each one's channel by its delivery's key.
    cursor.execute(
        "SELECT d.channel, a.outcome, a.failure, a.delivery_status, COUNT(*)"
        f" FROM attempt a{store.indexed_by('attempt_started')} CROSS JOIN delivery d"
        " WHERE a.started_at >= ? AND d.id = a.delivery_id"
        " GROUP BY d.channel, a.outcome, a.failure, a.delivery_status",
        (to_store(since) if since is not None else "",),
    )
    for channel, outcome, failure, status, n in cursor.fetchall():
        _add_attempts(of(channel), outcome, failure, status, int(n))
    for channel, depth, oldest in queue_state(store, now):
        figures = of(channel)
        figures.queue_depth = depth
        figures.oldest_pending_seconds = oldest
    return sorted(found.values(), key=lambda c: c.channel)


def _add_attempts(
    figures: ChannelFigures, outcome: str, failure: str | None, status: str | None, n: int
) -> None:
    """Count ``n`` attempts of one kind into ``figures`` (in-flight, interrupted and silenced
    attempts are not sends). A failure recorded before schema 7 has no kind: temporary."""
    if outcome == "sent":
        figures.sends += n
        figures.successes += n
    elif outcome == "failed":
        figures.sends += n
        if failure == "permanent":
            figures.permanent_failures += n
        else:
            figures.temporary_failures += n
        if status == "dead":
            figures.dead_letters += n


def queue_state(store: Store, now: datetime) -> list[tuple[str, int, float | None]]:
    """(channel, queued deliveries, age in seconds of the oldest) for every channel with
    deliveries. The depth comes from the outbox's counters, the oldest from the channel's
    first entry in the partial index ``delivery_queue_age``."""
    cursor = store.db.cursor()
    cursor.execute("SELECT channel, status, n FROM delivery_count WHERE n <> 0")
    depth: dict[str, int] = {}
    for channel, status, n in cursor.fetchall():
        depth.setdefault(channel, 0)
        if status in QUEUED:
            depth[channel] += int(n)
    out: list[tuple[str, int, float | None]] = []
    for channel in sorted(depth):
        oldest = None
        if depth[channel]:
            cursor.execute(
                f"SELECT MIN(created_at) FROM delivery{store.indexed_by('delivery_queue_age')}"
                " WHERE channel = ? AND status IN ('pending', 'retrying')",
                (channel,),
            )
            row = cursor.fetchone()
            if row and row[0]:
                oldest = max((now - from_store(row[0])).total_seconds(), 0.0)
        out.append((channel, depth[channel], oldest))
    return out


# ---------------------------------------------------------------------- the readable table
def render_table(figures: Figures) -> str:
    """``figures`` as two plain-text tables (sources, channels) for a terminal."""
    since = "everything kept" if figures.since is None else f"since {to_store(figures.since)}"
    lines = [f"Metrics {since} (now {to_store(figures.now)})", ""]
    source_rows = [
        [
            "source",
            "polls",
            "ok",
            "304",
            "error",
            "requests",
            "2xx",
            "304s",
            "4xx",
            "5xx",
            "retries",
            "new",
            "avg ms",
            "max ms",
            "rate left",
        ]
    ]
    for s in figures.sources:
        polls = s.total_polls
        source_rows.append(
            [
                s.source_key,
                str(polls),
                str(s.polls.get("ok", 0)),
                str(s.polls.get("not_modified", 0)),
                str(s.polls.get("error", 0)),
                str(s.http_requests),
                str(s.http_2xx),
                str(s.http_304),
                str(s.http_4xx),
                str(s.http_5xx),
                str(s.http_retries),
                str(s.events_new),
                str(s.duration_ms // polls) if polls else "-",
                str(s.max_duration_ms) if polls else "-",
                "-" if s.rate_limit_remaining is None else str(s.rate_limit_remaining),
            ]
        )
    lines += _table(source_rows) if figures.sources else ["(no sources)"]
    lines.append("")
    channel_rows = [
        ["channel", "sends", "ok", "temporary", "permanent", "dead", "queued", "oldest queued"]
    ]
    for c in figures.channels:
        channel_rows.append(
            [
                c.channel,
                str(c.sends),
                str(c.successes),
                str(c.temporary_failures),
                str(c.permanent_failures),
                str(c.dead_letters),
                str(c.queue_depth),
                "-" if c.oldest_pending_seconds is None else _age(c.oldest_pending_seconds),
            ]
        )
    lines += _table(channel_rows) if figures.channels else ["(no deliveries)"]
    return "\n".join(lines)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _age(seconds: float) -> str:
    """``3h 05m``, ``2d 04h``, ``42s``."""
    seconds = int(seconds)
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"
