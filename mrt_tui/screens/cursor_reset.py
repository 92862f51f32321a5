"""Reset a source's cursor: to a time or to its initial state, showing the old value first."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from mrt_engine.timeutil import parse_when


class CursorReset(ModalScreen[tuple[datetime | None, bool] | None]):
    """Dismisses with (to, initial), or None when cancelled. "No" has the focus."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="modal.cancel")]

    def __init__(self, source_key: str, old: str) -> None:
        super().__init__()
        self.source_key = source_key
        self.old = old

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Reset cursor", classes="dialog-title")
            yield Static(Text.assemble(("source  ", "bold"), self.source_key))
            yield Static(
                Text.assemble(("before  ", "bold"), self.old, ("  (kept in the audit log)", "dim")),
                id="before",
            )
            yield Input(
                placeholder="2026-11-20T08:00:00Z, 6h, or initial",
                id="target",
            )
            yield Static("", id="after")
            with Horizontal(classes="buttons"):
                yield Button("No", id="no", variant="primary")
                yield Button("Yes", id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def _target(self) -> tuple[datetime | None, bool] | str:
        value = self.query_one("#target", Input).value.strip()
        if not value:
            return "type a time (ISO or an age like 6h) or initial"
        if value.lower() == "initial":
            return (None, True)
        try:
            return (parse_when(value), False)
        except ValueError as exc:
            return str(exc)

    def on_input_changed(self, event: Input.Changed) -> None:
        target = self._target()
        after = self.query_one("#after", Static)
        if isinstance(target, str):
            after.update(Text.assemble(("after   ", "bold"), (target, "italic")))
        elif target[1]:
            after.update(
                Text.assemble(
                    ("after   ", "bold"),
                    "initial: the next poll starts over (first-run rules apply)",
                )
            )
        else:
            after.update(
                Text.assemble(("after   ", "bold"), f"since {target[0]:%Y-%m-%dT%H:%M:%SZ}")
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "yes":
            self.dismiss(None)
            return
        target = self._target()
        if isinstance(target, str):
            self.notify(target, severity="error")
            return
        self.dismiss(target)

    def action_cancel(self) -> None:
        self.dismiss(None)
