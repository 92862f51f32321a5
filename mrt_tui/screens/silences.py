"""6 · Silences: the silences in force (``a``: the ended ones too) with their matchers, when
they end, how many deliveries they hold, who made them and why; ``x`` expires one."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from mrt_engine import silences
from mrt_engine.store import queries
from mrt_engine.store.views import SilenceView
from mrt_engine.timeutil import humanize_age
from mrt_engine.wording import plural
from mrt_tui import cells
from mrt_tui.screens.base import LiveScreen

STATE_STYLES = {"active": "bold", "pending": "italic", "expired": "dim"}


class SilencesScreen(LiveScreen):
    TITLE = "Silences"
    PAGED = False
    REREAD_SECONDS = 30.0  # "ends in" moves on with the clock, and silences end by themselves
    COLUMNS = [
        ("id", "#", 3),
        ("state", "state", 7),
        ("ends", "ends", 7),
        ("held", "held", 4),
        ("matchers", "matchers", None),
        ("author", "author", 8),
        ("comment", "comment", None),
    ]
    BINDINGS = [
        Binding("n", "new_silence", "New", id="silences.new"),
        Binding("x", "expire_silence", "Expire", id="silences.expire"),
        Binding("e", "expire_silence", "Expire", show=False, id="silences.expire_e"),
        Binding("a", "toggle_expired", "Ended too", id="silences.all"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.show_expired = False

    def load(self, before_id, after_id, filter_text) -> tuple[list[Any], Any]:
        return queries.silences(self.session.clock(), include_expired=self.show_expired), None

    def cells(self, row: SilenceView) -> list[Any]:
        now = self.session.clock()
        ended = row.expired_at or row.ends_at
        ends = (
            humanize_age(row.ends_at, now) if row.state != "expired" else humanize_age(ended, now)
        )
        return [
            cells.whole(row.id),
            cells.text(row.state, STATE_STYLES.get(row.state, "")),
            cells.text(ends),
            cells.whole(row.silenced),
            cells.text(" ".join(row.matchers)),
            cells.text(row.author),
            cells.text(row.comment),
        ]

    def status_text(self, rows, extra) -> str:
        what = "in force and ended" if self.show_expired else "in force"
        return f"{plural(len(rows), 'silence')} {what} · s on an event or a rule drafts one"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("filter", "clear_filter"):
            return False  # every silence is shown: nothing to filter
        row: SilenceView | None = self.selected
        if action == "expire_silence" and (row is None or row.state == "expired"):
            return None
        return True

    # ------------------------------------------------------------------ actions
    def action_toggle_expired(self) -> None:
        self.show_expired = not self.show_expired  # the status line says which
        self.reload()

    def action_new_silence(self) -> None:
        self.app.open_silence_form([])

    def action_expire_silence(self) -> None:
        row: SilenceView | None = self.selected
        if row is None or row.state == "expired":
            return
        from mrt_tui.screens.confirm import Confirm

        shown = " ".join(row.matchers)
        before = f"silence {row.id} ({shown}) {row.state}, ends {humanize_age(row.ends_at, self.session.clock())}"
        after = "ended now; the deliveries it holds stay silenced (resend or replay sends them)"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_operation(
                    "expire silence",
                    lambda: silences.expire_silence(
                        self.session.store,
                        row.id,
                        actor=self.session.actor,
                        clock=self.session.clock,
                    ),
                )

        self.app.push_screen(Confirm(f"Expire silence {row.id}?", before, after), confirmed)
