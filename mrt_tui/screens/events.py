"""1 · Events: the live feed, newest first, with the rules that hit each event."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from mrt_engine import operations, silences
from mrt_engine.store import feed
from mrt_tui import cells
from mrt_tui.screens.base import LiveScreen


class EventsScreen(LiveScreen):
    TITLE = "Events"
    COLUMNS = [
        ("id", "#", 6),
        ("time", "time", 8),
        ("type", "source / type", 16),
        ("title", "title", None),
        ("rules", "rules", 16),
    ]
    FILTER_HELP = (
        "words in the title, source:github type:pr_* matched:yes|no — enter applies, esc clears"
    )
    BINDINGS = [
        Binding("enter", "trace", "Trace", id="events.trace"),
        Binding("r", "resend", "Resend", id="events.resend"),
        Binding("p", "replay", "Replay", id="events.replay"),
        Binding("f", "follow", "Follow", id="events.follow"),
        Binding("s", "silence", "Silence", id="events.silence"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.follow = True

    def load(self, before_id, after_id, filter_text) -> tuple[list[Any], Any]:
        flt = feed.EventFilter.parse(filter_text)
        return feed.event_rows(
            flt, before_id=before_id, after_id=after_id, limit=self.page_size
        ), None

    def cells(self, row: feed.EventRow) -> list[Any]:
        rules = ", ".join(row.rules) if row.rules else ("baseline" if row.baseline else "")
        return [
            cells.whole(row.id),
            cells.when(row.observed_at, self.session.clock()),
            cells.text(f"{cells.SOURCE_SHORT.get(row.source, row.source)} {row.event_type}"),
            cells.text(row.title),
            cells.text(rules, "bold" if row.alert_id else "dim"),
        ]

    def status_text(self, rows, extra) -> str:
        return super().status_text(rows, extra) + f" · follow {'on' if self.follow else 'off'}"

    def loaded(self, rows, extra) -> None:
        if self.follow and self.before_id is None and rows:
            self.table.move_cursor(row=0)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("trace", "resend", "silence") and self.selected is None:
            return None  # shown greyed out: nothing selected
        if action == "resend" and not self.session.channels:
            return None
        if action == "replay" and self.session.rules is None:
            return None
        return True

    # ------------------------------------------------------------------ actions
    def action_follow(self) -> None:
        self.follow = not self.follow
        if self.follow:
            self._set_window(None)
        self.notify(f"follow {'on' if self.follow else 'off'}")

    def action_silence(self) -> None:
        row = self.selected
        if row is not None:
            self.app.draft_silence(lambda: silences.draft_for_event(row.id))

    def action_trace(self) -> None:
        row = self.selected
        if row is not None:
            self.app.show_trace(f"event:{row.id}")

    def action_resend(self) -> None:
        row = self.selected
        if row is None:
            return
        from mrt_tui.screens.channel_pick import ChannelPick

        def chosen(channel: str | None) -> None:
            if channel:
                self.run_operation(
                    "resend",
                    lambda: operations.resend_event(
                        self.session.store,
                        row.id,
                        channel,
                        channels=self.session.channels,
                        actor=self.session.actor,
                        clock=self.session.clock,
                    ),
                )

        self.app.push_screen(
            ChannelPick(self.session.channels, f"Resend event #{row.id} to"), chosen
        )

    def action_replay(self) -> None:
        self.app.open_replay()
