"""Error as state: a failing source raises one alert, and one more when it recovers.

The alerts are events like any other (source ``mrt``, types ``source_unhealthy`` and
``source_recovered``), committed in the same transaction as the failure or success that caused
them. They are judged by their own rule, which no user rule can suppress, and go to every channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mrt_engine.events import TrackerEvent
from mrt_engine.rules.matcher import RuleSet
from mrt_engine.rules.model import RuleConfig
from mrt_engine.timeutil import to_store

UNHEALTHY = "source_unhealthy"
RECOVERED = "source_recovered"


def health_rules(channels: Sequence[str]) -> RuleSet:
    """The one rule that routes health events: notify every channel, top priority."""
    rule = RuleConfig(
        name="source-health",
        description="a source failed many polls in a row, or works again",
        source=["mrt"],
        event_type=[UNHEALTHY, RECOVERED],
        priority=1000,
    )
    return RuleSet.compile([rule], list(channels))


def health_event(
    source_key: str, kind: str, failures: int, error: str | None, now: datetime
) -> TrackerEvent:
    """The event for one incident's start (``UNHEALTHY``) or end (``RECOVERED``)."""
    if kind == UNHEALTHY:
        title = f"Source {source_key} is failing: {failures} polls in a row"
        summary = f"last error: {error}" if error else ""
    else:
        title = f"Source {source_key} works again after {failures} failed polls"
        summary = ""
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
