"""7 · Health: the last day hour by hour, per source (new events, poll time, the share of polls
answered 304, the rate limit left) and per channel (its queue, its sends and failures).

Like the list views it reads only while on screen and only after a commit (:class:`ReadGate`),
all its figures in one read (:func:`mrt_engine.store.health_figures.health_figures`) by a worker
that posts them; rows are kept by source key and channel name and updated in place.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Header, Static
from textual.worker import WorkerState

from mrt_engine.operations import OperationError
from mrt_engine.store import health_figures
from mrt_engine.store.db import StoreError
from mrt_engine.store.health_figures import ChannelHealth, HealthFigures, SourceHealth
from mrt_engine.wording import plural
from mrt_tui import cells
from mrt_tui.messages import ActionDone, HealthLoaded
from mrt_tui.screens.base import ReadGate
from mrt_tui.widgets.keys_footer import KeysFooter
from mrt_tui.widgets.trend import Trend

log = logging.getLogger(__name__)


class SourceRow(Vertical):
    """One source key: its figures on a line, its two trends below."""

    def __init__(self, key: str) -> None:
        super().__init__(classes="health-row")
        self.key = key
        self._title = Static("", classes="health-title")
        self._new = Trend("new")
        self._poll = Trend("poll")

    def compose(self) -> ComposeResult:
        yield self._title
        with Horizontal(classes="trends"):
            yield self._new
            yield self._poll

    def show(self, row: SourceHealth, now: datetime) -> None:
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(cells.short_key(row.source_key), style="bold")
        ratio = row.not_modified_ratio
        title.append(f"  304 {'-' if ratio is None else f'{ratio:.0%}'}")
        title.append(f" · errors {row.errors}", style="bold" if row.errors else "")
        if row.rate_limit_remaining is None:
            title.append(" · rate -")
        else:  # the calls left in the upstream's window, and when the window starts again
            title.append(f" · rate {row.rate_limit_remaining}")
            if row.rate_limit_reset_at is not None:
                title.append(f" till {_hour(row.rate_limit_reset_at, minutes=True)}")
        title.append(f" · polls {row.polls}")  # last: at 80 columns the first to be cut
        self._title.update(title)
        self._new.show(row.new_events, str(sum(row.new_events)))
        self._poll.show(row.poll_ms, _duration(max(row.poll_ms)))


class ChannelRow(Vertical):
    """One channel: its queue on a line, its sends and failures below."""

    def __init__(self, key: str) -> None:
        super().__init__(classes="health-row")
        self.key = key
        self._title = Static("", classes="health-title")
        self._sent = Trend("sent")
        self._failed = Trend("failed", classes="failed")

    def compose(self) -> ComposeResult:
        yield self._title
        with Horizontal(classes="trends"):
            yield self._sent
            yield self._failed

    def show(self, row: ChannelHealth, now: datetime) -> None:
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(row.channel, style="bold")
        title.append(f"  queue {row.queued} ({row.pending} pending, {row.retrying} retrying)")
        title.append(f" · dead {row.dead}", style="bold" if row.dead else "")
        self._title.update(title)
        self._sent.show(row.sent, str(sum(row.sent)))
        self._failed.show(row.failed, str(sum(row.failed)))


class HealthScreen(Screen):
    TITLE = "Health"
    REREAD_SECONDS = 300.0  # the day shown moves on with the clock, an hour at a time

    def __init__(self) -> None:
        super().__init__()
        self.gate = ReadGate(self.REREAD_SECONDS)
        self.figures: HealthFigures | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="health"):
            yield Static("", id="sources-heading", classes="health-heading")
            yield Vertical(id="health-sources", classes="health-section")
            yield Static("Channels", id="channels-heading", classes="health-heading")
            yield Vertical(id="health-channels", classes="health-section")
        yield Static("", id="status")
        yield KeysFooter(show_command_palette=False)

    @property
    def session(self):
        return self.app.session

    def on_screen_resume(self) -> None:
        self.refresh_if_changed(self.version())
        self.query_one("#health").focus()

    # ------------------------------------------------------------------ reading
    def version(self) -> tuple[int, ...] | None:
        """The store's version: the figures change only with a commit (or the clock's hour)."""
        return self.session.store_version()

    def refresh_if_changed(self, version: tuple[int, ...] | None) -> None:
        """The app's periodic refresh while this view is on screen: read only when the store
        changed, and never while a read is still running."""
        if not self.gate.due(version):
            return
        if not any(
            w.node is self and w.group == "read" and w.state == WorkerState.RUNNING
            for w in self.app.workers
        ):
            self.reload(version)

    def reload(self, version: tuple[int, ...] | None = None) -> None:
        """Read the figures now (``version``: the store's, taken just before)."""
        self.gate.reading(version or self.version())
        self._read()

    @work(thread=True, exclusive=True, group="read")
    def _read(self) -> None:
        try:
            with self.session.store.read():
                figures = health_figures.health_figures(
                    self.session.clock(), channels=self.session.channels
                )
        except (StoreError, OperationError) as exc:
            self.gate.failed()
            self.post_message(ActionDone(str(exc), error=True, refresh=False))
            return
        except Exception as exc:  # a bug must not take the console down: say so, keep going
            self.gate.failed()
            fault = self.session.store.fault(exc)
            if fault is not None:
                self.post_message(ActionDone(str(fault), error=True, refresh=False))
                return
            log.exception("reading the Health view failed")
            self.post_message(
                ActionDone(f"cannot read the Health view: {exc!r}", error=True, refresh=False)
            )
            return
        self.post_message(HealthLoaded(figures))

    @on(HealthLoaded)
    def _apply(self, message: HealthLoaded) -> None:
        figures: HealthFigures = message.figures
        if figures == self.figures:
            return  # nothing changed since the last read: leave the rows alone
        self.figures = figures
        now = self.session.clock()
        with self.app.batch_update():
            self._sync(
                self.query_one("#health-sources", Vertical),
                {r.source_key: r for r in figures.sources},
                SourceRow,
                now,
            )
            self._sync(
                self.query_one("#health-channels", Vertical),
                {r.channel: r for r in figures.channels},
                ChannelRow,
                now,
            )
            start, end = figures.hours[0], figures.hours[-1]
            self.query_one("#sources-heading", Static).update(
                Text(
                    f"Sources · a bar an hour {_hour(start)}–{_hour(end, last=True)} UTC"
                    " · new: total · poll: slowest hour",
                    no_wrap=True,
                    overflow="ellipsis",
                )
            )
            self.query_one("#channels-heading", Static).update(
                Text("Channels · sent, failed: attempts an hour · total", no_wrap=True)
            )
            status = (
                f"{plural(len(figures.sources), 'source')}, "
                f"{plural(len(figures.channels), 'channel')} · as of {_hour(now, minutes=True)} UTC"
            )
            self.query_one("#status", Static).update(Text(status, no_wrap=True))

    def _sync(self, section: Vertical, rows: dict[str, Any], make: type, now: datetime) -> None:
        """Update the section's rows by key: shown rows in place, new ones mounted in key
        order, gone ones removed (the operator's scroll position stays)."""
        shown: dict[str, Widget] = {child.key: child for child in section.children}  # type: ignore[attr-defined]
        for key, widget in shown.items():
            if key not in rows:
                widget.remove()
        for key in sorted(rows):
            widget = shown.get(key)
            if widget is None:
                widget = make(key)
                later = [w for k, w in shown.items() if k > key and k in rows]
                section.mount(widget, before=min(later, key=lambda w: w.key) if later else None)
                shown[key] = widget
            widget.show(rows[key], now)  # type: ignore[attr-defined]


def _duration(ms: int) -> str:
    """A poll time short enough for the figure beside its bars: ``240ms``, ``1.6s``."""
    return f"{ms}ms" if ms < 1000 else f"{ms / 1000:.1f}s"


def _hour(when: datetime, minutes: bool = False, last: bool = False) -> str:
    """``when``'s hour in UTC (``HH:00``; ``HH:MM`` with ``minutes``; ``HH:59`` its end)."""
    return when.astimezone(UTC).strftime("%H:%M" if minutes else "%H:59" if last else "%H:00")
