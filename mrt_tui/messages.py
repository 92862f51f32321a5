"""Messages that workers post to screens (results read from the store off the UI thread)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


class RowsLoaded(Message):
    """A fresh window of rows for a list screen (only the latest one matters); ``lines``: the
    table's (key, cells) of each row, built by the worker too (None: the screen builds them)."""

    def __init__(
        self,
        rows: list[Any],
        extra: Any = None,
        generation: int = 0,
        lines: list[tuple[str, list[Any]]] | None = None,
    ) -> None:
        super().__init__()
        self.rows = rows
        self.extra = extra
        self.generation = generation
        self.lines = lines

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RowsLoaded)


@dataclass
class ActionDone(Message):
    """An operator action finished: its one-line result (or error) for a notification."""

    text: str
    error: bool = False
    refresh: bool = True  # False for a failed read: refreshing would only fail again at once


@dataclass
class ShowText(Message):
    """A block of text to show in a modal (a dry run's result)."""

    title: str
    text: str


class Prefetched(Message):
    """The window below ``before_id``, read ahead of a page-down (``lines`` as in RowsLoaded)."""

    def __init__(
        self,
        before_id: int,
        filter_text: str,
        rows: list[Any],
        extra: Any,
        lines: list[tuple[str, list[Any]]],
    ) -> None:
        super().__init__()
        self.before_id = before_id
        self.filter_text = filter_text
        self.rows = rows
        self.extra = extra
        self.lines = lines


class HealthLoaded(Message):
    """The Health view's figures, freshly read (only the latest read matters)."""

    def __init__(self, figures: Any) -> None:
        super().__init__()
        self.figures = figures

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, HealthLoaded)
