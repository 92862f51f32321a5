"""Events no user rule may suppress: source health, and supply-chain alarms.

Error as state: a failing source raises one alert, and one more when it recovers. These alerts
are events like any other (source ``mrt``, types ``source_unhealthy`` and ``source_recovered``),
committed in the same transaction as the failure or success that caused them. A source without
a successful poll for too long (:mod:`mrt_engine.staleness`) is ``source_stale`` once, and
``source_fresh`` once when it succeeds again. A changed checksum
of a published service package (``service_checksum_changed``, from the Model Hub) is a
supply-chain alarm. All of them are judged by the protected rules below, never by the user's,
and go to every channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from mrt_engine.events import TrackerEvent
from mrt_engine.rules.matcher import RuleSet
from mrt_engine.rules.model import RuleConfig
from mrt_engine.timeutil import to_store
from mrt_engine.wording import plural

UNHEALTHY = "source_unhealthy"
RECOVERED = "source_recovered"
STALE = "source_stale"
FRESH = "source_fresh"
CHECKSUM_CHANGED = "service_checksum_changed"
PROTECTED_TYPES = frozenset({UNHEALTHY, RECOVERED, STALE, FRESH, CHECKSUM_CHANGED})


def is_protected(event_type: str) -> bool:
    """Whether hits of ``event_type`` are protected: never grouped, delayed, folded, held for a
    digest or silenced, and routed to every channel whatever its ``min_priority``."""
    return event_type in PROTECTED_TYPES


def protected_rules(channels: Sequence[str]) -> RuleSet:
    """The rules for :data:`PROTECTED_TYPES`: notify every channel, top priority."""
    rules = [
        RuleConfig(
            name="source-health",
            description="a source failed many polls in a row or had no successful poll for"
            " too long, or works again",
            source=["mrt"],
            event_type=[UNHEALTHY, RECOVERED, STALE, FRESH],
            priority=1000,
        ),
        RuleConfig(
            name="supply-chain",
            description="the sha256 of a published service package changed",
            event_type=[CHECKSUM_CHANGED],
            priority=1000,  # the highest there is
        ),
    ]
    return RuleSet.compile(rules, list(channels))


def health_event(
    source_key: str, kind: str, failures: int, error: str | None, now: datetime
) -> TrackerEvent:
    """The event for one incident's start (``UNHEALTHY``) or end (``RECOVERED``)."""
    if kind == UNHEALTHY:
        title = f"Source {source_key} is failing: {plural(failures, 'poll')} in a row"
        summary = f"last error: {error}" if error else ""
    else:
        title = f"Source {source_key} works again after {plural(failures, 'failed poll')}"
        summary = ""
    return _event(source_key, kind, title, summary, now)


def staleness_event(
    source_key: str,
    kind: str,
    since: datetime | None,
    limit: timedelta,
    error: str | None,
    now: datetime,
) -> TrackerEvent:
    """The event for a source gone stale (``STALE``: no successful poll since ``since``, None
    for never, longer than ``limit``) or fresh again (``FRESH``: stale since ``since``)."""
    if kind == STALE:
        quiet = f"for {duration(now - since)}" if since is not None else "yet"
        title = f"Source {source_key} is stale: no successful poll {quiet}"
        summary = f"the limit is {duration(limit)} without one"
        summary += f"; last error: {error}" if error else ""
    else:
        title = f"Source {source_key} polls successfully again"
        if since is not None:
            title += f", {duration(now - since)} after it went stale"
        summary = ""
    return _event(source_key, kind, title, summary, now)


def duration(span: timedelta) -> str:
    """``45s``, ``15m``, ``2h 5m``, ``3d 4h``: how long, to the two largest units."""
    seconds = max(int(span.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    first = next((i for i, (n, _) in enumerate(units) if n), len(units) - 1)
    shown = [f"{n}{u}" for n, u in units[first : first + 2] if n]  # 2h 5s would mislead
    return " ".join(shown) or "0s"


def _event(source_key: str, kind: str, title: str, summary: str, now: datetime) -> TrackerEvent:
    return TrackerEvent(
        source="mrt",
        source_key=source_key,
        resource_type="source",
        resource_id=source_key,
        event_type=kind,
        event_id=f"{kind}@{to_store(now)}",
        title=title,
        summary=summary,
        observed_at=now,
        occurred_at=now,
    )
