"""3 · Trace: one event's chain — fingerprint → rule hits → alert → deliveries → attempts; or
an upstream item that was quarantined instead of becoming events."""

from __future__ import annotations

import json

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Input, Static

from mrt_engine import operations, silences
from mrt_engine.store import queries
from mrt_engine.store.db import StoreError
from mrt_engine.wording import plural
from mrt_tui import cells
from mrt_tui.messages import ActionDone, RowsLoaded
from mrt_tui.screens.base import ReadGate
from mrt_tui.widgets.keys_footer import KeysFooter
from mrt_tui.widgets.live_table import LiveTable


def event_detail(trace: queries.Trace) -> Text:
    """Every field of the event, its rule hits with reasons, the alert, the raw JSON."""
    e = trace.event
    out = Text()

    def field(label: str, value: object) -> None:
        out.append(f"{label:<12}", style="bold")
        out.append("" if value is None else str(value))
        out.append("\n")

    field("title", e.title)
    field("link", e.url)
    field("event", f"#{e.id} {e.event_type} ({e.source} {e.resource_type})")
    field("source key", e.source_key)
    field("resource", e.resource_id)
    field("event id", e.event_id)
    field("fingerprint", e.fingerprint)
    field("author", e.author or "-")
    field("labels", ", ".join(e.labels) or "-")
    field("occurred", cells.full_time(e.occurred_at))
    field("observed", cells.full_time(e.observed_at) + ("  (baseline)" if e.baseline else ""))
    field("summary", e.summary or "-")
    out.append("\nrule hits\n", style="bold underline")
    if not trace.hits:
        out.append("  none: no rule matched\n")
    for hit in trace.hits:
        flag = " (suppressed)" if hit.suppressed else ""
        out.append(f"  {hit.rule}", style="bold")
        out.append(f"  {hit.action}, priority {hit.priority}{flag}, {hit.origin}\n")
        out.append(f"    {hit.reason}\n")
    out.append("\nalert\n", style="bold underline")
    if trace.alert is None:
        out.append("  none\n")
    else:
        a = trace.alert
        out.append(
            f"  #{a.id} priority {a.priority}, rules {', '.join(a.rules) or '-'}, "
            f"tags {', '.join(a.tags) or '-'}, {a.origin} {cells.full_time(a.created_at)}\n"
        )
    if e.body:
        out.append("\nbody (what rules read as the summary)\n", style="bold underline")
        out.append(e.body + "\n")
    out.append("\nraw\n", style="bold underline")
    out.append(json.dumps(e.raw or {}, indent=2, ensure_ascii=False, sort_keys=True))
    return out


def quarantine_detail(item: queries.QuarantineView) -> Text:
    """A quarantined item: why it was set aside, where, how often, and how it looked."""
    out = Text()
    out.append("quarantined: ", style="bold")
    out.append("this item did not become events; the rest of its answer went on\n\n")
    for label, value in (
        ("item", item.item_key),
        ("source key", item.source_key),
        ("error", item.error),
        ("link", item.url or "-"),
        ("seen", f"{item.times}x, first {cells.full_time(item.first_seen_at)}"),
        ("last seen", cells.full_time(item.last_seen_at)),
    ):
        out.append(f"{label:<12}", style="bold")
        out.append(f"{value}\n")
    out.append("\nas received\n", style="bold underline")
    out.append(item.excerpt or "-")
    return out


