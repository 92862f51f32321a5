"""8 · Incidents: each model family seen across sources, with its timeline (first seen where
and when, every later source); enter on an event opens its trace.

Like the other list views it reads only while on screen and only after a commit (or once a
minute, for the "ago" of its times); the reads are :mod:`mrt_engine.store.incident_queries`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rich.text import Text
from textual.binding import Binding

from mrt_engine.incidents import DEFAULT_WINDOW
from mrt_engine.notify.locales import headline
from mrt_engine.store.incident_queries import IncidentView, TimelineEntry, incidents
from mrt_engine.timeutil import humanize_age
from mrt_engine.wording import plural
from mrt_tui import cells
from mrt_tui.screens.base import LiveScreen


@dataclass(frozen=True)
class IncidentLine:
    """A row: an incident's heading (``entry`` None), or one event of its timeline."""

    key: str
    incident: IncidentView
    entry: TimelineEntry | None = None


def lines_of(found: list[IncidentView]) -> list[IncidentLine]:
    """Each incident's heading, then its timeline, first seen first."""
    rows: list[IncidentLine] = []
    for incident in found:
        rows.append(IncidentLine(f"i{incident.id}", incident))
        rows.extend(IncidentLine(f"e{e.event_id}", incident, e) for e in incident.timeline)
    return rows


class IncidentsScreen(LiveScreen):
    TITLE = "Incidents"
    PAGED = False
    REREAD_SECONDS = 60.0  # the "ago" of a heading moves on with the clock
    COLUMNS = [
        ("when", "when", 8),
        ("source", "source", 26),
        ("what", "incident / event", None),
    ]
    BINDINGS = [Binding("enter", "trace", "Trace", id="incidents.trace")]
    LIMIT = 50  # incidents shown, latest activity first

    def load(self, before_id, after_id, filter_text) -> tuple[list[Any], Any]:
        config = self.session.config
        window = timedelta(days=config.incidents.window_days) if config else DEFAULT_WINDOW
        found = incidents(self.session.clock(), window, limit=self.LIMIT)
        return lines_of(found), len(found)

    def key_of(self, row: IncidentLine) -> str:
        return row.key

    def cells(self, row: IncidentLine) -> list[Any]:
        now = self.session.clock()
        incident, entry = row.incident, row.entry
        if entry is None:
            what = Text(no_wrap=True, overflow="ellipsis")
            what.append(incident.name, style="bold")
            what.append(
                f"  {'open' if incident.open else 'closed'}, first seen"
                f" {humanize_age(incident.first_seen_at, now)}",
                style="" if incident.open else "dim",
            )
            counts = f"{plural(incident.sources, 'source')} · {plural(incident.events, 'event')}"
            return [cells.when(incident.first_seen_at, now), cells.text(counts, "bold"), what]
        mark = "+" if entry.new_source else " "
        return [
            cells.when(entry.seen_at, now),
            cells.both_ends(f"{mark}{entry.source}"),
            cells.text(f"  {entry.position}. {headline(entry.event_type)}: {entry.title}"),
        ]

    def status_text(self, rows, extra) -> str:
        return (
            f"{plural(extra or 0, 'incident')}, latest activity first · + a new source"
            " · enter traces the event"
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("filter", "clear_filter"):
            return False  # every incident is shown: nothing to filter
        if action == "trace" and self.selected is None:
            return None
        return True

    def action_trace(self) -> None:
        row: IncidentLine | None = self.selected
        if row is None:
            return
        entry = row.entry or (row.incident.timeline[0] if row.incident.timeline else None)
        if entry is not None:
            self.app.show_trace(f"event:{entry.event_id}")
