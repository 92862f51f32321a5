"""The draft of a silence: matchers (prefilled from an event or a rule), how long, who and why.

Nothing is written until the form is submitted (enter in a field, or "Create"); it checks the
matchers and the duration as ``mrt-engine silence add`` does and says what is wrong in one line.
The silence itself is made by :func:`mrt_engine.silences.add_silence` (audited).
"""

from __future__ import annotations

import getpass
import shlex
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from mrt_engine.silence import SilenceError, check_matchers, parse_matcher
from mrt_engine.silences import silence_window
from mrt_engine.timeutil import utcnow

DEFAULT_DURATION = "2h"


@dataclass
class SilenceDraft:
    """What the form asks for, checked."""

    matchers: list[str]
    duration: str
    author: str
    comment: str


def default_author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


class SilenceForm(ModalScreen[SilenceDraft | None]):
    """Dismisses with the draft to create, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="modal.cancel")]

    def __init__(self, matchers: list[str], *, author: str | None = None) -> None:
        super().__init__()
        self.matchers = matchers
        self.author = default_author() if author is None else author

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Silence what matches (all of)", classes="dialog-title")
            yield Input(
                shlex.join(self.matchers),
                placeholder="source=KEY org=ORG repo=ID rule=NAME type=TYPE text=WORDS"
                " (=~ regex, != and !~ not)",
                id="matchers",
            )
            yield Input(DEFAULT_DURATION, placeholder="for: 30m, 2h, 3d", id="duration")
            yield Input(self.author, placeholder="author", id="author")
            yield Input(placeholder="comment: why (required)", id="comment")
            yield Static(
                Text("enter creates · silenced hits are stored, not sent", style="italic"),
                id="problem",
            )
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Create", id="create", variant="error")

    def on_mount(self) -> None:
        self.query_one("#comment", Input).focus()

    def _value(self, name: str) -> str:
        return self.query_one(f"#{name}", Input).value.strip()

    def draft(self) -> SilenceDraft:
        """The fields as a draft; :class:`SilenceError` says what is wrong."""
        try:
            matchers = shlex.split(self._value("matchers"))
        except ValueError as exc:
            raise SilenceError(f"matchers: {exc}") from None
        check_matchers([parse_matcher(m) for m in matchers])
        duration = self._value("duration") or DEFAULT_DURATION
        silence_window(utcnow(), duration=duration)
        author, comment = self._value("author"), self._value("comment")
        if not author:
            raise SilenceError("a silence needs an author")
        if not comment:
            raise SilenceError("a silence needs a comment saying why")
        return SilenceDraft(matchers, duration, author, comment)

    def _submit(self) -> None:
        try:
            draft = self.draft()
        except SilenceError as exc:
            self.query_one("#problem", Static).update(Text(str(exc).replace("--", ""), "bold"))
            return
        self.dismiss(draft)

    @on(Input.Submitted)
    def _entered(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
