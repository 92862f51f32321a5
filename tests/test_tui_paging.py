"""Paging the console through more history than one window holds, as an operator does it:
page-down keeps moving one screenful per press across the windows the views read, a refresh
keeps the cursor on its row and line, and only the rows that changed or came into view are drawn.
"""

from __future__ import annotations

import asyncio
import gc
from itertools import pairwise

import pytest
from console_data import NOW, build, event

import mrt_tui.app
from mrt_engine.batch import commit_events
from mrt_engine.components import compile_rules
from mrt_engine.config import load_config
from mrt_tui.app import MrtApp
from mrt_tui.session import attached

FILLER = 300  # with the fixed store's 8 events: ids 1..308, four windows of 80 rows


@pytest.fixture
def history(tmp_path, monkeypatch):
    """An attached console session over a store of 308 events (newest id 308)."""
    monkeypatch.setenv("MRT_TUI_SETTINGS", str(tmp_path / "tui.json"))
    config = build(tmp_path)
    session = attached(config_path=config)
    rules = compile_rules(load_config(config))
    with session.store.write():
        events = [event(100 + i, f"filler {i}", at=NOW) for i in range(FILLER)]
        commit_events(session.store, events, rules, NOW)
    yield session, rules
    session.close()


async def settle(pilot, times: int = 3) -> None:
    for _ in range(times):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def on_screen(table) -> list[int]:
    """The event ids in the rows the operator sees, top to bottom."""
    top = round(table.scroll_y)
    return [int(k) for k in table.keys[top : top + table.scrollable_content_region.height - 1]]


def test_page_down_moves_one_screenful_per_press_across_the_windows_and_back(history):
    session, _rules = history
    seen: list[tuple[int, list[int]]] = []

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("f")  # follow off: the newest rows do not pull the cursor back
            table = app.screen.table
            page = table.scrollable_content_region.height - 1
            assert table.row_count == 80 and page > 5
            windows = set()
            for _ in range(12):  # 12 pages of 20: past three window edges
                await pilot.press("pagedown")
                await settle(pilot)
                seen.append((int(table.selected_key), on_screen(table)))
                windows.add(app.screen.before_id)
            assert len(windows) >= 3
            for key, rows in seen:
                assert rows == list(range(key, key - page, -1)), (key, rows)  # no gap, no repeat
            ids = [308, *(key for key, _rows in seen)]
            assert all(a - b == page for a, b in pairwise(ids)), ids
            back = []
            for _ in range(12):
                await pilot.press("pageup")
                await settle(pilot)
                back.append(int(table.selected_key))
            assert back == ids[-2::-1], back  # the same pages on the way back, to the newest
            assert on_screen(table) == list(range(308, 308 - page, -1))
            await pilot.press("pageup")  # nothing newer: the newest rows stay
            await settle(pilot)
            assert on_screen(table) == list(range(308, 308 - page, -1))
            assert table.selected_key == "308" and app.screen.before_id is None

    asyncio.run(scenario())


def test_a_refresh_keeps_the_cursor_on_its_row_and_line_and_draws_only_changed_rows(history):
    session, rules = history
    seen = {}

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("f", "j", "j", "j", "j", "j")
            table = app.screen.table
            key, line = table.selected_key, table.cursor_row - round(table.scroll_y)
            drawn = {y: table.render_line(y) for y in range(1, 12)}
            with session.store.write():  # three new events, as the engine commits them
                commit_events(
                    session.store,
                    [event(900 + i, f"new {i}", at=NOW) for i in range(3)],
                    rules,
                    NOW,
                )
            await pilot.press("ctrl+r")
            await settle(pilot)
            seen["cursor"] = (table.selected_key, table.cursor_row - round(table.scroll_y))
            seen["want"] = (key, line)
            # The rows still on the same lines were not drawn again (the same lines come back);
            # the cursor's line is drawn anew with the cursor's colours.
            again = {y: table.render_line(y) for y in range(1, 12)}
            seen["same"] = [y for y in drawn if again[y] is drawn[y]]
            seen["line"] = line

    asyncio.run(scenario())
    assert seen["cursor"] == seen["want"]
    assert seen["same"] == [y for y in range(1, 12) if y != seen["line"] + 1]


