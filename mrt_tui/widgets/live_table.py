"""A table that shows a window of stored rows, follows the store by row key, and pages cheaply.

It draws with Textual's Line API: only the rows on screen are drawn, each once into a line
(:func:`~mrt_tui.widgets.table_lines.row_line`) kept until the row's cells change, so a page of
new rows costs a few segments a row. (Textual's DataTable put every cell through Rich's layout,
measured every cell it was given and dropped its caches at each update: a page-down took
~25 ms of the UI thread, and ~80 ms at the 95th percentile, at a year of history.)

``sync`` makes the table show exactly the given rows in the given order, keeping the cursor on
its row and on its line of the screen. No clear: the operator's cursor and scroll survive every
refresh. A column of fixed width grows to fit its widest :class:`~mrt_tui.cells.Whole` cell:
ids and counts are never cut. Columns with a minimum table width are left out of narrower
tables. Paging past the loaded window asks the screen for the next one (:class:`PageRequest`).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from mrt_tui.cells import Whole
from mrt_tui.widgets.table_lines import PADDING, Column, row_line, same_cells


class LiveTable(ScrollView, can_focus=True, inherit_bindings=False):
    """Rows keyed by store id; paging asks the screen for the next window."""

    DEFAULT_CSS = """
    LiveTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        &:focus {
            background-tint: $foreground 5%;
            & > .live-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .live-table--header {
                background-tint: $foreground 5%;
            }
        }
        & > .live-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .live-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .live-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    COMPONENT_CLASSES = {"live-table--header", "live-table--cursor"}

    BINDINGS = [
        Binding("enter", "select_cursor", "Select", show=False, id="table.select"),
        Binding("up", "cursor_up", "Cursor up", show=False, id="table.cursor_up"),
        Binding("down", "cursor_down", "Cursor down", show=False, id="table.cursor_down"),
        Binding("j", "cursor_down", "Down", show=False, id="table.down"),
        Binding("k", "cursor_up", "Up", show=False, id="table.up"),
        Binding("g", "first", "Top", show=False, id="table.top"),
        Binding("G", "last", "Bottom", show=False, id="table.bottom"),
        Binding("home,ctrl+home", "first", "Top", show=False, id="table.home"),
        Binding("end,ctrl+end", "last", "Bottom", show=False, id="table.end"),
        Binding("pagedown", "page_older", "Page down", show=False, id="table.page_down"),
        Binding("pageup", "page_newer", "Page up", show=False, id="table.page_up"),
    ]

    class PageRequest(Message):
        """The cursor went ``beyond`` rows past the window: ``older`` (down) or newer (up)."""

        def __init__(self, table: LiveTable, older: bool, beyond: int = 1) -> None:
            super().__init__()
            self.table = table
            self.older = older
            self.beyond = beyond

    class RowHighlighted(Message):
        """The cursor is on another row (moved, or its row left the window)."""

        def __init__(self, table: LiveTable, row_key: str | None, cursor_row: int) -> None:
            super().__init__()
            self.table = table
            self.row_key = row_key
            self.cursor_row = cursor_row

    class RowSelected(Message):
        """Enter (or a click) on a row."""

        def __init__(self, table: LiveTable, row_key: str, cursor_row: int) -> None:
            super().__init__()
            self.table = table
            self.row_key = row_key
            self.cursor_row = cursor_row

    def __init__(self, columns: Sequence[tuple], *, paged: bool = True, **kwargs) -> None:
        """``columns``: (key, label, width[, min_table_width]) — a column with a minimum is left
        out of tables narrower than that (its value stays reachable elsewhere, e.g. a status
        line); width is cells (int), or None / a float for a share of the rest. ``paged``: the
        rows are a window of more (moving past its edge posts a :class:`PageRequest`)."""
        super().__init__(**kwargs)
        self.paged = paged
        self._all_columns = [(*c[:3], c[3] if len(c) > 3 else 0) for c in columns]
        self._columns: list[Column] = []
        self._shown: list[int] = []
        self._grown: dict[str, int] = {}  # fixed columns widened for a whole number, by key
        self._rows: list[tuple[str, Sequence[Text]]] = []  # every column's cells, in order
        self._index: dict[str, int] = {}
        self._cursor = 0
        self._highlighted: str | None = None  # the row the last RowHighlighted named
        self._lines: dict[str, Strip] = {}  # each row's line, unstyled: kept while it is shown
        self._header: tuple[Style, Strip] | None = None
        self._base = Style()  # the widget's own style, taken once a frame

    # ------------------------------------------------------------------ columns
    def on_mount(self) -> None:
        self._choose_columns()

    def on_resize(self) -> None:
        if not self._choose_columns():
            self._fit_flexible()

    def _choose_columns(self) -> bool:
        """(Re)build the columns for the current width; True if they changed."""
        width = self.size.width or 10_000
        shown = [i for i, c in enumerate(self._all_columns) if width >= c[3]]
        if shown == self._shown:
            return False
        self._shown = shown
        self._columns = [Column(*self._all_columns[i][:3]) for i in shown]
        for column in self._columns:
            if isinstance(column.spec, int):
                column.width = self._fixed(column)
        self._fit_flexible()
        self._grow(self._rows)
        self._layout_changed()
        return True

    def _fit_flexible(self) -> None:
        """Share the width left by fixed columns (an int width) among the flexible ones (None:
        one share, a float: that many shares), so the table fits the terminal."""
        shares = {
            column.key: (1.0 if column.spec is None else column.spec)
            for column in self._columns
            if column.spec is None or isinstance(column.spec, float)
        }
        if not shares or not self.size.width:
            return
        fixed = sum(self._fixed(c) + 2 * PADDING for c in self._columns if isinstance(c.spec, int))
        room = self.size.width - fixed - 2 * PADDING * len(shares) - 2  # the vertical scrollbar
        total = sum(shares.values())
        changed = False
        for column in self._columns:
            if column.key in shares:
                width = max(int(room * shares[column.key] / total), 8)
                changed |= width != column.width
                column.width = width
        if changed:
            self._layout_changed()

    def _fixed(self, column: Column) -> int:
        """A fixed column's width: as declared, or wider once a whole number needed it."""
        return max(int(column.spec or 0), self._grown.get(column.key, 0))

    def _grow(self, rows: Sequence[tuple[str, Sequence[Text]]]) -> None:
        """Widen each fixed column to its widest :class:`Whole` cell (never narrower again, so
        paging does not make the columns jump), then share out the rest of the width anew."""
        changed = False
        for column, index in zip(self._columns, self._shown, strict=True):
            if not isinstance(column.spec, int):
                continue
            need = max(
                (c[index].cell_len for _key, c in rows if isinstance(c[index], Whole)), default=0
            )
            if need > self._fixed(column):
                self._grown[column.key] = need
                column.width = need
                changed = True
        if changed:
            self._fit_flexible()
            self._layout_changed()

    def _layout_changed(self) -> None:
        """Column widths changed: every line is drawn again."""
        self._lines.clear()
        self._header = None
        self._set_virtual_size()
        self.refresh()

    def _set_virtual_size(self) -> None:
        width = sum(c.width + 2 * PADDING for c in self._columns)
        size = Size(width, len(self._rows) + 1)  # + the header line
        if size != self.virtual_size:
            self.virtual_size = size

    # ------------------------------------------------------------------ rows
    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def selected_key(self) -> str | None:
        return self._rows[self._cursor][0] if self._rows else None

    @property
    def keys(self) -> list[str]:
        return [key for key, _cells in self._rows]

    def get_row_index(self, key: str) -> int:
        return self._index[key]

    def get_row_at(self, index: int) -> list[Text]:
        """The row's cells as shown (columns left out of a narrow table are not)."""
        return [self._rows[index][1][i] for i in self._shown]

    def get_row(self, key: str) -> list[Text]:
        return self.get_row_at(self._index[key])

    def get_cell(self, key: str, column: str) -> Text:
        index = [c[0] for c in self._all_columns].index(column)
        return self._rows[self._index[key]][1][index]

    def sync(
        self, rows: Sequence[tuple[str, Sequence[Text]]], *, keep_key: str | None = None
    ) -> None:
        """Show exactly ``rows`` (key, cells of every column) in order, the cursor on the row
        ``keep_key`` (or the row it is on) and on the same line of the screen as before.

        A row whose cells did not change keeps its rendered line, so a refresh that changed
        one row draws one row; a new window draws only the rows that come into view.
        """
        keep = keep_key if keep_key is not None else self.selected_key
        line = self._cursor - round(self.scroll_y)  # the cursor's line on screen
        on_screen = 0 <= line < self._page_height()  # not if the wheel scrolled it away
        old = {key: cells for key, cells in self._rows}
        self._rows = list(rows)
        self._index = {key: i for i, (key, _cells) in enumerate(self._rows)}
        for key in list(self._lines):
            cells = old.get(key)
            if (
                key not in self._index
                or cells is None
                or not same_cells(cells, self._rows[self._index[key]][1])
            ):
                del self._lines[key]
        self._grow(self._rows)
        self._set_virtual_size()
        if keep is not None and keep in self._index:
            cursor = self._index[keep]
        else:
            cursor = min(self._cursor, max(len(self._rows) - 1, 0))
        self._cursor = cursor
        if on_screen:
            self._scroll(cursor - line)
            self._scroll_cursor_into_view()
        self.refresh()
        self._highlight()

    def _highlight(self) -> None:
        """Tell the screen when the cursor is on another row than it last said."""
        key = self.selected_key
        if key != self._highlighted:
            self._highlighted = key
            self.post_message(self.RowHighlighted(self, key, self._cursor))

    # ------------------------------------------------------------------ cursor
    def _page_height(self) -> int:
        """Rows on screen (the header takes a line)."""
        return max(self.scrollable_content_region.height - 1, 1)

    def move_cursor(self, *, row: int | None = None, scroll: bool = True, **_: object) -> None:
        """Put the cursor on ``row`` (clamped to the rows shown)."""
        if row is None or not self._rows:
            return
        row = min(max(row, 0), len(self._rows) - 1)
        if row != self._cursor:
            self.refresh_line(self._cursor + 1)
            self._cursor = row
            self.refresh_line(row + 1)
        if scroll:
            self._scroll_cursor_into_view()
        self._highlight()

    def _scroll(self, y: int) -> None:
        """Show row ``y`` first (as far as there are rows below it), at once."""
        # force: the scrollbar a new window needs is only known after the next layout
        self.scroll_to(y=max(y, 0), animate=False, force=True)

    def _scroll_cursor_into_view(self) -> None:
        top, page = round(self.scroll_y), self._page_height()
        if self._cursor < top:
            self._scroll(self._cursor)
        elif self._cursor >= top + page:
            self._scroll(self._cursor - page + 1)

    def _move_by(self, rows: int) -> None:
        """Move the cursor ``rows`` down (up if negative), scrolling the screen as far (a page
        moves the rows under a cursor that keeps its line); past the window's edge, ask for
        the next window instead."""
        if not self._rows:
            return
        target = self._cursor + rows
        if self.paged and not 0 <= target < len(self._rows):
            older = target >= len(self._rows)
            beyond = target - (len(self._rows) - 1) if older else -target
            self.post_message(self.PageRequest(self, older=older, beyond=beyond))
            return
        if abs(rows) > 1:
            self._scroll(round(self.scroll_y) + rows)
        self.move_cursor(row=target)

    def action_cursor_down(self) -> None:
        self._move_by(1)

    def action_cursor_up(self) -> None:
        self._move_by(-1)

    def action_page_older(self) -> None:
        self._move_by(self._page_height())

    def action_page_newer(self) -> None:
        self._move_by(-self._page_height())

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=max(len(self._rows) - 1, 0))

    def action_select_cursor(self) -> None:
        if self._rows:
            self.post_message(self.RowSelected(self, self._rows[self._cursor][0], self._cursor))

    def on_click(self, event: events.Click) -> None:
        """A click on a row selects it (moves the cursor there and posts RowSelected)."""
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return  # the header
        row = round(self.scroll_y) + offset.y - 1
        if 0 <= row < len(self._rows):
            event.stop()
            self.move_cursor(row=row)
            self.action_select_cursor()

    # ------------------------------------------------------------------ drawing
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._header = None

    def render_lines(self, crop: Region) -> list[Strip]:
        self._base = self.rich_style  # computed from every ancestor: once a frame, not a line
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        base = self._base
        if y == 0:
            strip, fill = self._header_line(base)
        else:
            index = scroll_y + y - 1
            if index >= len(self._rows):
                return Strip.blank(width, base)
            strip, fill = self._row_line(index, base)
        if scroll_x == 0 and strip.cell_length == width:
            # As it is: crop_extend would cache the strip in itself (a reference cycle, left
            # for the garbage collector: a full collection's pause in some later key press).
            return strip
        return strip.crop_extend(scroll_x, scroll_x + width, fill)

    def _header_line(self, base: Style) -> tuple[Strip, Style]:
        style = base + self.get_component_rich_style("live-table--header")
        if self._header is None or self._header[0] != style:
            labels = [Text(column.label) for column in self._columns]
            line = row_line(self._columns, labels, self.app.console)
            self._header = (style, Strip(Segment.apply_style(line, style), line.cell_length))
        return self._header[1], style

    def _row_line(self, index: int, base: Style) -> tuple[Strip, Style]:
        key, cells = self._rows[index]
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = row_line(
                self._columns, [cells[i] for i in self._shown], self.app.console
            )
        if index == self._cursor:
            style = base + self.get_component_rich_style("live-table--cursor")
            post = Style.from_color(color=style.color)  # the cursor's colour over a cell's
            return Strip(Segment.apply_style(line, style, post), line.cell_length), style
        return line.apply_style(base), base  # the line keeps it (for this base style)
