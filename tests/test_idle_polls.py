"""Idle polls: a poll that changed nothing writes nothing to the store and syncs nothing.

Its times, its rate-limit reading and its figures stay in memory and reach the store at most a
flush interval later (``scheduler.idle_flush_seconds``), as one ``poll_metric`` row per source
per interval; a crash between flushes loses only those times, never a cursor or an alert.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime

from conftest import wait_until
from console_data import NOW, WEBHOOK_ENV, build

from mrt_engine.config import load_config
from mrt_engine.engine import Engine
from mrt_engine.rate_limits import RateLimitInfo
from mrt_engine.simulators.base import Fault
from mrt_engine.store import queries
from mrt_engine.store.db import open_store
from mrt_engine.store.models import SourceState
from mrt_engine.timeutil import from_store
from mrt_tui.app import MrtApp
from mrt_tui.session import ConsoleSession

REPO = "vllm-project/vllm"
KEY = f"github:{REPO}:issues"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
ISSUES_ONLY = {"sources": {"github": {"monitor": {"pulls": False}}}}


def data_version(db: sqlite3.Connection) -> int:
    """Changes whenever another connection commits to the store (SQLite's own counter)."""
    return db.execute("PRAGMA data_version").fetchone()[0]


def watcher(tracker) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{tracker.db}?mode=ro", uri=True, timeout=10)


def settled(gh_tracker, github, extra=None):
    """A tracker whose source has taken its baseline and holds an ETag: its next poll is a 304."""
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker({**ISSUES_ONLY, **(extra or {})})
    assert tracker.once() == 0  # the baseline
    assert tracker.once() == 0  # the first incremental poll: a 200 with an ETag
    return tracker


def read(tracker, query: str, *params) -> list[tuple]:
    """Rows read on a connection of the test's own (the engine under test may hold the store)."""
    with closing(watcher(tracker)) as db:
        return db.execute(query, params).fetchall()


def source_row(tracker) -> dict:
    names = ("cursor", "etag", "last_poll_at", "last_success_at", "next_poll_at")
    names += ("rate_limit_remaining", "consecutive_failures")
    row = read(tracker, f"SELECT {', '.join(names)} FROM source_state WHERE source_key = ?", KEY)
    return dict(zip(names, row[0], strict=True))


def metric_rows(tracker) -> list[tuple]:
    return read(
        tracker,
        "SELECT outcome, polls, http_requests, duration_ms, max_duration_ms, started_at,"
        " finished_at FROM poll_metric WHERE source_key = ? ORDER BY id",
        KEY,
    )


def test_unchanged_polls_write_nothing_until_the_flush_then_one_metric_row(gh_tracker, github):
    tracker = settled(gh_tracker, github)
    before = source_row(tracker)
    metrics_before = tracker.sql("SELECT COUNT(*) FROM poll_metric")[0][0]
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        with closing(watcher(tracker)) as db:
            version = data_version(db)
            outcomes = [engine.poll_source(source) for _ in range(5)]
            assert [o.status for o in outcomes] == ["not_modified"] * 5
            assert data_version(db) == version, "an unchanged poll wrote to the store"
    finally:
        engine.close()  # stopping flushes what is held
    after = source_row(tracker)
    assert after["cursor"] == before["cursor"] and after["etag"] == before["etag"]
    assert from_store(after["last_poll_at"]) > from_store(before["last_poll_at"])
    assert after["rate_limit_remaining"] == github.remaining
    rows = metric_rows(tracker)
    assert len(rows) == metrics_before + 1  # five polls, one row
    outcome, polls, requests, total_ms, max_ms, started, finished = rows[-1]
    assert (outcome, polls, requests) == ("not_modified", 5, 5)
    assert 0 <= max_ms <= total_ms
    assert from_store(started) < from_store(finished) <= from_store(after["last_success_at"])
    polled = queries_recent(tracker)[0]
    assert (polled["outcome"], polled["polls"]) == ("not_modified", 5)


def queries_recent(tracker) -> list[dict]:
    with tracker.store():
        return queries.recent_polls(KEY)


def test_a_running_idle_engine_writes_only_at_its_flushes(gh_tracker, github):
    """Polls, the control job (poll requests) and the delivery workers' idle checks: between
    two flushes, nothing is committed."""
    tracker = settled(
        gh_tracker,
        github,
        {
            "sources": {"github": {"monitor": {"pulls": False}, "poll_interval_seconds": 1}},
            "scheduler": {"jitter_seconds": 0, "idle_flush_seconds": 60},
        },
    )
    engine = tracker.engine()
    engine.start()
    try:
        with closing(watcher(tracker)) as db:
            # Let every first write of a start pass (claims taken back, state rows ensured).
            assert wait_until(lambda: len(github.requests) >= 4, timeout=30)
            version = data_version(db)
            seen = len(github.requests)
            assert wait_until(lambda: len(github.requests) >= seen + 3, timeout=30)
            assert data_version(db) == version, "an idle engine wrote between flushes"
    finally:
        engine.stop()


def test_the_times_of_unchanged_polls_reach_the_store_within_the_flush_interval(gh_tracker, github):
    tracker = settled(
        gh_tracker,
        github,
        {
            "sources": {"github": {"monitor": {"pulls": False}, "poll_interval_seconds": 1}},
            "scheduler": {"jitter_seconds": 0, "idle_flush_seconds": 0.2},
        },
    )
    before = source_row(tracker)
    engine = tracker.engine()
    engine.start()
    try:
        # While the engine runs (no stop flushes yet), idle polls show up in the store.
        assert wait_until(
            lambda: sum(r[1] for r in metric_rows(tracker) if r[0] == "not_modified") >= 2,
            timeout=30,
        )
        assert source_row(tracker)["last_poll_at"] > before["last_poll_at"]
    finally:
        engine.stop()


def test_a_changed_poll_after_idle_ones_writes_their_row_first(gh_tracker, github, welink):
    tracker = settled(gh_tracker, github)
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        assert engine.poll_source(source).status == "not_modified"
        assert engine.poll_source(source).status == "not_modified"
        github.add_issue(REPO, "DeepSeek V4 support")
        outcome = engine.poll_source(source)
        assert outcome.status == "ok" and outcome.alerts_created == 1
        # The idle polls' row was written with the change, before the changed poll's own.
        rows = metric_rows(tracker)
        assert [(r[0], r[1]) for r in rows[-2:]] == [("not_modified", 2), ("ok", 1)]
    finally:
        engine.close()
    assert [(r[0], r[1]) for r in metric_rows(tracker)[-2:]] == [("not_modified", 2), ("ok", 1)]


def test_a_failed_poll_after_idle_ones_keeps_their_last_success(gh_tracker, github):
    tracker = settled(gh_tracker, github)
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        assert engine.poll_source(source).status == "not_modified"
        github.inject(Fault(status=502, path="/repos/", times=10))
        assert engine.poll_source(source).status == "error"
        row = source_row(tracker)
        assert row["consecutive_failures"] == 1
        last_idle = [r for r in metric_rows(tracker) if r[0] == "not_modified"][-1]
        # The success before the failure is on record, not the one before the idle polls.
        assert row["last_success_at"] == last_idle[6]
    finally:
        engine.close()


def test_a_304_that_ends_a_failing_streak_is_committed_at_once_with_its_recovery(
    gh_tracker, github, welink
):
    tracker = settled(
        gh_tracker,
        github,
        {"scheduler": {"unhealthy_after_failures": 1}, "http": {"max_retries": 0}},
    )
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        github.inject(Fault(status=502, path="/repos/", times=100))
        assert engine.poll_source(source).status == "error"
        github.clear_faults()
        assert engine.poll_source(source, force=True).status == "not_modified"
        # Not idle: the streak's end and its "recovered" alert are in the store now.
        assert source_row(tracker)["consecutive_failures"] == 0
        kinds = read(tracker, "SELECT event_type FROM event WHERE source = 'mrt' ORDER BY id")
        assert kinds == [("source_unhealthy",), ("source_recovered",)]
    finally:
        engine.close()


def test_sigkill_between_flushes_loses_only_the_times_of_idle_polls(gh_tracker, github, welink):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker(
        {
            "sources": {"github": {"monitor": {"pulls": False}, "poll_interval_seconds": 1}},
            "scheduler": {"jitter_seconds": 0, "idle_flush_seconds": 60},
        }
    )
    assert tracker.once() == 0  # the baseline
    command = [sys.executable, "-m", "mrt_engine", "run", "--config", str(tracker.path)]
    env = {**os.environ, **tracker.env}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        github.add_issue(REPO, "DeepSeek V4 support")
        assert wait_until(lambda: len(welink.texts()) == 1, timeout=30)
        # The poll after the change asks a new URL (a 200 with its ETag); then 304s.
        polls = len(github.requests)
        assert wait_until(lambda: len(github.requests) >= polls + 3, timeout=30)
        committed = source_row(tracker)
        # More idle polls: answered 304, held in memory.
        assert wait_until(lambda: len(github.requests) >= polls + 6, timeout=30)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    lost = source_row(tracker)
    # The cursor, the validators and the alert are intact; only the idle polls' times are
    # behind (they were never written).
    assert lost == committed
    assert json.loads(lost["cursor"]) and lost["etag"]
    assert read(tracker, "SELECT COUNT(*) FROM alert") == [(1,)]
    assert read(tracker, "SELECT status FROM delivery") == [("sent",)]
    # The next engine goes on from the cursor: a 304, nothing alerted or sent again.
    assert tracker.once() == 0
    assert tracker.sql("SELECT COUNT(*) FROM alert") == [(1,)]
    assert len(welink.texts()) == 1
    assert metric_rows(tracker)[-1][0] == "not_modified"


def test_status_shows_the_last_idle_poll_once_written_and_says_how_late_it_may_be(
    gh_tracker, github
):
    tracker = settled(gh_tracker, github)
    assert tracker.once() == 0  # a 304: held, then written when the engine stops
    last_poll = from_store(source_row(tracker)["last_poll_at"])
    out = tracker.cli("status").stdout
    assert f"last poll {last_poll:%Y-%m-%d %H:%M:%S}" in out
    assert "polls that found nothing new are recorded once a minute" in out


# ---------------------------------------------------------------------- what the console shows
ISSUES = "github:vllm-project/vllm:issues"


def sources_view(session, then=None) -> dict[str, str]:
    """The Sources view of ``session``: cells of the issues source's row, and the status line
    (after ``then()`` and the app's next refresh, when given)."""
    seen: dict[str, str] = {}

    async def settle(pilot) -> None:
        for _ in range(2):
            await pilot.pause()
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(160, 40)) as pilot:
            await settle(pilot)
            await pilot.press("5")
            await settle(pilot)
            if then is not None:
                then()
                app._refresh_visible()  # the app's periodic refresh, once
                await settle(pilot)
            table = app.screen.table
            table.move_cursor(row=table.get_row_index(ISSUES))
            await settle(pilot)
            for column in ("last", "ok", "rate", "next"):
                seen[column] = str(table.get_cell(ISSUES, column))
            status = app.screen.query_one("#status")
            content = getattr(status, "content", None)  # Textual 2; renderable before
            seen["status"] = str(status.renderable if content is None else content)

    asyncio.run(scenario())
    return seen


