"""Replay: re-evaluate stored events with the current rules and enqueue what now matches and
was never sent. The form shows the dry-run count before anything runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from mrt_engine import operations
from mrt_engine.timeutil import parse_when
from mrt_engine.wording import plural


@dataclass
class ReplayRequest:
    since: datetime
    until: datetime | None
    source: str | None
    channel: str | None
    expected: int  # deliveries the dry run found


class _Preview(Message):
    def __init__(self, text: Text, request: ReplayRequest | None) -> None:
        super().__init__()
        self.text = text
        self.request = request


class ReplayForm(ModalScreen[ReplayRequest | None]):
    """Dismisses with the request to run (after "Run" is pressed), or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="modal.cancel")]

    def __init__(self, session, since: str = "24h") -> None:
        super().__init__()
        self.session = session
        self.initial_since = since
        self.request: ReplayRequest | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Replay stored events with the current rules", classes="dialog-title")
            yield Input(
                self.initial_since, placeholder="since: 2026-11-20T08:00Z or 24h", id="since"
            )
            yield Input(placeholder="until (optional)", id="until")
            yield Input(placeholder="source key glob (optional), e.g. github:*", id="source")
            yield Input(placeholder="channel (optional)", id="channel")
            yield Static("", id="preview")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Run", id="run", variant="error", disabled=True)

    def on_mount(self) -> None:
        self._preview()
        self.query_one("#since", Input).focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self.query_one("#run", Button).disabled = True
        self._preview()

    def _values(self) -> dict[str, str]:
        return {
            name: self.query_one(f"#{name}", Input).value.strip()
            for name in ("since", "until", "source", "channel")
        }

    @work(thread=True, exclusive=True, group="replay-preview")
    def _preview(self) -> None:
        values = self._values()
        try:
            since = parse_when(values["since"] or "24h", self.session.clock())
            until = parse_when(values["until"], self.session.clock()) if values["until"] else None
        except ValueError as exc:
            self.post_message(_Preview(Text(str(exc), style="italic"), None))
            return
        channel = values["channel"] or None
        if channel is not None and channel not in self.session.channels:
            self.post_message(_Preview(Text(f"unknown channel {channel!r}", style="italic"), None))
            return
        with self.session.store.read():
            plan, _ = operations.plan_replay(
                self.session.rules,
                since=since,
                until=until,
                source=values["source"] or None,
                channel=channel,
            )
        request = ReplayRequest(since, until, values["source"] or None, channel, plan.deliveries)
        text = Text.assemble(
            ("dry run  ", "bold"),
            f"{plural(plan.scanned, 'event')} scanned, {plan.matched} match now, "
            f"{len(plan.items)} never sent: {plural(plan.deliveries, 'delivery', 'deliveries')} would be enqueued",
        )
        self.post_message(_Preview(text, request))

    @on(_Preview)
    def _show(self, message: _Preview) -> None:
        self.query_one("#preview", Static).update(message.text)
        self.request = message.request
        self.query_one("#run", Button).disabled = not (message.request and message.request.expected)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "run" and self.request is not None:
            self.dismiss(self.request)
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
