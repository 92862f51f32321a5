"""The console's Incidents view (key 8): each model family across sources with its timeline;
enter drills to an event's trace."""

from __future__ import annotations

import re

import pytest

# The console fixture (a test parameter of the same name: F811) and its helpers.
from test_tui import console, help_lines, run, select, settle  # noqa: F401

from mrt_engine.store.models import Event
from mrt_tui.app import MrtApp
from mrt_tui.screens.incidents import IncidentsScreen
from mrt_tui.screens.trace import TraceScreen

pytestmark = pytest.mark.both_backends


def test_key_8_shows_each_incident_with_its_timeline_and_enter_traces_an_event(console):  # noqa: F811
    session = console(with_incidents=True)
    model = Event.get(Event.title == "deepseek-ai/DeepSeek-V3.2")
    pull = Event.get(Event.title == "[Model] Support DeepSeek-V3.2")

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("8")
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, IncidentsScreen)
            keys = screen.table.keys
            # DeepSeek-V3.2: the model first, then the pull request (the "[Doc]" one is
            # suppressed: no alert, no incident); then the other families.
            deepseek = keys.index(f"e{model.id}")
            assert keys[deepseek - 1].startswith("i") and keys[deepseek + 1] == f"e{pull.id}"
            names = {row.incident.name for row in screen.rows.values()}
            assert names == {"DeepSeek-V3.2", "DeepSeek-R1", "Qwen3"}
            await pilot.press("question_mark")
            await settle(pilot)
            lines = help_lines(app)
            assert "8 Incidents [app.incidents]" in lines
            assert "⏎ Select [table.select]" in lines  # enter: the event's trace
            assert "/ Filter [list.filter]" not in lines  # every incident is shown
            await pilot.press("escape")
            await settle(pilot)
            await select(pilot, None, f"e{pull.id}")
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, TraceScreen)
            assert app.screen.ref == f"event:{pull.id}"
            assert "[Model] Support DeepSeek-V3.2" in str(app.screen.query_one("#event").render())

    run(scenario())


def test_the_command_palette_goes_to_the_incidents_view(console):  # noqa: F811
    from mrt_tui.commands import SCREENS, ConsoleCommands

    assert "incidents" in dict(SCREENS)
    session = console(with_incidents=True)

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            provider = ConsoleCommands(app.screen)
            [go] = [cb for name, cb, _ in provider._commands() if name == "Go to Incidents"]
            go()
            await settle(pilot)
            assert isinstance(app.screen, IncidentsScreen)

    run(scenario())


def test_a_source_name_too_long_for_its_column_keeps_its_kind(console):  # noqa: F811
    # A repository's issues and its PRs are two sources of an incident: cut at the end, both
    # showed as "GitHub (vllm-project/vll…" and looked like one.
    session = console(with_incidents=True)
    seen = {}

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("8")
            await settle(pilot)
            table = app.screen.table
            seen["lines"] = [table.render_line(y).text for y in range(1, table.row_count + 1)]

    run(scenario())
    sources = {m[0] for line in seen["lines"] if (m := re.search(r"GitHub \(.*?\)", line))}
    assert sources == {"GitHub (vllm…vllm issues)", "GitHub (vllm…ct/vllm PRs)"}
