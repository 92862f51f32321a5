"""A DataTable that shows a window of stored rows and follows the store by row key.

``sync`` makes the table show exactly the given rows in the given order: rows that left are
removed, new ones added, changed cells updated, and the cursor stays on the row it was on. No
``clear()``: the operator's cursor and scroll survive every refresh. A column of fixed width
grows to fit its widest :class:`~mrt_tui.cells.Whole` cell: ids and counts are never cut.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from mrt_tui.cells import Whole


class RankedText(Text):
    """The first cell of a row, carrying the row's place in the window for sorting."""

    rank: int = 0


class LiveTable(DataTable):
    """Rows keyed by store id; paging asks the screen for the next window."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="table.down"),
        Binding("k", "cursor_up", "Up", show=False, id="table.up"),
        Binding("g", "first", "Top", show=False, id="table.top"),
        Binding("G", "last", "Bottom", show=False, id="table.bottom"),
        Binding("pagedown", "page_older", "Page down", show=False, id="table.page_down"),
        Binding("pageup", "page_newer", "Page up", show=False, id="table.page_up"),
    ]

    class PageRequest(Message):
        """The cursor went past the window: ``older`` (down) or newer (up)."""

        def __init__(self, table: LiveTable, older: bool) -> None:
            super().__init__()
            self.table = table
            self.older = older

    def __init__(self, columns: Sequence[tuple], **kwargs) -> None:
        """``columns``: (key, label, width[, min_table_width]) — a column with a minimum is left
        out of tables narrower than that (its value stays reachable elsewhere, e.g. a status
        line); width is cells (int), or None / a float for a share of the rest."""
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._all_columns = [(*c[:3], c[3] if len(c) > 3 else 0) for c in columns]
        self._column_spec: list[tuple[str, str, int | float | None]] = []
        self._shown: list[int] = []
        self._order: list[str] = []
        self._rows_cache: list[tuple[str, Sequence[Text]]] = []
        self._grown: dict[str, int] = {}  # fixed columns widened for a whole number, by key

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
        keep = self.selected_key
        self._shown = shown
        self._column_spec = [self._all_columns[i][:3] for i in shown]
        self.clear(columns=True)
        self._order = []
        for key, label, w in self._column_spec:
            self.add_column(label, key=key, width=self._fixed(key, w) if isinstance(w, int) else 10)
        self._fit_flexible()
        if self._rows_cache:
            self.sync(self._rows_cache, keep_key=keep)
        return True

    def _fit_flexible(self) -> None:
        """Share the width left by fixed columns (an int width) among the flexible ones (None:
        one share, a float: that many shares), so the table fits the terminal."""
        shares = {
            key: (1.0 if width is None else width)
            for key, _label, width in self._column_spec
            if width is None or isinstance(width, float)
        }
        if not shares or not self.size.width:
            return
        padding = 2 * self.cell_padding
        fixed = sum(
            self._fixed(key, width) + padding
            for key, _label, width in self._column_spec
            if key not in shares and isinstance(width, int)
        )
        room = self.size.width - fixed - padding * len(shares) - 2  # the vertical scrollbar
        total = sum(shares.values())
        changed = False
        for key, share in shares.items():
            width = max(int(room * share / total), 8)
            column = self.columns[ColumnKey(key)]
            if column.width != width or column.auto_width:
                column.width, column.auto_width, changed = width, False, True
        if changed:
            # DataTable has no public call to re-measure after a width change.
            self._require_update_dimensions = True
            self._clear_caches()
            self.refresh()

    def _fixed(self, key: str, width: int) -> int:
        """A fixed column's width: as declared, or wider once a whole number needed it."""
        return max(width, self._grown.get(key, 0))

    def _grow(self, rows: Sequence[tuple[str, Sequence[Text]]]) -> None:
        """Widen each fixed column to its widest :class:`Whole` cell (never narrower again, so
        paging does not make the columns jump), then share out the rest of the width anew."""
        changed = False
        for index, (key, _label, width) in enumerate(self._column_spec):
            if not isinstance(width, int):
                continue
            need = max(
                (c[index].cell_len for _key, c in rows if isinstance(c[index], Whole)), default=0
            )
            if need > self._fixed(key, width):
                self._grown[key] = need
                self.columns[ColumnKey(key)].width = need
                changed = True
        if changed:
            self._require_update_dimensions = True
            self._clear_caches()
            self._fit_flexible()
            self.refresh()

    # ------------------------------------------------------------------ rows
    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    def sync(
        self, rows: Sequence[tuple[str, Sequence[Text]]], *, keep_key: str | None = None
    ) -> None:
        """Show exactly ``rows`` (key, cells) in order, keeping the cursor on its row.

        Rows still shown are updated in place (only the cells that changed); a window with no
        row in common with the current one (a page change) replaces it in one go.
        """
        keep = keep_key if keep_key is not None else self.selected_key
        keep_index = self.cursor_row
        self._rows_cache = list(rows)
        rows = [(key, [cells[i] for i in self._shown]) for key, cells in rows]
        wanted = [key for key, _ in rows]
        wanted_set = set(wanted)
        columns = [c[0] for c in self._column_spec]
        self._grow(rows)
        with self.app.batch_update():
            present = set(self._order) & wanted_set
            if not present and self._order:
                self.clear()
            for key in [k for k in self._order if k not in wanted_set] if present else []:
                self.remove_row(key)
            for rank, (key, cells) in enumerate(rows):
                if key in present:
                    for column, value in zip(columns[1:], cells[1:], strict=False):
                        if self.get_cell(key, column) != value:
                            self.update_cell(key, column, value)
                    first = self.get_cell(key, columns[0])
                    if first != cells[0]:
                        first = RankedText.assemble(cells[0])
                        self.update_cell(key, columns[0], first)
                    first.rank = rank
                else:
                    first = RankedText.assemble(cells[0])
                    first.rank = rank
                    self.add_row(first, *cells[1:], key=key)
            if present and self._current_order() != wanted:
                self.sort(columns[0], key=lambda cell: cell.rank)
            self._order = wanted
            if keep is not None and keep in wanted_set:
                self.move_cursor(row=self.get_row_index(keep), scroll=False)
            elif self.row_count:
                self.move_cursor(row=min(max(keep_index, 0), self.row_count - 1), scroll=False)

    def _current_order(self) -> list[str]:
        return [self.coordinate_to_cell_key((i, 0)).row_key.value for i in range(self.row_count)]

    @property
    def keys(self) -> list[str]:
        return list(self._order)

    # ------------------------------------------------------------------ paging
    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=max(self.row_count - 1, 0))

    def action_page_older(self) -> None:
        if self.cursor_row >= self.row_count - 1:
            self.post_message(self.PageRequest(self, older=True))
        else:
            self.action_page_down()

    def action_page_newer(self) -> None:
        if self.cursor_row <= 0:
            self.post_message(self.PageRequest(self, older=False))
        else:
            self.action_page_up()

    def action_cursor_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1:
            self.post_message(self.PageRequest(self, older=True))
        else:
            super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.row_count and self.cursor_row <= 0:
            self.post_message(self.PageRequest(self, older=False))
        else:
            super().action_cursor_up()
