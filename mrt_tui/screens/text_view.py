"""A modal that shows a block of text literally (dry-run results, help)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class TextView(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="modal.cancel"),
        Binding("q", "close", "Close", show=False, id="modal.close"),
    ]

    def __init__(self, title: str, body: str | Text) -> None:
        super().__init__()
        self.heading = title
        self.body = body if isinstance(body, Text) else Text(body)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self.heading, classes="dialog-title")
            with VerticalScroll():
                yield Static(self.body)
            yield Label("esc closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
