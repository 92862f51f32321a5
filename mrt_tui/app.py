"""The console application: eight views over the store, themes, keys and the command palette.

The App is wiring only: views live in ``screens/``, reads in ``mrt_engine.store`` queries and
every action in ``mrt_engine.operations``.
"""

from __future__ import annotations

import gc

from textual import work
from textual.app import App, ScreenStackError
from textual.binding import Binding
from textual.theme import Theme

from mrt_engine import operations
from mrt_engine.store.db import StoreError
from mrt_engine.wording import plural
from mrt_tui.commands import ConsoleCommands
from mrt_tui.messages import ActionDone
from mrt_tui.screens.base import REFRESH_SECONDS
from mrt_tui.screens.events import EventsScreen
from mrt_tui.screens.health import HealthScreen
from mrt_tui.screens.incidents import IncidentsScreen
from mrt_tui.screens.outbox import OutboxScreen
from mrt_tui.screens.rules import RulesScreen
from mrt_tui.screens.silences import SilencesScreen
from mrt_tui.screens.sources import SourcesScreen
from mrt_tui.screens.trace import TraceScreen
from mrt_tui.session import ConsoleSession
from mrt_tui.signals import StopSignals
from mrt_tui.themes import DEFAULT_THEME, keymap, load_themes, remember_theme, remembered_theme


