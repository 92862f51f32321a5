"""A labelled sparkline with its figure beside it: ``new ▁▂█▁… 42``.

The bars say the shape, the number says the size: both read the same without colour (NO_COLOR),
and the label says what is counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static


class Trend(Horizontal):
    """``label`` · a bar per value (the widget is as wide as the values: one bar each) · a figure."""

    DEFAULT_CSS = """
    Trend {
        height: 1;
        width: auto;
    }
    Trend > .trend-label {
        width: 7;
    }
    Trend > Sparkline {
        width: 24;
    }
    Trend > .trend-figure {
        width: 7;
        padding: 0 1 0 1;
    }
    """

    def __init__(self, label: str, *, classes: str = "") -> None:
        super().__init__(classes=classes)
        self._label = Static(Text(label, no_wrap=True), classes="trend-label")
        self._bars = Sparkline([])
        self._figure = Static("", classes="trend-figure")

    def compose(self) -> ComposeResult:
        yield self._label
        yield self._bars
        yield self._figure

    def show(self, values: Sequence[int], figure: str) -> None:
        """Show ``values`` (one bar each) and ``figure`` beside them."""
        self._bars.styles.width = max(len(values), 1)
        if list(self._bars.data or ()) != list(values):
            self._bars.data = list(values)
        self._figure.update(Text(figure, no_wrap=True))
