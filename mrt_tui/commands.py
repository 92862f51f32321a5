"""The command palette: every screen by name and every action of the console."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

SCREENS = [
    ("events", "Events: the live feed"),
    ("outbox", "Outbox: deliveries and their state"),
    ("trace", "Trace: one event's chain"),
    ("rules", "Rules: hit counts and dry runs"),
    ("sources", "Sources: cursors, errors, poll now"),
    ("silences", "Silences: what is silenced, until when, by whom"),
    ("health", "Health: polls, 304s, rate limits, queues and sends over the last day"),
    ("incidents", "Incidents: one model family across sources, with its timeline"),
]
ACTIONS = [
    ("Resend the selected delivery / event", "resend"),
    ("Requeue every dead delivery (Outbox filter)", "requeue_dead"),
    ("Replay stored events with the current rules", "replay"),
    ("Reset the selected source's cursor", "reset_cursor"),
    ("Poll the selected source now", "poll_now"),
    ("Pause or resume the selected source", "pause"),
    ("Test the selected rule (dry run)", "test_rule"),
    ("Silence hits like the selected event / rule", "silence"),
    ("New silence", "new_silence"),
    ("Expire the selected silence", "expire_silence"),
    ("Show ended silences on/off", "toggle_expired"),
    ("Follow new events on/off", "follow"),
    ("Filter the current table", "filter"),
    ("Refresh now", "app.refresh_now"),
    ("Help for this screen", "app.help"),
]


class ConsoleCommands(Provider):
    """Screens and actions; an action that does not apply to the screen is not offered."""

    def _commands(self) -> list[tuple[str, object, str]]:
        app = self.app
        found: list[tuple[str, object, str]] = []
        for mode, help_text in SCREENS:
            found.append((f"Go to {mode.title()}", partial(app.switch_mode, mode), help_text))
        screen = app.screen
        for label, action in ACTIONS:
            if action.startswith("app."):
                found.append((label, partial(app.run_action, action[4:]), "console"))
            elif hasattr(screen, f"action_{action}") and screen.check_action(action, ()) is True:
                found.append((label, partial(app.run_action, action, screen), screen.TITLE or ""))
        for theme in app.available_themes:
            if theme.startswith("mrt-"):
                found.append(
                    (f"Theme: {theme}", partial(setattr, app, "theme", theme), "remembered")
                )
        return found

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
