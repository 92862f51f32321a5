"""4 · Rules: each rule with its hits (last hour / day / all) and last hit; dry-run tests."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from textual import on, work
from textual.binding import Binding
from textual.widgets import Input

from mrt_engine import operations, silences
from mrt_engine.rules.dryrun import draft_rule, dry_run
from mrt_engine.rules.matcher import CompiledRule
from mrt_engine.store import feed
from mrt_engine.wording import plural
from mrt_tui import cells
from mrt_tui.messages import ShowText
from mrt_tui.screens.base import LiveScreen

DRY_RUN_EVENTS = 5000


class RulesScreen(LiveScreen):
    TITLE = "Rules"
    PAGED = False
    REREAD_SECONDS = 60.0  # the last hour and day move on with the clock
    COLUMNS = [
        ("name", "rule", 22),
        ("action", "action", 8),
        ("priority", "prio", 5),
        ("hour", "1h", 6),
        ("day", "24h", 7),
        ("all", "all", 8),
        ("last", "last hit", 14),
        ("what", "matches", None),
    ]
    FILTER_HELP = "a draft to test: comma-separated keywords, or /regex/ — enter runs it"
    BINDINGS = [
        Binding("t", "test_rule", "Test rule", id="rules.test"),
        Binding("s", "silence", "Silence", id="rules.silence"),
        Binding("slash", "filter", "Test draft", id="list.filter"),
    ]

    def load(self, before_id, after_id, filter_text) -> tuple[list[Any], Any]:
        ruleset = self.session.rules
        stats = feed.rule_stats(self.session.clock())
        rules = list(ruleset.rules) if ruleset is not None else []
        known = {r.name for r in rules}
        # Rules that hit in the past but are gone from the config still have their counts.
        gone = [name for name in stats if name not in known]
        return [(r.name, r, stats.get(r.name)) for r in rules] + [
            (n, None, stats[n]) for n in gone
        ], None

    def key_of(self, row) -> str:
        return row[0]

    def cells(self, row) -> list[Any]:
        name, rule, stats = row
        config = rule.config if rule is not None else None
        what = _describe(config) if config is not None else "(no longer configured)"
        return [
            cells.text(name),
            cells.text(rule.action if rule else "-"),
            cells.whole(rule.priority if rule else "-"),
            cells.whole(stats.last_hour if stats else 0),
            cells.whole(stats.last_day if stats else 0),
            cells.whole(stats.total if stats else 0),
            cells.when(stats.last_hit if stats else None, self.session.clock()),
            cells.text(what),
        ]

    def status_text(self, rows, extra) -> str:
        return f"{plural(len(rows), 'rule')} · t tests the selected rule, / a draft, against the last {DRY_RUN_EVENTS} events"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "silence" and self.selected is None:
            return None
        return True

    def action_silence(self) -> None:
        """Draft a silence of the selected rule's hits."""
        row = self.selected
        if row is not None:
            self.app.draft_silence(lambda: silences.draft_for_rule(row[0]))

    # ------------------------------------------------------------------ dry runs
    def action_test_rule(self) -> None:
        row = self.selected
        if row is None or row[1] is None:
            return
        self._dry_run(row[1], f"rule {row[0]}")

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        pattern = event.value.strip()
        event.input.add_class("hidden")
        self.table.focus()
        if not pattern:
            return
        try:
            config = draft_rule(pattern)
        except ValidationError as exc:
            self.notify(f"draft: {exc.errors()[0]['msg']}", severity="error")
            return
        self._dry_run(CompiledRule(config, self.session.channels), f"draft {pattern!r}")

    @work(thread=True, exclusive=True, group="dry-run")
    def _dry_run(self, rule: CompiledRule, label: str) -> None:
        with self.session.store.read():
            rows = feed.recent_events(DRY_RUN_EVENTS)
        matches = dry_run(rule, ((r.id, operations.tracker_event(r)) for r in rows))
        lines = [f"{label}: {len(matches)} of the last {plural(len(rows), 'event')} would match"]
        for event_id, event, hit in matches[:50]:
            lines.append(f"#{event_id} {event.title[:70]}  — {hit.reason}")
        self.post_message(ShowText("Dry run (nothing is sent)", "\n".join(lines)))

    @on(ShowText)
    def _show_result(self, message: ShowText) -> None:
        self._show_status(cells.text(message.text.split("\n", 1)[0]))
        from mrt_tui.screens.text_view import TextView

        self.app.push_screen(TextView(message.title, message.text))


def _describe(config) -> str:
    parts = []
    if config.keywords:
        parts.append("keywords " + ", ".join(config.keywords))
    if config.regex:
        parts.append("regex " + ", ".join(f"/{r}/" for r in config.regex))
    for name in ("source", "event_type", "repo", "org", "label", "author"):
        values = getattr(config, name)
        if values:
            parts.append(f"{name} {', '.join(values)}")
    return "; ".join(parts) or "every event"
