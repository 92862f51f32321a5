"""The engine as a process: daemon, signals, one engine per store, exit codes, the v0 form."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from conftest import wait_until

from mrt_engine.simulators.base import Fault

# The suite runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def start(tracker, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mrt_engine", "run", "--config", str(tracker.path), *args],
        env={**os.environ, **tracker.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def fast(gh_tracker):
    return gh_tracker(
        {"sources": {"github": {"poll_interval_seconds": 1}}, "scheduler": {"jitter_seconds": 0}}
    )


def test_daemon_alerts_within_seconds_and_stops_cleanly_on_sigterm(gh_tracker, github, welink):
    github.add_issue(REPO, "seed", at=T0)
    tracker = fast(gh_tracker)
    process = start(tracker)
    try:
        assert wait_until(lambda: tracker.baselines() == 2, 10)  # issues and pulls
        github.add_issue(REPO, "DeepSeek-V4 day-0 support", pull=True)
        assert wait_until(lambda: welink.texts(), 10), "no alert arrived"
    finally:
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert time.monotonic() - started < 5
    assert "received SIGTERM" in err and "engine stopped" in err
    assert tracker.sql("SELECT COUNT(*) FROM delivery WHERE lease_owner IS NOT NULL") == [(0,)]


def test_sigint_during_a_slow_send_exits_quickly_and_the_send_is_not_lost(
    gh_tracker, github, welink
):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker(
        {
            "sources": {"github": {"poll_interval_seconds": 1}},
            # The stop waits 2 s at most for the send (a 4 s answer): it cuts it off.
            "scheduler": {"jitter_seconds": 0, "shutdown_timeout_seconds": 2},
        }
    )
    tracker.once()
    github.add_issue(REPO, "Qwen3 slow send")
    welink.inject(Fault(kind="slow", delay=4.0, path="/api/werobot"))
    process = start(tracker)
    try:
        assert wait_until(lambda: welink.requests_to("/api/werobot"), 10)
    finally:
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=15)
    assert process.returncode == 0
    assert time.monotonic() - started < 6
    # The send was cut off: it is recorded, and the next run sends it.
    assert tracker.once() == 0
    assert any("Qwen3 slow send" in t for t in welink.texts())
    assert tracker.sql("SELECT status FROM delivery") == [("sent",)]
    assert tracker.sql("SELECT outcome FROM attempt ORDER BY id") == [("interrupted",), ("sent",)]


@pytest.mark.sqlite_only("one engine per SQLite file; on PostgreSQL engines share the store")
def test_a_second_engine_on_the_same_store_refuses_to_start(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = fast(gh_tracker)
    first = start(tracker)
    try:
        assert wait_until(lambda: github.requests_to("/repos/"), 10)
        second = subprocess.run(
            [sys.executable, "-m", "mrt_engine", "run", "--once", "--config", str(tracker.path)],
            env={**os.environ, **tracker.env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 2
        assert "another mrt-engine is already running on" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.communicate(timeout=15)


def test_a_killed_engine_does_not_block_the_next_one(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = fast(gh_tracker)
    first = start(tracker)
    assert wait_until(lambda: github.requests_to("/repos/"), 10)
    first.kill()
    first.communicate(timeout=10)
    assert tracker.once() == 0


def test_once_exit_codes(gh_tracker, github, tmp_path):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()
    ok = tracker.cli("run", "--once")
    assert ok.returncode == 0, ok.stderr
    github.inject(Fault(500, path="/repos/", times=20))
    failed = tracker.cli("run", "--once")
    assert failed.returncode == 1
    assert "poll failed" in failed.stderr
    # A second failure in a row starts a backoff; while it lasts, --once reports the source
    # as failing without spending a request on it.
    assert tracker.cli("run", "--once").returncode == 1
    github.clear_faults()
    requests = len(github.requests)
    backing_off = tracker.cli("run", "--once")
    assert backing_off.returncode == 1 and "backing off until" in backing_off.stderr
    assert len(github.requests) == requests
    tracker.sql("UPDATE source_state SET backoff_until = NULL")
    assert tracker.cli("run", "--once").returncode == 0
    tracker.env.pop("WL")
    assert tracker.cli("run", "--once").returncode == 2


def test_v0_command_line_still_works(gh_tracker, github, welink):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()
    result = subprocess.run(
        [sys.executable, "-m", "mrt_engine", "--config", str(tracker.path), "--once"],
        env={**os.environ, **tracker.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    polled = len(github.requests_to("/repos/"))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "mrt_engine", "--config", str(tracker.path), "--daemon"],
        env={**os.environ, **tracker.env},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait_until(lambda: len(github.requests_to("/repos/")) > polled, 10)  # it runs
    daemon.terminate()
    _, err = daemon.communicate(timeout=15)
    assert daemon.returncode == 0 and "engine running" in err


def test_poll_now_from_another_process_reaches_the_running_engine(gh_tracker, github, welink):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker({"sources": {"github": {"poll_interval_seconds": 3600}}})
    process = start(tracker)
    try:
        assert wait_until(lambda: tracker.baselines() == 2, 10)
        github.add_issue(REPO, "DeepSeek urgent")
        assert tracker.cli("source", "poll", f"github:{REPO}:issues").returncode == 0
        assert wait_until(lambda: welink.texts(), 10)
    finally:
        process.terminate()
        process.communicate(timeout=15)
