"""Reads of incidents for ``mrt-engine incidents`` and the console's Incidents view: the latest
incidents, each with its timeline (every alerted event of it, first seen first).

Two index reads whatever the store's size: the newest incidents by ``incident_last_seen``, then
their timelines by ``incident_event_timeline`` (each event by its key).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mrt_engine.incidents import DEFAULT_WINDOW
from mrt_engine.notify.incident_line import source_name
from mrt_engine.store.models import database
from mrt_engine.text import clean
from mrt_engine.timeutil import from_store, to_store

# The SQL of each read (tests/test_query_plans*.py check their plans).
LATEST_INCIDENTS = (
    "SELECT id, family, name, first_source, first_seen_at, last_seen_at, events, sources"
    " FROM incident ORDER BY last_seen_at DESC, id DESC LIMIT ?"
)
TIMELINES = (
    "SELECT ie.incident_id, ie.event_id, ie.position, ie.source, ie.seen_at, ie.new_source,"
    " e.event_type, e.title, e.url FROM incident_event ie JOIN event e ON e.id = ie.event_id"
    " WHERE ie.incident_id IN ({marks}) AND ie.position <= ? ORDER BY ie.incident_id, ie.position"
)


@dataclass(frozen=True)
class TimelineEntry:
    """One event of an incident, where and when it was seen."""

    event_id: int
    position: int
    source_key: str
    source: str  # as a message names it: "HuggingFace (deepseek-ai)"
    seen_at: datetime
    new_source: bool
    event_type: str
    title: str
    url: str


@dataclass(frozen=True)
class IncidentView:
    """An incident as shown: its family, where it was first seen, and its timeline."""

    id: int
    family: str
    name: str
    first_source: str
    first_seen_at: datetime
    last_seen_at: datetime
    events: int
    sources: int
    open: bool  # still takes its family's alerts (within the window from its first event)
    timeline: tuple[TimelineEntry, ...]


def incidents(
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
    *,
    limit: int = 100,
    timeline_length: int = 20,
) -> list[IncidentView]:
    """The ``limit`` incidents with the latest activity, newest first, each with the first
    ``timeline_length`` events of its timeline (a family much talked about has hundreds: the
    view's ``events`` says how many there are)."""
    rows = database.execute_sql(LATEST_INCIDENTS, (limit,)).fetchall()
    if not rows:
        return []
    timelines: dict[int, list[TimelineEntry]] = {row[0]: [] for row in rows}
    ids = list(timelines)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        sql = TIMELINES.format(marks=",".join("?" * len(chunk)))
        for r in database.execute_sql(sql, (*chunk, timeline_length)).fetchall():
            timelines[r[0]].append(
                TimelineEntry(
                    event_id=r[1],
                    position=r[2],
                    source_key=clean(r[3]),
                    source=source_name(r[3]),
                    seen_at=_time(r[4]),
                    new_source=bool(r[5]),
                    event_type=clean(r[6]),
                    title=clean(r[7]),
                    url=clean(r[8]),
                )
            )
    opened_since = to_store(now - window)
    return [
        IncidentView(
            id=row[0],
            family=clean(row[1]),
            name=clean(row[2]),
            first_source=clean(row[3]),
            first_seen_at=_time(row[4]),
            last_seen_at=_time(row[5]),
            events=row[6],
            sources=row[7],
            open=row[4] >= opened_since,
            timeline=tuple(timelines[row[0]]),
        )
        for row in rows
    ]


def _time(value: str) -> datetime:
    found = from_store(value)
    assert found is not None
    return found
