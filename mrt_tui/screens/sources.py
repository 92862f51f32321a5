"""5 · Sources: per source key its cursor, polls, errors, rate limit and quarantined items;
poll now, pause, reset."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from mrt_engine import operations
from mrt_engine.store import queries
from mrt_engine.store.queries import SourceView
from mrt_engine.wording import plural
from mrt_tui import cells
from mrt_tui.screens.base import LiveScreen


class SourcesScreen(LiveScreen):
    TITLE = "Sources"
    PAGED = False
    REREAD_SECONDS = 60.0  # a backoff ends with the clock, not with a commit

    def version(self) -> tuple[int, ...] | None:
        """The store's version, and the embedded engine's idle polls, whose times this view
        shows live although they are not committed yet."""
        version = self.session.store_version()
        return None if version is None else (*version, self.session.idle_revision())

    COLUMNS = [
        ("key", "source key", 3.0),
        ("state", "state", 9),
        ("last", "polled", 8, 100),
        ("ok", "last ok", 8),
        ("fails", "fails", 5),
        ("quarantined", "quar.", 5, 100),
        ("rate", "rate", 5, 100),
        ("next", "next", 8, 90),
        ("cursor", "cursor", 12),
        ("error", "last error", None),
    ]
    BINDINGS = [
        Binding("n", "poll_now", "Poll now", id="sources.poll_now"),
        Binding("P", "pause", "Pause/resume", id="sources.pause"),
        Binding("X", "reset_cursor", "Reset cursor", id="sources.reset_cursor"),
    ]

    def load(self, before_id, after_id, filter_text) -> tuple[list[Any], Any]:
        rows = self.session.source_states()
        if filter_text:
            rows = [r for r in rows if filter_text.casefold() in r.source_key.casefold()]
        return rows, None

    def key_of(self, row: SourceView) -> str:
        return row.source_key

    def cells(self, row: SourceView) -> list[Any]:
        now = self.session.clock()
        if row.paused:
            state = cells.text("‖ paused", "bold")
        elif row.consecutive_failures:
            state = cells.text("✗ failing", "bold")
        elif row.backoff_until and row.backoff_until > now:
            state = cells.text("… backoff")
        else:
            state = cells.text("✓ ok")
        return [
            cells.text(cells.short_key(row.source_key)),
            state,
            cells.when(row.last_poll_at, now),
            cells.when(row.last_success_at, now),
            cells.whole(row.consecutive_failures),
            cells.whole(row.quarantined or "-"),
            cells.whole("-" if row.rate_limit_remaining is None else row.rate_limit_remaining),
            _next(row, now),
            cells.text(queries.describe_cursor(row.cursor)),
            cells.text(row.last_error or ""),
        ]

    def summary(self, rows) -> str:
        failing = sum(1 for r in rows if r.consecutive_failures)
        paused = sum(1 for r in rows if r.paused)
        held = sum(1 for r in rows if r.quarantined)
        return (
            f"{plural(len(rows), 'source')}, {failing} failing, {paused} paused"
            + (f", {held} with quarantined items" if held else "")
            + f" · {self.session.describe()}"
            + self._attached_note()
        )

    def _attached_note(self) -> str:
        """Attached, the poll times are the engine's last written ones: say how late they
        may be, so a source polled every second does not look stuck."""
        if self.session.mode != "attach":
            return ""
        return " · polls that found nothing new are recorded once a minute"

    def on_live_table_row_highlighted(self, event) -> None:
        """The selected source in full on the status line (the columns cut long values)."""
        row: SourceView | None = self.selected
        if row is not None:
            self._show_status(cells.text(_detail(row) + self._attached_note()))

    def status_text(self, rows, extra) -> str:
        row = self.selected
        if row is not None:
            return _detail(row) + self._attached_note()
        return self.summary(rows)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("poll_now", "pause", "reset_cursor") and self.selected is None:
            return None
        return True

    def action_poll_now(self) -> None:
        row = self.selected
        if row is None:
            return
        self.run_operation(
            "poll now",
            lambda: operations.request_poll(
                self.session.store,
                row.source_key,
                actor=self.session.actor,
                clock=self.session.clock,
            ),
        )

    def action_pause(self) -> None:
        row: SourceView | None = self.selected
        if row is None:
            return
        self.run_operation(
            "pause" if not row.paused else "resume",
            lambda: operations.set_paused(
                self.session.store,
                row.source_key,
                not row.paused,
                actor=self.session.actor,
                clock=self.session.clock,
            ),
        )

    def action_reset_cursor(self) -> None:
        row: SourceView | None = self.selected
        if row is None:
            return
        from mrt_tui.screens.cursor_reset import CursorReset

        def chosen(target) -> None:
            if target is None:
                return
            to, initial = target
            self.run_operation(
                "cursor reset",
                lambda: operations.reset_cursor(
                    self.session.store,
                    row.source_key,
                    to=to,
                    initial=initial,
                    actor=self.session.actor,
                    clock=self.session.clock,
                ),
            )

        self.app.push_screen(
            CursorReset(row.source_key, queries.describe_cursor(row.cursor)), chosen
        )


def _detail(row: SourceView) -> str:
    """One source in full: cursor, last error, and the latest item it had to quarantine."""
    text = f"{row.source_key} · cursor {queries.describe_cursor(row.cursor)}"
    if row.last_error:
        text += f" · last error {row.last_error}"
    latest = row.quarantine_latest
    if latest is not None:
        text += (
            f" · {row.quarantined} quarantined, latest {latest.item_key}: {latest.error}"
            f" (trace quarantine:{latest.id})"
        )
    return text


def _next(row: SourceView, now) -> Any:
    """When the next poll is due; ``due`` once that time has passed (the poll is running, or
    its time is not written yet), rather than a time in the past."""
    if row.next_poll_at is not None and row.next_poll_at <= now and not row.paused:
        return cells.text("due")
    return cells.when(row.next_poll_at, now)
