"""Snapshots of every view at 80x24 and 120x40 with fixed data, a fixed clock and an explicit
theme; and one where a title holds Rich markup, an escape sequence and a bidi override.

Review a changed snapshot before updating it: ``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import pytest
from console_data import NOW, WEBHOOK_ENV, build

from mrt_engine.config import load_config
from mrt_engine.engine import Engine
from mrt_tui.app import MrtApp
from mrt_tui.session import ConsoleSession


@pytest.fixture
def app_for(tmp_path, monkeypatch):
    monkeypatch.setenv("MRT_TUI_SETTINGS", str(tmp_path / "tui.json"))
    sessions: list[ConsoleSession] = []

    def make(**options) -> MrtApp:
        path = build(tmp_path, **options)
        engine = Engine(
            load_config(path), environ={WEBHOOK_ENV: "http://127.0.0.1:9/x"}, clock=lambda: NOW
        )
        engine.open()
        session = ConsoleSession(
            engine.store, mode="embedded", engine=engine, config=engine.config, clock=lambda: NOW
        )
        session.describe = lambda: "embedded engine · console.sqlite3"  # no tmp path in pictures
        sessions.append(session)
        return MrtApp(session, theme="mrt-dark", remember=False)

    yield make
    for session in sessions:
        session.close()


def settle_then(*keys: str):
    async def run_before(pilot) -> None:
        for _ in range(2):
            await pilot.pause()
            await pilot.app.workers.wait_for_complete()
        for key in keys:
            await pilot.press(key)
            for _ in range(3):
                await pilot.pause()
                await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    return run_before


VIEWS = {"events": "1", "outbox": "2", "rules": "4", "sources": "5"}
SIZES = [(80, 24), (120, 40)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("view", list(VIEWS))
def test_view(snap_compare, app_for, view, size):
    assert snap_compare(app_for(), terminal_size=size, run_before=settle_then(VIEWS[view]))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_trace_view(snap_compare, app_for, size):
    # Outbox, the dead delivery (third row), enter: its trace with every attempt.
    assert snap_compare(
        app_for(), terminal_size=size, run_before=settle_then("2", "j", "j", "enter")
    )


def test_hostile_title_is_shown_literally(snap_compare, app_for):
    assert snap_compare(app_for(hostile=True), terminal_size=(120, 24), run_before=settle_then("1"))


def test_hostile_title_in_the_trace(snap_compare, app_for):
    assert snap_compare(
        app_for(hostile=True), terminal_size=(120, 40), run_before=settle_then("1", "enter")
    )


def test_silences_view(snap_compare, app_for):
    # An active and a pending silence; "a" shows the ended one too.
    assert snap_compare(
        app_for(with_silences=True), terminal_size=(80, 24), run_before=settle_then("6", "a")
    )


def test_silence_draft_form_from_an_event(snap_compare, app_for, monkeypatch):
    monkeypatch.setenv("LOGNAME", "operator")  # the author the form proposes
    # Events, the newest event, s: the draft of a silence of hits like it.
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=settle_then("1", "s"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_health_view(snap_compare, app_for, size):
    # A day of polls and sends: per source new events and poll times an hour, the share of
    # 304s, errors, the rate limit; per channel its queue, sends and failures an hour.
    assert snap_compare(app_for(with_polls=True), terminal_size=size, run_before=settle_then("7"))


def test_health_view_without_colour(snap_compare, app_for, monkeypatch):
    # NO_COLOR: the bars' heights and the numbers beside them say it all.
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(
        app_for(with_polls=True), terminal_size=(80, 24), run_before=settle_then("7")
    )


def test_incidents_view(snap_compare, app_for):
    # DeepSeek-V3.2 first seen on HuggingFace three hours ago, then in a vLLM pull request;
    # each incident's heading, then its timeline (+ marks a new source).
    assert snap_compare(
        app_for(with_incidents=True), terminal_size=(80, 24), run_before=settle_then("8")
    )
