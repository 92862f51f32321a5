"""Confirmation for destructive actions: what changes, before and after, with "No" focused."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class Confirm(ModalScreen[bool]):
    BINDINGS = [
        Binding("escape", "no", "No", id="modal.cancel"),
        Binding("y", "yes", "Yes", show=False, id="modal.yes"),
        Binding("n", "no", "No", show=False, id="modal.no"),
    ]

    def __init__(self, title: str, before: str, after: str) -> None:
        super().__init__()
        self.heading = title
        self.before = before
        self.after = after

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.heading, classes="dialog-title")
            yield Static(Text.assemble(("before  ", "bold"), self.before), id="before")
            yield Static(Text.assemble(("after   ", "bold"), self.after), id="after")
            with Horizontal(classes="buttons"):
                yield Button("No", id="no", variant="primary")
                yield Button("Yes", id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)