class MrtApp(App):
    """mrt-tui."""

    TITLE = "MRT"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    MODES = {
        "events": EventsScreen,
        "outbox": OutboxScreen,
        "trace": TraceScreen,
        "rules": RulesScreen,
        "sources": SourcesScreen,
        "silences": SilencesScreen,
        "health": HealthScreen,
        "incidents": IncidentsScreen,
    }
    BINDINGS = [
        Binding("1", "switch_mode('events')", "Events", id="app.events"),
        Binding("2", "switch_mode('outbox')", "Outbox", id="app.outbox"),
        Binding("3", "switch_mode('trace')", "Trace", id="app.trace"),
        Binding("4", "switch_mode('rules')", "Rules", id="app.rules"),
        Binding("5", "switch_mode('sources')", "Sources", id="app.sources"),
        # Not in the footer (it would push ? and q off a 120-column one): in help and palette.
        Binding("6", "switch_mode('silences')", "Silences", show=False, id="app.silences"),
        Binding("7", "switch_mode('health')", "Health", show=False, id="app.health"),
        Binding("8", "switch_mode('incidents')", "Incidents", show=False, id="app.incidents"),
        Binding("ctrl+r", "refresh_now", "Refresh", show=False, id="app.refresh"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("colon", "command_palette", "Commands", show=False, id="app.commands"),
        # Textual adds ctrl+p only when no binding opens the palette: ours (:) would hide it.
        Binding("ctrl+p", "command_palette", "Commands", show=False, id="app.palette"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(
        self,
        session: ConsoleSession,
        *,
        theme: str | None = None,
        remember: bool = True,
        signals: StopSignals | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self._signals = signals
        self._requested_theme = theme
        self._remember = remember
        self._shown_theme: str | None = None  # the theme on screen; another one is a choice
        self._trace_ref: str | None = None
        self._previous_mode = "events"
        self._kept_modes: set[str] = set()  # views built and frozen (see _keep_settled_view)
        self._settling: str | None = None  # a view on screen since the last tick, not kept yet
        self.sub_title = session.describe()

    def on_mount(self) -> None:
        if self._signals is not None:
            self._signals.attach(self)  # SIGTERM / SIGHUP now exit the app like q
        for theme in load_themes():
            self.register_theme(theme)
        wanted = self._requested_theme or remembered_theme() or DEFAULT_THEME
        if wanted not in self.available_themes:
            self.notify(f"unknown theme {wanted!r}; using {DEFAULT_THEME}", severity="warning")
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = wanted
        self._shown_theme = wanted
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.set_keymap(keymap())
        self.switch_mode("events")
        # One timer for the whole console: only the view on screen is asked to refresh.
        self.set_interval(REFRESH_SECONDS, self._refresh_visible, name="refresh")

    def on_ready(self) -> None:
        # What start-up built (modules, classes, styles, the first view) lives as long as the
        # console: frozen out of the garbage collector's sight, a full collection scans only
        # what came later, and a key press no longer waits ~100 ms for one (every ~10th
        # page-down did). Each view built later is frozen the same way (_keep_settled_view).
        gc.freeze()

    def on_unmount(self) -> None:
        # Back in sight for the collections to come: a worker thread's SQLite connection is
        # closed by the collector (sqlite3 connections hold a cycle), and one frozen would
        # never close, leaving the store's -wal file behind at exit.
        gc.unfreeze()
        if self._signals is not None:
            self._signals.detach()

    def _theme_changed(self, theme: Theme) -> None:
        """The operator chose a theme: remember it. The theme set at start-up (--theme, the
        remembered one) is not a choice, so opening the console writes no settings file."""
        if theme.name == self._shown_theme:
            return
        self._shown_theme = theme.name
        if self._remember and (path := remember_theme(theme.name)) is not None:
            self.notify(f"theme {theme.name} remembered in {path}")

    # ------------------------------------------------------------------ navigation
    def switch_mode(self, mode: str):
        if self.current_mode and self.current_mode != mode:
            self._previous_mode = self.current_mode
        return super().switch_mode(mode)

    def show_trace(self, ref: str) -> None:
        self._trace_ref = ref
        if self.current_mode == "trace":
            self.screen.show(ref)  # type: ignore[attr-defined]
            self._trace_ref = None
        else:
            self.switch_mode("trace")

    def take_trace_ref(self) -> str | None:
        ref, self._trace_ref = self._trace_ref, None
        return ref

    def back(self) -> None:
        self.switch_mode(self._previous_mode if self._previous_mode != "trace" else "events")

    def _refresh_visible(self) -> None:
        """Ask the view on screen to read again if the store changed (a dialog on top: none;
        no screen at all, for the moment a view is first opened: none either, the next tick
        asks it)."""
        try:
            screen = self.screen
        except ScreenStackError:
            return
        refresh = getattr(screen, "refresh_if_changed", None)
        if refresh is not None:  # a view (not a dialog over one)
            self._keep_settled_view(screen)
            refresh(screen.version())

    def _keep_settled_view(self, screen) -> None:
        """A view is built on its first visit and kept for the console's life. Once it has been
        on screen for a whole tick with no read running (its first read shown, its footer
        settled), what it built (~20,000 objects for a list view, ~70,000 for Health) is frozen
        out of the garbage collector's sight, as start-up's is: unfrozen, every view visited
        made each full collection longer (160-200 ms after visiting all eight on a year's
        store, paid by whichever key press triggered one). Young garbage is collected first,
        so little garbage is frozen with it (a frozen cycle is freed at exit, when all is
        unfrozen)."""
        mode = self.current_mode
        if mode in self._kept_modes:
            return
        reading = any(w.node is screen and not w.is_finished for w in self.workers)
        if reading or self._settling != mode:
            self._settling = None if reading else mode
            return
        self._kept_modes.add(mode)
        self._settling = None
        gc.collect(1)
        gc.freeze()

    def action_refresh_now(self) -> None:
        reload = getattr(self.screen, "reload", None)
        if reload is not None:
            reload()

    def action_help(self) -> None:
        from mrt_tui.help import bindings_help
        from mrt_tui.screens.text_view import TextView

        self.push_screen(TextView(f"Help · {self.screen.TITLE or ''}", bindings_help(self.screen)))

    # ------------------------------------------------------------------ replay (Events, Trace)
    def open_replay(self) -> None:
        if self.session.rules is None:
            self.notify("replay needs the config (--config) for its rules", severity="error")
            return
        from mrt_engine.incidents import replay_settings
        from mrt_tui.screens.replay_form import ReplayForm, ReplayRequest

        def chosen(request: ReplayRequest | None) -> None:
            if request is None:
                return
            self.run_operation(
                "replay",
                lambda: operations.replay(
                    self.session.store,
                    self.session.rules,
                    since=request.since,
                    until=request.until,
                    source=request.source,
                    channel=request.channel,
                    actor=self.session.actor,
                    clock=self.session.clock,
                    **replay_settings(self.session.config),
                ),
                describe=lambda plan: (
                    f"replay: {plural(plan.deliveries, 'delivery', 'deliveries')} enqueued for {plural(len(plan.items), 'event')}"
                ),
            )

        self.push_screen(ReplayForm(self.session), chosen)

    # ------------------------------------------------------------------ silences (Events, Rules, Trace)
    def draft_silence(self, draft) -> None:
        """Open the silence form with the matchers ``draft()`` reads from the store (an
        event's or a rule's: :mod:`mrt_engine.silences`)."""
        try:
            with self.session.store.read():
                matchers = draft()
        except (operations.OperationError, StoreError) as exc:
            self.notify(f"silence: {exc}", severity="error")
            return
        self.open_silence_form(matchers)

    def open_silence_form(self, matchers: list[str]) -> None:
        from mrt_engine import silences
        from mrt_tui.screens.silence_form import SilenceDraft, SilenceForm

        def chosen(draft: SilenceDraft | None) -> None:
            if draft is None:
                return
            self.run_operation(
                "silence",
                lambda: silences.add_silence(
                    self.session.store,
                    draft.matchers,
                    author=draft.author,
                    comment=draft.comment,
                    duration=draft.duration,
                    actor=self.session.actor,
                    clock=self.session.clock,
                ),
            )

        self.push_screen(SilenceForm(matchers), chosen)

    # ------------------------------------------------------------------ store operations
    def run_operation(self, label: str, operation, describe=None) -> None:
        """Run an ``mrt_engine.operations`` call in a worker; its result (its ``message``, or
        what ``describe`` makes of it) or its error becomes a notification."""
        self._operate(label, operation, describe)

    @work(thread=True, group="operation")
    def _operate(self, label: str, operation, describe) -> None:
        try:
            result = operation()
        except (operations.OperationError, StoreError, ValueError) as exc:
            # (ValueError: a SilenceError, the form's checks passed but the store's did not)
            self.post_message(ActionDone(f"{label}: {exc}", error=True))
            return
        text = describe(result) if describe else getattr(result, "message", None) or str(result)
        self.post_message(ActionDone(text))

    def on_action_done(self, message: ActionDone) -> None:
        """Every action's result, and read errors that screens post (they bubble up here)."""
        self.notify(message.text, severity="error" if message.error else "information")
        if message.refresh:
            self.action_refresh_now()
