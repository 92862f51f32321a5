"""A table row as one terminal line: each cell cut or padded to its column, never wrapped.

What :class:`~mrt_tui.widgets.live_table.LiveTable` draws a row with, once per row shown (the
line is kept until the row's cells change). A plain cell is one segment; Rich's layout, which
Textual's DataTable puts every cell through, is not needed for a line of text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.segment import Segment
from rich.text import Text
from textual.strip import Strip

from mrt_tui.cells import BothEnds, cut_middle

PADDING = 1  # blank cells on each side of a column


@dataclass
class Column:
    """A shown column: ``width`` is its text's width in cells (without padding)."""

    key: str
    label: str
    spec: int | float | None  # cells (int), or one share (None) or that many shares of the rest
    width: int = 10


def one_line(cell: Text) -> Text:
    """A cell on one terminal line: a newline or tab kept in stored text shows as a space."""
    plain = cell.plain
    if "\n" not in plain and "\t" not in plain:
        return cell
    flat = cell.copy()
    flat.plain = plain.replace("\n", " ").replace("\t", " ")  # same length: spans stay put
    return flat


def same_cells(old: Sequence[Text], new: Sequence[Text]) -> bool:
    """Would the two rows look the same (``Text ==`` ignores the text's own style)?"""
    return len(old) == len(new) and all(
        a.plain == b.plain and a.style == b.style and a.spans == b.spans
        for a, b in zip(old, new, strict=True)
    )


def row_line(columns: Sequence[Column], cells: Sequence[Text], console: Console) -> Strip:
    """One row as a line: each cell on one line, cut with an ellipsis (a whole number is not:
    its column is as wide as it) or padded to its column's width, a blank cell either side."""
    pad = Segment(" " * PADDING)
    segments: list[Segment] = []
    for column, cell in zip(columns, cells, strict=True):
        piece = one_line(cell)
        length = piece.cell_len
        if length > column.width and isinstance(cell, BothEnds):
            piece = cut_middle(piece, column.width)
            length = piece.cell_len
        elif length > column.width:
            piece = piece.copy()
            piece.truncate(column.width, overflow=cell.overflow or "ellipsis")
            length = piece.cell_len
        segments.append(pad)
        if piece.spans:
            segments.extend(piece.render(console))
        elif piece.plain:
            segments.append(Segment(piece.plain, console.get_style(piece.style) or None))
        segments.append(Segment(" " * (column.width - length + PADDING)))
    return Strip(segments, sum(c.width + 2 * PADDING for c in columns))
