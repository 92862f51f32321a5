"""The Health view's figures: per source and per channel, hour by hour over the last day.

Everything comes from what the store records already: a ``poll_metric`` row per poll (or per
outcome of a minute's idle polls, which carry their ``polls`` count), the source's state (rate
limit), an ``attempt`` row per send and the outbox's per-status counters (``delivery_count``).
Each read is an index range over the last day only (``poll_metric (source_key, started_at)``,
``attempt (started_at)``), so its cost follows a day's polls and sends, not the store's history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import SQL, Case, fn

from mrt_engine.store.models import Attempt, Delivery, DeliveryCount, PollMetric, SourceState
from mrt_engine.text import clean
from mrt_engine.timeutil import to_store

HOURS = 24
QUEUED = ("pending", "retrying")  # a channel's queue: what is still to be sent
FAILED = ("failed", "interrupted")  # an attempt that sent nothing (interrupted: worker gone)


@dataclass(frozen=True)
class SourceHealth:
    """One source key's last day; each tuple has one figure per hour, oldest first."""

    source_key: str
    new_events: tuple[int, ...]
    poll_ms: tuple[int, ...]  # mean duration of a poll in that hour (0: no poll)
    polls: int  # over the whole day, idle polls included
    not_modified: int  # polls answered 304 Not Modified
    errors: int
    rate_limit_remaining: int | None
    rate_limit_reset_at: datetime | None

    @property
    def not_modified_ratio(self) -> float | None:
        """Share of the day's polls answered 304 (None: no poll)."""
        return self.not_modified / self.polls if self.polls else None


@dataclass(frozen=True)
class ChannelHealth:
    """One channel: its queue now, and its attempts per hour over the last day."""

    channel: str
    pending: int
    retrying: int
    dead: int
    sent: tuple[int, ...]
    failed: tuple[int, ...]

    @property
    def queued(self) -> int:
        """Queue depth: deliveries still to be sent (pending and retrying)."""
        return self.pending + self.retrying


@dataclass(frozen=True)
class HealthFigures:
    """The Health view's read: the hours it covers (each hour's start, UTC), sources, channels."""

    hours: tuple[datetime, ...]
    sources: tuple[SourceHealth, ...]
    channels: tuple[ChannelHealth, ...]


def hour_starts(now: datetime, hours: int = HOURS) -> tuple[datetime, ...]:
    """The starts of the last ``hours`` hours, oldest first, the last one holding ``now``."""
    current = now.replace(minute=0, second=0, microsecond=0)
    return tuple(current - timedelta(hours=hours - 1 - i) for i in range(hours))


def health_figures(
    now: datetime, hours: int = HOURS, channels: Iterable[str] = ()
) -> HealthFigures:
    """Every source's and channel's figures for the ``hours`` hours up to ``now`` (inside the
    caller's read transaction). ``channels``: names to show even with no delivery yet (the
    config's); channels found in the outbox or in the day's attempts are shown too."""
    starts = hour_starts(now, hours)
    since = starts[0]
    slot = {to_store(s)[:13]: i for i, s in enumerate(starts)}  # "YYYY-MM-DDTHH" -> index
    return HealthFigures(
        hours=starts,
        sources=tuple(_sources(since, slot, hours)),
        channels=tuple(_channels(since, slot, hours, channels)),
    )


def _hour(column):
    """The hour a stored time falls in, as its text's first 13 characters (``YYYY-MM-DDTHH``:
    stored times are fixed-width UTC text, on both backends). The bounds are literals, not
    parameters: PostgreSQL matches the GROUP BY to the selected expression only when both are
    the same text."""
    return fn.SUBSTR(column, SQL("1"), SQL("13")).coerce(False)  # text, not read as a time


