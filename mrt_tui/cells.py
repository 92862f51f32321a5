"""Table cells and detail lines built from stored data: always ``Text``, never markup.

Stored text was cleaned of control characters where it left the store (mrt_engine.store); here
it becomes ``rich.text.Text``, which the tables show literally, so ``[bold]`` or ``[/x]`` in a
title is just characters.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.cells import cell_len
from rich.text import Text

# Status is shown by glyph and word, never by colour alone.
STATUS_GLYPHS = {
    "pending": "○",
    "retrying": "↻",
    "sent": "✓",
    "dead": "✗",
    "silenced": "⊘",
    "bundled": "⊂",  # carried by another delivery's message
    "in_flight": "…",
    "failed": "✗",
    "interrupted": "!",
}
STATUS_STYLES = {
    "pending": "",
    "retrying": "bold",
    "sent": "",
    "dead": "bold reverse",
    "silenced": "dim",
    "failed": "bold",
    "interrupted": "italic",
}


# Platform names short enough to share a column with the event type.
SOURCE_SHORT = {"github": "gh", "huggingface": "hf", "modelscope": "ms"}


def short_key(key: str) -> str:
    """``github:vllm-project/vllm:issues`` as ``gh:vllm-project/vllm:issues`` (the full key is
    on the Sources view's status line)."""
    platform, sep, rest = key.partition(":")
    return f"{SOURCE_SHORT.get(platform, platform)}{sep}{rest}"


def text(value: object, style: str = "") -> Text:
    """Any value as literal text."""
    return Text("" if value is None else str(value), style=style, no_wrap=True, overflow="ellipsis")


class BothEnds(Text):
    """A cell whose end says as much as its start (a source's name ends with its kind: "GitHub
    (vllm-project/vllm PRs)"): a column too narrow for it cuts its middle, not its end."""


def both_ends(value: object, style: str = "") -> BothEnds:
    return BothEnds("" if value is None else str(value), style=style, no_wrap=True)


def cut_middle(cell: Text, width: int) -> Text:
    """``cell`` in ``width`` cells: its start, an ellipsis, its end (the end gets the smaller
    half; a wide character counts as the two cells it takes)."""
    plain = cell.plain
    if cell_len(plain) <= width:
        return cell
    if width < 1:
        return Text("")
    tail_room = (width - 1) // 2
    head_room = width - 1 - tail_room
    head = len(plain)
    while head and cell_len(plain[:head]) > head_room:
        head -= 1
    tail = 0
    while tail < len(plain) - head and cell_len(plain[len(plain) - tail - 1 :]) <= tail_room:
        tail += 1
    out = cell[:head]
    out.append("…")
    if tail:
        out.append_text(cell[len(plain) - tail :])
    return out


class Whole(Text):
    """A cell that is never cut (an id, a count): the table widens its column to fit it."""


def whole(value: object, style: str = "") -> Whole:
    """A number (or a label carrying one) as literal text that no column width cuts."""
    return Whole("" if value is None else str(value), style=style, no_wrap=True)


def status(value: str) -> Text:
    return text(f"{STATUS_GLYPHS.get(value, '?')} {value}", STATUS_STYLES.get(value, ""))


def when(value: datetime | None, now: datetime | None = None) -> Text:
    """A stored time in UTC (the store's zone: no surprises across hosts), 8 cells wide:
    ``HH:MM:SS`` today, ``MM-DD`` before; the Trace view shows full times."""
    if value is None:
        return text("-")
    value = value.astimezone(UTC)
    if now is None or value.date() == now.astimezone(UTC).date():
        return text(value.strftime("%H:%M:%S"))
    return text(value.strftime("%m-%d"))


def full_time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def line(*parts: tuple[str, str] | str) -> Text:
    """A detail line from (label, value) parts: labels styled, values literal."""
    out = Text(no_wrap=False)
    for part in parts:
        if isinstance(part, tuple):
            label, value = part
            out.append(f"{label} ", style="bold")
            out.append(str(value))
            out.append("  ")
        else:
            out.append(part)
    return out
