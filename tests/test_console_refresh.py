"""The console reads the store only for the view on screen, and only when something changed; and
it never cuts a number."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import test_tui
from console_data import NOW, event
from test_tui import run, select, settle, shown

from mrt_engine.batch import commit_events
from mrt_engine.store.models import Delivery
from mrt_tui.app import MrtApp
from mrt_tui.screens.health import SourceRow
from mrt_tui.screens.rules import RulesScreen

console = test_tui.console  # the fixture: a session over the console's fixed store

# The suite runs on SQLite and on PostgreSQL (tests/conftest.py): the console's refresh asks
# SQLite's data_version or counts PostgreSQL's change notifications.
pytestmark = pytest.mark.both_backends

# What each view reads; the Events view reads event, rule_hit and alert only.
OTHER_VIEWS_TABLES = (
    "delivery",
    "source_state",
    "quarantine",
    "rule_hit_count",
    "poll_metric",
    "attempt",
)


def other_connection(store):
    """A connection of its own to ``store`` that commits each statement (what another process,
    or an operator's shell, writes with)."""
    if store.is_postgresql:
        from mrt_engine.store import postgres

        return postgres.connect_raw(store.location)
    return sqlite3.connect(store.path, isolation_level=None)


def sweep_claims(session) -> None:
    """What the engine does every heartbeat on a shared store, and at start on either: take
    back the claims of engines that are gone (here there are none)."""
    outbox = session.engine.outbox
    assert outbox.recover() == 0
    assert outbox.recover(live_since=NOW - timedelta(seconds=30)) == 0


async def until(condition, seconds: float = 6.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the console did not show the change")


def test_views_off_screen_and_an_unchanged_store_cost_no_store_read(console, store_statements):
    session = console()
    statements = store_statements

    def engine_commit() -> None:  # as the embedded engine's poll thread commits
        with session.store.write():
            commit_events(session.store, [event(40, "[Model] DeepSeek-V4")], session.rules, NOW)

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            for view in (
                "2",
                "4",
                "5",
                "6",
                "7",
                "8",
                "3",
                "1",
            ):  # every view visited, back to Events
                await pilot.press(view)
                await settle(pilot)
            # The engine's periodic sweep for claims of engines that are gone (every heartbeat
            # on a shared store) finds none: its statements change no row.
            sweep = threading.Thread(target=sweep_claims, args=(session,))
            sweep.start()
            sweep.join()
            statements.clear()
            await asyncio.sleep(2.5)  # more than two refresh periods; nothing was committed
            await settle(pilot)
            assert statements == []

            thread = threading.Thread(target=engine_commit)
            thread.start()
            thread.join()
            statements.clear()
            table = app.screen.table
            await until(lambda: "DeepSeek-V4" in str(table.get_row_at(0)[3]))
            await settle(pilot)
            read = " ".join(sql for sql, _params in statements)
            assert "event" in read
            assert not [t for t in OTHER_VIEWS_TABLES if f'"{t}"' in read], read

    run(scenario())


def test_the_outbox_follows_a_commit_by_another_process(console):
    session = console()
    other = other_connection(session.store)

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("2")
            await settle(pilot)
            status = app.screen.query_one("#status")
            assert "✗ dead 1 " in str(status.render())
            other.execute("UPDATE delivery SET status = 'dead' WHERE status = 'pending'")
            await until(lambda: "✗ dead 2 " in str(status.render()))
            assert "○ pending 0 " in str(status.render())

    try:
        run(scenario())
    finally:
        other.close()


def test_the_outbox_follows_the_embedded_engine_sending_a_resent_delivery(console, welink):
    session = console()
    dead = Delivery.get(Delivery.status == "dead")

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await select(pilot, "2", str(dead.id))
            status = app.screen.query_one("#status")
            assert "✓ sent 1 " in str(status.render())
            await pilot.press("r")  # the operation commits from a console worker's connection
            await until(lambda: "○ pending 2 " in str(status.render()))
            # The engine's delivery worker sends it, on its own thread and connection.
            worker = threading.Thread(target=session.engine.deliver_once)
            worker.start()
            worker.join()
            await until(lambda: "✓ sent 2 " in str(status.render()))

    run(scenario())
    assert welink.texts()


def test_the_rules_view_reads_again_as_its_hour_ages_with_no_commit(console, monkeypatch):
    session = console()
    now = [NOW]
    session.clock = lambda: now[0]
    monkeypatch.setattr(RulesScreen, "REREAD_SECONDS", 0.5)

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("4")
            await settle(pilot)
            table = app.screen.table
            assert str(table.get_cell("deepseek", "hour")) == "3"
            now[0] = NOW + timedelta(hours=2)  # the hits are now older than an hour
            await until(lambda: str(table.get_cell("deepseek", "hour")) == "0")
            assert str(table.get_cell("deepseek", "day")) == "3"

    run(scenario())


def test_a_millionth_event_and_a_long_delivery_id_are_shown_whole(console):
    session = console()
    with session.store.write():
        # A store that has seen a million events: the next one the engine commits is #1000000.
        session.store.db.execute_sql(
            "INSERT INTO event (id, fingerprint, source, source_key, resource_type, resource_id,"
            " event_type, event_id, title, observed_at) VALUES (999999, 'f', 'github', 'k',"
            " 'repo_issue', 'r', 'issue_opened', '0', 'earlier', '2026-11-22T08:00:00.000000Z')"
        )
        if session.store.is_postgresql:  # ids come from the table's sequence there
            session.store.db.execute_sql(
                "SELECT setval(pg_get_serial_sequence('event', 'id'), 999999)"
            )
        commit_events(session.store, [event(40, "[Model] DeepSeek-V4")], session.rules, NOW)
        newest = Delivery.select().order_by(Delivery.id.desc()).get()
        Delivery.update(id=12_345_678).where(Delivery.id == newest.id).execute()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            assert app.screen.table.keys[0] == "1000000"
            assert "1000000" in app.export_screenshot()
            await pilot.press("2")
            await settle(pilot)
            assert "12345678" in app.export_screenshot()
            await pilot.press("enter")  # its trace
            await settle(pilot)
            assert "delivery #12345678 welink" in app.export_screenshot().replace("&#160;", " ")

    run(scenario())


def test_a_refresh_tick_while_a_view_is_first_opened_is_skipped_not_a_crash(console):
    """While a mode's first screen is being installed its stack is empty for a moment, and
    Textual's ``App.screen`` raises ScreenStackError: the refresh timer fired then and the
    whole console died (seen in a long run). The tick is skipped; the next one refreshes."""
    from textual.app import ScreenStackError

    session = console()

    import mrt_tui.app

    class BetweenScreens(MrtApp):  # Textual's transient state, on demand
        CSS_PATH = str(Path(mrt_tui.app.__file__).with_name(str(MrtApp.CSS_PATH)))
        empty = False

        @property
        def screen(self):
            if self.empty:
                raise ScreenStackError("No screens on stack")
            return super().screen

    async def scenario():
        app = BetweenScreens(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            app.empty = True
            app._refresh_visible()
            app.empty = False
            app._refresh_visible()
            await settle(pilot)

    run(scenario())


def test_the_health_view_reads_when_a_poll_lands_and_not_when_nothing_changed(
    console, store_statements
):
    session = console()
    engine = session.engine
    source = next(s for s in engine.sources if s.key == "github:vllm-project/vllm:issues")
    statements = store_statements

    def poll() -> None:  # as the scheduler's poll thread runs it: upstream down, one error
        engine.poll_source(source, force=True)

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("7")
            await settle(pilot)
            screen = app.screen

            def vllm():
                found = {r.source_key: r for r in screen.figures.sources}
                return found["github:vllm-project/vllm:issues"]

            assert vllm().polls == 0
            statements.clear()
            await asyncio.sleep(2.5)  # more than two refresh periods; nothing was committed
            await settle(pilot)
            assert statements == []

            thread = threading.Thread(target=poll)
            thread.start()
            thread.join()
            statements.clear()
            await until(lambda: vllm().errors == 1)
            await settle(pilot)
            assert vllm().polls == 1
            (row,) = [r for r in screen.query(SourceRow) if r.key == source.key]
            title = shown(row.query_one(".health-title"))
            assert "errors 1" in title and "polls 1" in title
            read = " ".join(sql for sql, _params in statements)
            assert '"poll_metric"' in read and '"attempt"' in read
            assert '"event"' not in read  # the figures, not the feed

    run(scenario())
