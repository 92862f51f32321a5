"""A store that cannot be used is one clear line and exit status 2 (or, for a daemon, a
recorded failure or a clean stop), never a traceback; ``check`` finds what ``run`` would hit.

The tests run as root, which ignores file permissions: the unwritable places are ones that
refuse root too (a file where a folder must be, /proc, /sys).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import recent_t0

REPO = "vllm-project/vllm"
# Minutes before the tests run: items stamped after it are after the baseline (which keeps a
# 10-minute margin), so they are news, not history.
T0 = recent_t0()  # refreshed for each test by conftest._fresh_t0


def run(tracker, *args: str, program: str = "mrt_engine", timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", program, *args, "--config", str(tracker.path)],
        env={**os.environ, **tracker.env, "XDG_STATE_HOME": str(tracker.path.parent / "state")},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def one_clear_line(result, program: str = "mrt-engine") -> str:
    """The stderr of a refused command: no traceback, and one line from the program itself."""
    assert "Traceback" not in result.stderr, result.stderr
    own = [line for line in result.stderr.splitlines() if line.startswith(f"{program}:")]
    assert len(own) == 1, result.stderr
    return own[0]


UNUSABLE = {
    # state.sqlite_path -> what the line must say
    "afile/x.sqlite3": "a file is in the way",  # relative to the config's folder
    "/proc/mrt/x.sqlite3": "cannot create the store's folder /proc/mrt",
    "/proc/x.sqlite3": "cannot create the engine's lock file /proc/x.sqlite3.lock",
    "/sys/x.sqlite3": "cannot create the engine's lock file /sys/x.sqlite3.lock",
}


@pytest.mark.parametrize("where", list(UNUSABLE))
def test_a_store_that_cannot_be_created_is_one_line_and_exit_2(make_tracker, tmp_path, where):
    (tmp_path / "afile").write_text("not a folder")
    tracker = make_tracker(
        {
            "state": {"sqlite_path": where},
            "sources": {"pypi": {"packages": ["vllm"], "api_base": "http://127.0.0.1:9"}},
        }
    )
    once = run(tracker, "run", "--once")
    assert once.returncode == 2
    assert UNUSABLE[where] in one_clear_line(once)
    # check says what run would hit, instead of "config OK"
    check = run(tracker, "check")
    assert check.returncode == 2 and "config OK" not in check.stdout
    line = one_clear_line(check)
    assert "state.sqlite_path" in line and UNUSABLE[where] in line


def test_the_daemon_and_the_console_refuse_an_unusable_store_in_one_line(make_tracker, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    tracker = make_tracker(
        {
            "state": {"sqlite_path": "afile/x.sqlite3"},
            "sources": {"pypi": {"packages": ["vllm"], "api_base": "http://127.0.0.1:9"}},
        }
    )
    daemon = run(tracker, "run")
    assert daemon.returncode == 2 and "a file is in the way" in one_clear_line(daemon)
    console = run(tracker, program="mrt_tui")
    assert console.returncode == 2
    assert "a file is in the way" in one_clear_line(console, "mrt-tui")


def test_check_passes_for_a_new_store_without_creating_the_database(make_tracker, tmp_path):
    db = tmp_path / "new" / "folder" / "mrt.sqlite3"
    tracker = make_tracker(
        {
            "state": {"sqlite_path": str(db)},
            "sources": {"pypi": {"packages": ["vllm"], "api_base": "http://127.0.0.1:9"}},
        }
    )
    check = run(tracker, "check")
    assert check.returncode == 0 and "config OK" in check.stdout, check.stderr
    assert db.parent.is_dir() and not db.exists()


# ---------------------------------------------------------------------- damaged files
def damage(db: Path, table: str | None) -> None:
    """Overwrite the root page of ``table`` (None: the file's header) with garbage."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = 1
    if table is not None:
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(bytes((i * 37 + 11) % 251 for i in range(page_size)))


@pytest.fixture
def seeded(gh_tracker, github, welink):
    """A tracker with a baseline taken, and a new matching issue waiting upstream."""
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker(
        {
            "sources": {"github": {"monitor": {"pulls": False}, "poll_interval_seconds": 1}},
            "scheduler": {"jitter_seconds": 0},
        }
    )
    assert tracker.once() == 0
    github.add_issue(REPO, "DeepSeek news", at=T0 + timedelta(minutes=1))
    return tracker


def test_a_file_that_is_not_a_database_is_one_line_and_exit_2(seeded):
    damage(seeded.db, None)
    for args in (("run", "--once"), ("check",), ("status",)):
        result = run(seeded, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "not a database" in one_clear_line(result), args


def test_a_store_damaged_under_a_poll_stops_once_with_exit_2(seeded):
    damage(seeded.db, "event")
    once = run(seeded, "run", "--once")
    assert once.returncode == 2
    line = one_clear_line(once)
    assert "is damaged (database disk image is malformed)" in line and str(seeded.db) in line
    check = run(seeded, "check")
    assert check.returncode == 2 and "is damaged" in one_clear_line(check)
    trace = run(seeded, "trace", "https://github.com/vllm-project/vllm/issues/1")
    assert trace.returncode == 2 and "is damaged" in one_clear_line(trace)
    # What could be recorded was: the failed poll, on the intact source_state and poll_metric.
    conn = sqlite3.connect(seeded.db)
    failures, error = conn.execute(
        "SELECT consecutive_failures, last_error FROM source_state"
    ).fetchone()
    conn.close()
    assert failures == 1 and "malformed" in error


def test_a_daemon_on_a_store_damaged_under_a_poll_stops_with_one_error_and_exit_2(seeded):
    damage(seeded.db, "event")
    daemon = run(seeded, "run", timeout=60)  # it must stop by itself
    assert daemon.returncode == 2
    assert "Traceback" not in daemon.stderr, daemon.stderr
    assert "engine stopping: the store" in daemon.stderr and "is damaged" in daemon.stderr
    assert "engine stopped" in daemon.stderr