def test_the_embedded_console_shows_idle_polls_the_store_has_not_yet(tmp_path, monkeypatch, welink):
    monkeypatch.setenv("MRT_TUI_SETTINGS", str(tmp_path / "tui.json"))
    engine = Engine(
        load_config(build(tmp_path)), environ={WEBHOOK_ENV: welink.webhook_url}, clock=lambda: NOW
    )
    engine.open()
    session = ConsoleSession(engine.store, mode="embedded", engine=engine, clock=lambda: NOW)
    try:
        polled = NOW.replace(second=25)
        engine.pipeline.idle.record(
            ISSUES,
            outcome="not_modified",
            started=polled,
            finished=polled,
            next_poll_at=NOW.replace(second=55),
            http_requests=1,
            duration_ms=40,
            rate_limit=RateLimitInfo(4321, None),
        )
        seen = sources_view(session)
    finally:
        session.close()
    assert (seen["last"], seen["ok"], seen["rate"], seen["next"]) == (
        "09:30:25",
        "09:30:25",
        "4321",
        "09:30:55",
    )
    assert "recorded once a minute" not in seen["status"]


def test_the_attached_console_says_idle_polls_are_recorded_once_a_minute(tmp_path, monkeypatch):
    monkeypatch.setenv("MRT_TUI_SETTINGS", str(tmp_path / "tui.json"))
    store = open_store(load_config(build(tmp_path)).db_path, create=False)
    session = ConsoleSession(store, mode="attach", clock=lambda: NOW)
    try:
        with store.write():  # as the engine last wrote it: the next poll's time has passed
            SourceState.update(next_poll_at=NOW.replace(minute=29, second=50)).where(
                SourceState.source_key == ISSUES
            ).execute()
        seen = sources_view(session)
    finally:
        session.close()
    assert seen["last"] == "09:29:00" and seen["next"] == "due"
    assert "polls that found nothing new are recorded once a minute" in seen["status"]


def test_the_embedded_sources_view_follows_idle_polls_that_commit_nothing(
    tmp_path, monkeypatch, welink
):
    monkeypatch.setenv("MRT_TUI_SETTINGS", str(tmp_path / "tui.json"))
    engine = Engine(
        load_config(build(tmp_path)), environ={WEBHOOK_ENV: welink.webhook_url}, clock=lambda: NOW
    )
    engine.open()
    session = ConsoleSession(engine.store, mode="embedded", engine=engine, clock=lambda: NOW)

    def idle_poll(second: int) -> None:
        polled = NOW.replace(second=second)
        engine.pipeline.idle.record(
            ISSUES,
            outcome="not_modified",
            started=polled,
            finished=polled,
            next_poll_at=polled,
            http_requests=1,
            duration_ms=40,
            rate_limit=RateLimitInfo(4000 + second, None),
        )

    idle_poll(10)
    try:
        seen = sources_view(session, then=lambda: idle_poll(40))  # the store is unchanged
    finally:
        session.close()
    assert (seen["last"], seen["rate"]) == ("09:30:40", "4040")
