"""2 · Outbox: every delivery with its channel, status, attempts, next try and last error."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from mrt_engine import operations
from mrt_engine.store import feed
from mrt_engine.store.queries import STATUSES, DeliveryView, outbox_counts
from mrt_tui import cells
from mrt_tui.screens.base import LiveScreen


def parse_outbox_filter(text: str) -> tuple[str | None, str | None]:
    """``status:dead channel:welink`` (or just ``dead welink``) as (status, channel)."""
    status = channel = None
    for part in text.split():
        key, sep, value = part.partition(":")
        if sep and key == "status":
            status = value
        elif sep and key == "channel":
            channel = value
        elif part in STATUSES:
            status = part
        elif part:
            channel = part
    return status, channel


class OutboxScreen(LiveScreen):
    TITLE = "Outbox"
    COLUMNS = [
        ("id", "#", 6),
        ("channel", "channel", 8),
        ("status", "status", 10),
        ("attempts", "tries", 5),
        ("next", "next try", 8),
        ("title", "title", None),
        ("error", "last error", None),
    ]
    FILTER_HELP = (
        "status:pending|retrying|sent|dead|silenced channel:NAME — enter applies, esc clears"
    )
    BINDINGS = [
        Binding("enter", "trace", "Trace", id="outbox.trace"),
        Binding("r", "resend", "Resend", id="outbox.resend"),
        Binding("D", "requeue_dead", "Requeue dead", id="outbox.requeue_dead"),
    ]

    def load(self, before_id, after_id, filter_text) -> tuple[list[Any], Any]:
        status, channel = parse_outbox_filter(filter_text)
        rows = feed.delivery_rows(
            status, channel, before_id=before_id, after_id=after_id, limit=self.page_size
        )
        return rows, outbox_counts()

    def cells(self, row: DeliveryView) -> list[Any]:
        waiting = row.status in ("pending", "retrying")
        return [
            cells.whole(row.id),
            cells.text(row.channel),
            cells.status(row.status),
            cells.whole(row.attempts),
            cells.when(row.next_attempt_at, self.session.clock()) if waiting else cells.text("-"),
            cells.text(row.title),
            cells.text(row.last_error or ""),
        ]

    counts: dict[str, dict[str, int]] = {}  # {channel or "*": {status: n}}, from the last read

    def loaded(self, rows, extra) -> None:
        self.counts = extra or {}

    def status_text(self, rows, extra) -> str:
        total = (extra or {}).get("*", {})
        counts = " ".join(f"{cells.STATUS_GLYPHS[s]} {s} {total.get(s, 0)}" for s in STATUSES)
        return f"{counts} · " + super().status_text(rows, extra)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        row: DeliveryView | None = self.selected
        if action == "trace" and row is None:
            return None
        if action == "resend" and (
            row is None or row.status not in ("retrying", "dead", "silenced")
        ):
            return None  # sent: resend the event from Events; pending: already queued
        return True

    def action_trace(self) -> None:
        row = self.selected
        if row is not None:
            self.app.show_trace(f"delivery:{row.id}")

    def action_resend(self) -> None:
        row: DeliveryView | None = self.selected
        if row is None:
            return
        self.run_operation(
            "resend",
            lambda: operations.resend_delivery(
                self.session.store, row.id, actor=self.session.actor, clock=self.session.clock
            ),
        )

    def action_requeue_dead(self) -> None:
        _status, channel = parse_outbox_filter(self.filter_text)
        # The counts the last refresh read (at most a second old); the operation itself
        # requeues whatever is dead when it runs.
        counts = self.counts.get(channel or "*", {}).get("dead", 0)
        from mrt_tui.screens.confirm import Confirm

        where = f"channel {channel}" if channel else "every channel"
        before = f"{counts} dead deliveries on {where}"
        after = f"{counts} pending, sent again by the delivery workers"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_operation(
                    "requeue dead",
                    lambda: operations.requeue_dead(
                        self.session.store,
                        channel=channel,
                        actor=self.session.actor,
                        clock=self.session.clock,
                    ),
                )

        self.app.push_screen(Confirm("Requeue dead deliveries?", before, after), confirmed)