def _sources(since: datetime, slot: dict[str, int], hours: int) -> list[SourceHealth]:
    states = list(
        SourceState.select(
            SourceState.source_key,
            SourceState.rate_limit_remaining,
            SourceState.rate_limit_reset_at,
        ).order_by(SourceState.source_key)
    )
    if not states:
        return []
    keys = [s.source_key for s in states]
    hour = _hour(PollMetric.started_at)
    # One range of the (source_key, started_at) index per source key (the IN list): a day of
    # each source's polls, never the metrics' history.
    query = (
        PollMetric.select(
            PollMetric.source_key,
            hour.alias("hour"),
            fn.SUM(PollMetric.polls),
            fn.SUM(PollMetric.events_new),
            fn.SUM(PollMetric.duration_ms),
            fn.SUM(Case(None, [(PollMetric.outcome == "not_modified", PollMetric.polls)], 0)),
            fn.SUM(Case(None, [(PollMetric.outcome == "error", PollMetric.polls)], 0)),
        )
        .where(PollMetric.source_key.in_(keys) & (PollMetric.started_at >= since))
        .group_by(PollMetric.source_key, hour)
        .tuples()
    )
    new: dict[str, list[int]] = {k: [0] * hours for k in keys}
    ms: dict[str, list[int]] = {k: [0] * hours for k in keys}
    totals: dict[str, list[int]] = {k: [0, 0, 0] for k in keys}  # polls, 304, errors
    for key, at, polls, events, duration, not_modified, errors in query:
        i = slot.get(at)
        if i is None:
            continue  # a poll stamped after now (another host's clock): not in the day shown
        polls = int(polls or 0)
        new[key][i] = int(events or 0)
        ms[key][i] = int(duration or 0) // polls if polls else 0
        total = totals[key]
        total[0] += polls
        total[1] += int(not_modified or 0)
        total[2] += int(errors or 0)
    return [
        SourceHealth(
            source_key=clean(s.source_key),
            new_events=tuple(new[s.source_key]),
            poll_ms=tuple(ms[s.source_key]),
            polls=totals[s.source_key][0],
            not_modified=totals[s.source_key][1],
            errors=totals[s.source_key][2],
            rate_limit_remaining=s.rate_limit_remaining,
            rate_limit_reset_at=s.rate_limit_reset_at,
        )
        for s in states
    ]


def _channels(
    since: datetime, slot: dict[str, int], hours: int, named: Iterable[str]
) -> list[ChannelHealth]:
    counts: dict[str, dict[str, int]] = {name: {} for name in named}
    for row in DeliveryCount.select().where(DeliveryCount.n != 0):  # a few rows: per status
        counts.setdefault(row.channel, {})[row.status] = int(row.n)
    hour = _hour(Attempt.started_at)
    # The day's attempts through the attempt_started index, each joined to its delivery by id
    # for the channel.
    query = (
        Attempt.select(
            Delivery.channel,
            hour.alias("hour"),
            fn.SUM(Case(None, [(Attempt.outcome == "sent", 1)], 0)),
            fn.SUM(Case(None, [(Attempt.outcome.in_(FAILED), 1)], 0)),
        )
        .join(Delivery, on=(Attempt.delivery == Delivery.id))
        .where(Attempt.started_at >= since)
        .group_by(Delivery.channel, hour)
        .tuples()
    )
    sent: dict[str, list[int]] = {}
    failed: dict[str, list[int]] = {}
    for channel, at, ok, bad in query:
        counts.setdefault(channel, {})
        i = slot.get(at)
        if i is None:
            continue
        sent.setdefault(channel, [0] * hours)[i] = int(ok or 0)
        failed.setdefault(channel, [0] * hours)[i] = int(bad or 0)
    zeros = (0,) * hours
    return [
        ChannelHealth(
            channel=clean(channel),
            pending=counts[channel].get("pending", 0),
            retrying=counts[channel].get("retrying", 0),
            dead=counts[channel].get("dead", 0),
            sent=tuple(sent.get(channel, zeros)),
            failed=tuple(failed.get(channel, zeros)),
        )
        for channel in sorted(counts)
    ]