def test_a_stored_newline_or_tab_shows_on_one_line_of_the_table(history):
    session, rules = history
    with session.store.write():
        title = "first line\nsecond line\tafter a tab"
        commit_events(session.store, [event(999, title, at=NOW)], rules, NOW)
    seen = {}

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 24)) as pilot:
            await settle(pilot)
            table = app.screen.table
            seen["row"] = table.render_line(1).text
            seen["next"] = table.render_line(2).text
            seen["width"] = table.render_line(1).cell_length, table.size.width

    asyncio.run(scenario())
    assert "first line second line after a tab" in seen["row"]
    assert "308" in seen["next"]  # the row below is the next event, not the title's rest
    assert seen["width"][0] == seen["width"][1]


def test_start_up_objects_are_out_of_the_collectors_sight_while_the_console_runs(history):
    # A full garbage collection scanned every object start-up built: ~100 ms of the UI thread
    # in every ~10th page-down. Frozen, they are not scanned; at exit they are again (a frozen
    # worker's SQLite connection would never close, leaving the -wal file behind).
    session, _rules = history
    frozen = {}

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            frozen["running"] = gc.get_freeze_count()

    asyncio.run(scenario())
    assert frozen["running"] > 10_000
    assert gc.get_freeze_count() == 0


def test_each_view_built_later_is_out_of_the_collectors_sight_too(history, monkeypatch):
    # Views are built on their first visit and kept. Unfrozen, each one visited made every full
    # collection longer: after visiting all eight views of a year's store, a key press that
    # triggered one waited 160-200 ms for it (the rare-word search's press-to-paint doubled).
    # A view is frozen once it has been on screen for a whole refresh tick (made short here).
    monkeypatch.setattr(mrt_tui.app, "REFRESH_SECONDS", 0.2)
    session, _rules = history
    seen = {}

    def tracked(obj) -> bool:  # gc.get_objects() lists what the collector scans
        return any(o is obj for o in gc.get_objects())

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            views = [app.screen]
            for key in ("2", "4", "5", "6", "7", "8"):
                await pilot.press(key)
                await settle(pilot)
                await asyncio.sleep(0.6)  # a few ticks
                views.append(app.screen)
            seen["scanned"] = {
                view.TITLE: [type(w).__name__ for w in (view, *view.walk_children()) if tracked(w)]
                for view in views
            }
            gc.collect()  # a full collection now: the kept views are still there
            seen["after a collection"] = [len(list(view.walk_children())) > 5 for view in views]

    asyncio.run(scenario())
    views = ("Events", "Outbox", "Rules", "Sources", "Silences", "Health", "Incidents")
    assert seen["scanned"] == {view: [] for view in views}
    assert all(seen["after a collection"])
    assert gc.get_freeze_count() == 0  # at exit, all is in sight again


def test_a_click_on_a_row_selects_it_and_opens_its_trace(history):
    session, _rules = history
    seen = {}

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.click("#table", offset=(3, 3))  # the header, then rows 308, 307, 306
            await settle(pilot)
            seen["view"] = app.screen.TITLE
            event = app.screen.query_one("#event")  # a Static: content (Textual 2+), renderable
            seen["event"] = str(getattr(event, "content", None) or event.renderable)

    asyncio.run(scenario())
    assert seen["view"] == "Trace"
    assert "#306 " in seen["event"]


def test_the_footer_is_rebuilt_only_when_the_keys_it_shows_change(history):
    # Textual rebuilt the footer on every refresh of the bindings (seven times for one switch of
    # view, each time new widgets and garbage for the collector), though it showed the same keys.
    session, _rules = history
    seen = {}

    def footer_keys(app) -> dict[str, tuple[int, bool]]:
        return {
            key.description: (id(key), key.has_class("-disabled"))
            for key in app.screen.query("FooterKey")
        }

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 24)) as pilot:
            await settle(pilot)
            seen["shown"] = footer_keys(app)
            app.screen.refresh_bindings()
            app.screen.query_one("#filter").focus()
            app.screen.table.focus()
            await settle(pilot)
            seen["refreshed"] = footer_keys(app)
            await pilot.press("slash", *"no-such-title", "enter")  # no rows: nothing to resend
            await settle(pilot)
            seen["nothing selected"] = footer_keys(app)

    asyncio.run(scenario())
    assert seen["shown"]["Resend"][1] is False
    assert seen["refreshed"] == seen["shown"]  # the same widgets: nothing was rebuilt
    assert seen["nothing selected"]["Resend"][1] is True  # a real change is shown
