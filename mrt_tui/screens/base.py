"""The shape every list view shares: a live table over a window of the store, read by a worker.

A thread worker reads a window (newest first, or older than ``before_id`` once the operator pages
down) and posts it; the UI thread only applies it with :meth:`LiveTable.sync`. Every second the
app asks the view on screen (and only that one) to refresh; it reads again only when something was
committed since its last read (:class:`ReadGate`), so rows committed by the engine appear within
about a second and an idle console reads nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Header, Input, Static
from textual.worker import WorkerState

from mrt_engine.operations import OperationError
from mrt_engine.store.db import StoreError
from mrt_engine.wording import plural
from mrt_tui.messages import ActionDone, Prefetched, RowsLoaded
from mrt_tui.widgets.keys_footer import KeysFooter
from mrt_tui.widgets.live_table import LiveTable

REFRESH_SECONDS = 1.0
log = logging.getLogger(__name__)


class ReadGate:
    """When a view reads the store again: after a commit since its last read (the store's
    version, one ``PRAGMA data_version``), or when what it shows ages with the clock."""

    def __init__(self, max_age: float | None = None) -> None:
        self.max_age = max_age  # seconds; None: only a commit changes what the view shows
        self._version: tuple[int, ...] | None = None
        self._read_at = 0.0

    def due(self, version: tuple[int, ...] | None) -> bool:
        if version is None or version != self._version:
            return True  # changed, or the store cannot tell: read
        return self.max_age is not None and time.monotonic() - self._read_at >= self.max_age

    def reading(self, version: tuple[int, ...] | None) -> None:
        """A read starts now: it sees at least every commit before ``version`` was taken."""
        self._version, self._read_at = version, time.monotonic()

    def failed(self) -> None:
        """The read did not get through: the next tick tries again."""
        self._version = None


class LiveScreen(Screen):
    """A list screen: subclasses give columns, ``load`` (worker thread) and ``cells``."""

    COLUMNS: list[tuple[str, str, int | None]] = []
    FILTER_HELP = ""
    PAGED = True  # rows are windows of the store by id; False: the view shows every row
    REREAD_SECONDS: float | None = None  # read again this often even with no commit
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="list.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="list.clear_filter"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._table: LiveTable | None = None
        self.before_id: int | None = None
        self.after_id: int | None = None
        self._previous_before: int | None = None
        self.filter_text = ""
        self.rows: dict[str, Any] = {}
        self._generation = 0
        self._ahead: Prefetched | None = None  # the next older window, read ahead
        self._last_rows: list[Any] | None = None
        self._last_extra: Any = None
        self._paging: str | None = None
        self._beyond = 1  # how far past the window's edge the cursor went (rows)
        self.gate = ReadGate(self.REREAD_SECONDS)

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Input(placeholder=self.FILTER_HELP, id="filter", classes="hidden")
            yield self.table
            yield Static("", id="status")
        # the palette's keys (: and ctrl+p) are in the help; a footer entry would crowd out ? and q
        yield KeysFooter(show_command_palette=False)

    @property
    def table(self) -> LiveTable:
        """The view's table, made with the view: there before it is mounted (a key's
        ``check_action`` may ask what is selected while the view is being built: nothing)."""
        if self._table is None:
            self._table = LiveTable(self.COLUMNS, paged=self.PAGED, id="table")
        return self._table

    @property
    def session(self):
        return self.app.session

    def on_screen_resume(self) -> None:
        self.refresh_if_changed(self.version())
        self.table.focus()

    # ------------------------------------------------------------------ reading
    def version(self) -> tuple[int, ...] | None:
        """What this view's rows depend on: the store's version (None: cannot tell now)."""
        return self.session.store_version()

    def refresh_if_changed(self, version: tuple[int, ...] | None) -> None:
        """The app's periodic refresh, for the view on screen: read only when the store changed
        (or the view aged); skipped while a read is still running (a page change, a slow
        filter), so reads never pile up or compete with the one the operator waits for."""
        if not self.gate.due(version):
            return
        if not any(
            w.node is self and w.group == "read" and w.state == WorkerState.RUNNING
            for w in self.app.workers
        ):
            self.reload(version)

    def reload(self, version: tuple[int, ...] | None = None) -> None:
        """Read the window now (``version``: the store's, taken just before; asked if not given)."""
        self.gate.reading(version or self.version())
        self._read(self.before_id, self.after_id, self.filter_text, self._generation)

    @work(thread=True, exclusive=True, group="read")
    def _read(
        self, before_id: int | None, after_id: int | None, filter_text: str, generation: int
    ) -> None:
        try:
            with self.session.store.read():
                rows, extra = self.load(before_id, after_id, filter_text)
            lines = self.table_lines(rows)
        except (StoreError, OperationError) as exc:
            self.gate.failed()
            self.post_message(ActionDone(str(exc), error=True, refresh=False))
            return
        except Exception as exc:  # a bug must not take the console down: say so, keep going
            self.gate.failed()
            fault = self.session.store.fault(exc)
            if fault is not None:  # the store, not a bug: its one line is the whole story
                self.post_message(ActionDone(str(fault), error=True, refresh=False))
                return
            log.exception("reading the %s view failed", self.TITLE)
            self.post_message(
                ActionDone(f"cannot read the {self.TITLE} view: {exc!r}", error=True, refresh=False)
            )
            return
        self.post_message(RowsLoaded(rows, extra, generation, lines))

    def table_lines(self, rows: list[Any]) -> list[tuple[str, list[Any]]]:
        """Each row's key and cells (in the read's worker: a page's worth of ``Text`` is built
        off the UI thread)."""
        return [(self.key_of(r), self.cells(r)) for r in rows]

    def load(
        self, before_id: int | None, after_id: int | None, filter_text: str
    ) -> tuple[list[Any], Any]:
        """Read one window (worker thread): rows newest first (below ``before_id``, or the page
        just above ``after_id``), and anything else to show."""
        raise NotImplementedError

    def key_of(self, row: Any) -> str:
        return str(row.id)

    def cells(self, row: Any) -> list[Any]:
        raise NotImplementedError

    def status_text(self, rows: list[Any], extra: Any) -> str:
        where = "newest" if self.before_id is None else f"older than #{self.before_id}"
        shown = f"{plural(len(rows), 'row')}, {where}"
        if self.filter_text:
            shown += f" · filter: {self.filter_text}"
        return shown

    @on(RowsLoaded)
    def _apply(self, message: RowsLoaded) -> None:
        if message.generation != self._generation:
            return  # a read started before the window or filter changed
        rows = message.rows
        if self._paging is not None and not rows:
            self._nothing_beyond()
            return
        if self.after_id is not None:  # a newer page: pin it as a window below its top
            full = len(rows) >= self.page_size
            self.before_id = int(self.key_of(rows[0])) + 1 if rows and full else None
            self.after_id = None
        if self._paging is None and rows == self._last_rows:
            return  # nothing changed since the last refresh: leave the table alone
        self._last_rows, self._last_extra = rows, message.extra
        self.rows = {self.key_of(r): r for r in rows}
        keep = None  # the cursor goes as far into the new window as it went past the old one
        if self._paging == "older" and rows:
            keep = self.key_of(rows[min(self._beyond, len(rows)) - 1])
        elif self._paging == "newer" and rows:
            keep = self.key_of(rows[max(len(rows) - self._beyond, 0)])
        self._paging = None
        lines = message.lines if message.lines is not None else self.table_lines(rows)
        self.table.sync(lines, keep_key=keep)
        self._show_status(self.status_text(rows, message.extra))
        self.loaded(rows, message.extra)
        self.refresh_bindings()  # a key may apply now, or no longer (the footer redraws if so)
        if self.PAGED and len(rows) >= self.page_size:
            oldest = min(int(self.key_of(r)) for r in rows)
            ahead = self._ahead
            if ahead is None or (ahead.before_id, ahead.filter_text) != (oldest, self.filter_text):
                # Once this window is on screen: a read beside the paint slows the paint (GIL).
                self.call_after_refresh(self._prefetch, oldest, self.filter_text)

    def _nothing_beyond(self) -> None:
        """A page past the window's edge found no rows: the window stays, the cursor goes to
        its edge row."""
        if self._paging == "older":
            self.before_id = self._previous_before
            self.table.action_last()
            self.notify("no older rows")
        else:  # nothing newer: the window shown is the newest (and follows new rows again)
            self.before_id = None
            self.table.action_first()
            self._show_status(self.status_text(self._last_rows or [], self._last_extra))
        self._paging, self.after_id = None, None

    def _show_status(self, text: str | Text) -> None:
        """The status line says ``text``. It is one line high whatever it says: no layout of
        the whole screen for it (a third of a page-down's work when the window changes)."""
        status = self.query_one("#status", Static)
        try:
            status.update(text, layout=False)
        except TypeError:  # a Textual before layout=False (0.86): it lays the screen out
            status.update(text)

    @work(thread=True, exclusive=True, group="prefetch")
    def _prefetch(self, before_id: int, filter_text: str) -> None:
        """Read the next older window ahead of time, so page-down does not wait for the store."""
        try:
            with self.session.store.read():
                rows, extra = self.load(before_id, None, filter_text)
            lines = self.table_lines(rows)
        except Exception:  # only an optimisation: the page-down will read it again
            log.debug("prefetch failed", exc_info=True)
            return
        self.post_message(Prefetched(before_id, filter_text, rows, extra, lines))

    @on(Prefetched)
    def _keep_prefetched(self, message: Prefetched) -> None:
        self._ahead = message

    def loaded(self, rows: list[Any], extra: Any) -> None:
        """Hook after a window is shown."""

    @property
    def selected(self) -> Any | None:
        key = self.table.selected_key
        return self.rows.get(key) if key is not None else None

    # ------------------------------------------------------------------ paging and filter
    page_size = 80  # rows per window: two screens of 40 lines, cheap to swap when paging

    def _set_window(
        self, before_id: int | None, paging: str | None = None, after_id: int | None = None
    ) -> None:
        self._previous_before = self.before_id
        self.before_id = before_id
        self.after_id = after_id
        self._paging = paging
        self._generation += 1
        self.reload()

    @on(LiveTable.RowSelected)
    def _row_selected(self, event: LiveTable.RowSelected) -> None:
        """Enter on a row (the table's own binding): drill down, where the view has a trace."""
        event.stop()
        if hasattr(self, "action_trace"):
            self.action_trace()

    @on(LiveTable.PageRequest)
    def _page(self, message: LiveTable.PageRequest) -> None:
        keys = self.table.keys
        if not keys or not self.PAGED:
            return
        self._beyond = message.beyond
        if message.older:
            oldest = min(int(k) for k in keys)
            ahead, self._ahead = self._ahead, None
            if (
                ahead is not None
                and (ahead.before_id, ahead.filter_text) == (oldest, self.filter_text)
                and ahead.rows
            ):
                self._previous_before = self.before_id
                self.before_id, self.after_id, self._paging = oldest, None, "older"
                self._generation += 1
                self._apply(RowsLoaded(ahead.rows, ahead.extra, self._generation, ahead.lines))
                return
            self._set_window(oldest, "older")
        elif self.before_id is not None:
            self._set_window(None, "newer", after_id=max(int(k) for k in keys))
        else:
            self.table.action_first()  # the newest window: nothing newer to page to

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        box.value = self.filter_text
        box.focus()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.filter_text = event.value.strip()
        if not self.filter_text:
            event.input.add_class("hidden")
        self._set_window(None)
        self.table.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.add_class("hidden")
        if self.filter_text or self.before_id is not None:
            self.filter_text = ""
            self._set_window(None)
        self.table.focus()

    def run_operation(self, label: str, operation) -> None:
        self.app.run_operation(label, operation)