class TraceScreen(Screen):
    TITLE = "Trace"
    BINDINGS = [
        Binding("slash", "ask", "Trace…", id="trace.ask"),
        Binding("r", "resend", "Resend", id="trace.resend"),
        Binding("p", "replay", "Replay", id="trace.replay"),
        Binding("s", "silence", "Silence", id="trace.silence"),
        Binding("escape", "back", "Back", id="trace.back"),
    ]
    COLUMNS = [
        ("id", "delivery / attempt", 20),
        ("status", "status", 14),
        ("when", "when", 14),
        ("took", "took", 8),
        ("reply", "HTTP / SMTP reply", 18),
        ("error", "error", None),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._table: LiveTable | None = None
        self.ref: str | None = None
        self.trace: queries.Trace | None = None
        self.statuses: dict[str, str] = {}
        self.gate = ReadGate()

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Input(
                placeholder="event:ID, delivery:ID, quarantine:ID, a fingerprint (prefix) or a URL — enter",
                id="ref",
                classes="hidden",
            )
            with VerticalScroll(id="detail"):
                yield Static(
                    "Select an event or a delivery and press enter, or press / here.", id="event"
                )
            yield self.table
        yield KeysFooter(show_command_palette=False)

    @property
    def session(self):
        return self.app.session

    @property
    def table(self) -> LiveTable:
        """The view's table, made with the view: there before it is mounted (a key's
        ``check_action`` may ask what is selected while the view is being built: nothing)."""
        if self._table is None:
            self._table = LiveTable(self.COLUMNS, paged=False, id="table")
        return self._table

    def on_screen_resume(self) -> None:
        ref = self.app.take_trace_ref()
        if ref and ref != self.ref:
            self.show(ref)
        else:
            self.refresh_if_changed(self.version())
        self.table.focus()

    def show(self, ref: str) -> None:
        self.ref = ref
        self.reload()

    def version(self) -> tuple[int, ...] | None:
        """What the trace depends on: the store's version."""
        return self.session.store_version()

    def refresh_if_changed(self, version: tuple[int, ...] | None) -> None:
        """The app's periodic refresh while this view is on screen: only after a commit."""
        if self.gate.due(version):
            self.reload(version)

    def reload(self, version: tuple[int, int] | None = None) -> None:
        if self.ref:
            self.gate.reading(version or self.version())
            self._read(self.ref)

    @work(thread=True, exclusive=True, group="read")
    def _read(self, ref: str) -> None:
        try:
            with self.session.store.read():
                traces = queries.trace(ref) or queries.quarantined(ref)
        except StoreError as exc:
            self.gate.failed()
            self.post_message(ActionDone(str(exc), error=True, refresh=False))
            return
        except Exception as exc:  # as the list views: say so in one line, keep the console
            self.gate.failed()
            fault = self.session.store.fault(exc)
            self.post_message(
                ActionDone(str(fault or f"cannot trace {ref}: {exc!r}"), error=True, refresh=False)
            )
            return
        self.post_message(RowsLoaded(traces, ref))

    @on(RowsLoaded)
    def _apply(self, message: RowsLoaded) -> None:
        if message.extra != self.ref:
            return
        if not message.rows:
            self.trace = None
            self.query_one("#event", Static).update(Text(f"nothing found for {self.ref}"))
            self.table.sync([])
            return
        if isinstance(message.rows[0], queries.QuarantineView):
            self.trace = None
            self.query_one("#event", Static).update(quarantine_detail(message.rows[0]))
            self.table.sync([])
            self.refresh_bindings()
            return
        trace = self.trace = message.rows[0]
        self.query_one("#event", Static).update(event_detail(trace))
        rows = []
        self.statuses = {}
        now = self.session.clock()
        for d in trace.deliveries:
            delivery = d.delivery
            self.statuses[f"d{delivery.id}"] = delivery.status
            waiting = delivery.status in ("pending", "retrying")
            rows.append(
                (
                    f"d{delivery.id}",
                    [
                        cells.whole(f"delivery #{delivery.id} {delivery.channel}", "bold"),
                        cells.status(delivery.status),
                        cells.when(
                            delivery.next_attempt_at if waiting else delivery.updated_at, now
                        ),
                        cells.whole(plural(delivery.attempts, "try", "tries")),
                        cells.text(""),
                        cells.text(delivery.last_error or ""),
                    ],
                )
            )
            for a in d.attempts:
                reply = str(a.http_status) if a.http_status else (a.reply or "")
                rows.append(
                    (
                        f"a{a.id}",
                        [
                            cells.whole(f"  attempt #{a.id}"),
                            cells.status(a.outcome),
                            cells.when(a.started_at, now),
                            cells.whole(
                                f"{a.duration_ms} ms" if a.duration_ms is not None else "-"
                            ),
                            cells.text(reply),
                            cells.text(a.error or ""),
                        ],
                    )
                )
        self.table.sync(rows)
        self.refresh_bindings()

    # ------------------------------------------------------------------ actions
    def _selected_delivery(self) -> int | None:
        key = self.table.selected_key
        if (
            key
            and key.startswith("d")
            and self.statuses.get(key) in ("retrying", "dead", "silenced")
        ):
            return int(key[1:])
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "resend" and self._selected_delivery() is None:
            return None
        if action == "replay" and self.session.rules is None:
            return None
        if action == "silence" and self.trace is None:
            return None
        return True

    def action_silence(self) -> None:
        """Draft a silence of hits like the traced event."""
        if self.trace is not None:
            event_id = self.trace.event.id
            self.app.draft_silence(lambda: silences.draft_for_event(event_id))

    def action_ask(self) -> None:
        box = self.query_one("#ref", Input)
        box.remove_class("hidden")
        box.value = self.ref or ""
        box.focus()

    @on(Input.Submitted, "#ref")
    def _ref_submitted(self, event: Input.Submitted) -> None:
        event.input.add_class("hidden")
        if event.value.strip():
            self.show(event.value.strip())
        self.table.focus()

    def action_resend(self) -> None:
        delivery_id = self._selected_delivery()
        if delivery_id is None:
            return
        self.app.run_operation(
            "resend",
            lambda: operations.resend_delivery(
                self.session.store, delivery_id, actor=self.session.actor, clock=self.session.clock
            ),
        )

    def action_replay(self) -> None:
        self.app.open_replay()

    def action_back(self) -> None:
        box = self.query_one("#ref", Input)
        if not box.has_class("hidden"):
            box.add_class("hidden")
            self.table.focus()
            return
        self.app.back()
