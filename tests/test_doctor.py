"""``mrt-engine doctor``'s local checks, on both backends: every check passing on a healthy
deployment and failing with a hint when something is wrong (a wrong config, a missing secret, a
schema too old or too new, a clock behind the store, low disk), the engine on the store named,
the store never changed; and the report (marks, colour, encodings). ``--network`` and
``--send-test``: tests/test_doctor_network.py."""

from __future__ import annotations

import gc
import io
import json
import os
import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import GH_TOKEN
from test_migrate_command import older_store, snapshot

from mrt_engine.doctor import Check, Doctor, Limits, report
from mrt_engine.store import migrations, postgres
from mrt_engine.store.lock import EngineLock

pytestmark = pytest.mark.both_backends


@pytest.fixture(autouse=True)
def _watched_repo(github) -> None:
    github.repo("vllm-project/vllm")


def checks_of(result) -> dict[str, dict]:
    """The checks of a ``doctor --json`` run, by name."""
    return {f"{c['name']} {c['subject']}".strip(): c for c in json.loads(result.stdout)["checks"]}


def doctor(tracker, **options) -> dict[str, Check]:
    """Doctor run in this process on the tracker's config (a clock or limits of its own)."""
    env = {**os.environ, **tracker.env}
    return {f"{c.name} {c.subject}".strip(): c for c in Doctor(tracker.path, env, **options).run()}


def test_every_check_passes_on_a_healthy_deployment_and_the_store_is_left_as_it_was(gh_tracker):
    tracker = gh_tracker()
    assert tracker.once() == 0
    gc.collect()  # the run's last connection closed: its WAL checkpointed now, not during doctor
    before = snapshot(tracker)

    result = tracker.cli("doctor")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    expected = ["config", "secrets", "store", "clock", "engine", "ai"]
    if not tracker.is_postgresql:
        expected[3:3] = ["disk space", "store writable"]
    assert list(checks_of(tracker.cli("doctor", "--json"))) == expected
    assert len(lines) == len(expected) + 1 and all(x.startswith("✓ ") for x in lines[:-1])
    assert lines[-1] == "all checks passed"
    assert "variables set: GH, WL" in result.stdout
    assert f"schema version {migrations.LATEST}, up to date" in result.stdout
    assert "no engine is running on this store" in result.stdout
    assert snapshot(tracker) == before


def test_json_lists_every_check_with_its_outcome(gh_tracker):
    tracker = gh_tracker()
    tracker.once()

    result = tracker.cli("doctor", "--json")

    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"] is True
    assert {"name", "ok", "detail", "hint"} <= set(report["checks"][0])
    assert checks_of(result)["store"]["ok"] is True


def test_a_missing_secret_fails_naming_its_variable(gh_tracker):
    tracker = gh_tracker()
    del tracker.env["GH"]

    result = tracker.cli("doctor")

    assert result.returncode == 1
    line = next(x for x in result.stdout.splitlines() if " secrets " in x)
    assert line.startswith("✗") and "environment variable GH is not set" in line
    assert "hint: set each variable in the engine's environment" in result.stdout
    assert result.stdout.splitlines()[-1] == "1 check failed"


def test_a_wrong_config_is_a_failed_check_with_the_same_error_as_run(make_tracker):
    tracker = make_tracker({"sources": {"github": {"repos": ["a/b"], "tokn_env": "GH"}}})

    result = tracker.cli("doctor")
    run = tracker.cli("run", "--once")

    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert result.stdout.startswith("✗ config  invalid config")
    problem = 'sources.github.tokn_env: unknown key (did you mean "token_env"?)'
    assert problem in result.stdout and problem in run.stderr


def test_a_store_not_yet_created_passes_and_doctor_does_not_create_it(gh_tracker):
    tracker = gh_tracker()

    result = tracker.cli("doctor")

    assert result.returncode == 0, result.stdout
    if tracker.is_postgresql:
        assert "no schema yet (the first run creates it)" in result.stdout
    else:
        assert "not created yet" in result.stdout
        assert list(tracker.db.parent.glob("mrt.sqlite3*")) == []


def test_an_old_schema_names_the_pending_migrations_and_is_not_migrated(make_tracker):
    tracker = make_tracker({})
    older_store(tracker, migrations.LATEST - 1)
    before = snapshot(tracker)

    result = tracker.cli("doctor")

    assert result.returncode == 1
    store = checks_of(tracker.cli("doctor", "--json"))["store"]
    assert store["ok"] is False
    latest = migrations.LATEST
    assert f"schema version {latest - 1}, this mrt-engine knows up to {latest}" in store["detail"]
    assert migrations.SUMMARIES[latest - 1] in store["detail"]
    assert "`mrt-engine migrate` applies them" in store["hint"]
    assert "✗ store" in result.stdout
    assert snapshot(tracker) == before  # byte for byte: not migrated, no -wal left behind


def test_a_store_newer_than_this_mrt_engine_fails(make_tracker):
    tracker = make_tracker({})
    older_store(tracker, migrations.LATEST)
    location = tracker.location
    newer = migrations.LATEST + 1
    if location.is_postgresql:
        with postgres.connect_raw(location) as conn:
            conn.execute("UPDATE mrt_schema SET version = %s", (newer,))
    else:
        import sqlite3

        conn = sqlite3.connect(location.path)
        conn.execute(f"PRAGMA user_version = {newer}")
        conn.close()

    store = checks_of(tracker.cli("doctor", "--json"))["store"]

    assert store["ok"] is False and f"schema version {newer}" in store["detail"]
    assert store["hint"] == "upgrade mrt-engine to the version that wrote this store"


def test_a_clock_behind_the_stores_newest_poll_fails(gh_tracker):
    tracker = gh_tracker()
    tracker.once()

    checks = doctor(tracker, clock=lambda: datetime.now(UTC) - timedelta(hours=2))
    fine = doctor(tracker, clock=lambda: datetime.now(UTC) - timedelta(minutes=1))

    clock = checks["clock"]
    assert not clock.ok and re.search(r"is (1 h 59|2 h 0) min behind the store's", clock.detail)
    assert "NTP" in clock.hint
    assert fine["clock"].ok


@pytest.mark.sqlite_only("the disk of a PostgreSQL store is the server's")
def test_low_disk_space_fails(gh_tracker):
    tracker = gh_tracker()
    tracker.once()

    checks = doctor(tracker, limits=Limits(min_free_bytes=10**18))

    assert not checks["disk space"].ok and "make room" in checks["disk space"].hint
    assert doctor(tracker)["disk space"].ok


@pytest.mark.sqlite_only("the lock file of a SQLite store")
def test_a_running_engine_is_named_by_its_lock(gh_tracker):
    tracker = gh_tracker()
    tracker.once()
    lock = EngineLock(tracker.db)
    lock.acquire()
    try:
        engine = doctor(tracker)["engine"]
    finally:
        lock.release()

    assert engine.ok and f"an engine is running on this store (pid {os.getpid()}" in engine.detail
    assert "no engine is running" in doctor(tracker)["engine"].detail


@pytest.mark.sqlite_only("the lock file of a SQLite store")
@pytest.mark.parametrize("written", [b"[1, 2]", b'{"started": "x"}', b'"pid"', b"\xff\xfe"])
def test_a_held_lock_whatever_its_file_holds_is_a_running_engine_not_a_crash(gh_tracker, written):
    tracker = gh_tracker()
    tracker.once()
    lock = EngineLock(tracker.db)
    lock.acquire()
    lock_file = tracker.db.with_name(tracker.db.name + ".lock")
    lock_file.write_bytes(written)  # an older engine's, a hand-edited or a damaged lock file
    try:
        engine = doctor(tracker)["engine"]
    finally:
        lock.release()

    assert engine.ok and "an engine is running on this store" in engine.detail


@pytest.mark.postgresql_only
def test_an_unreadable_shared_store_is_not_said_to_have_no_engine(gh_tracker, monkeypatch):
    from pg_cluster import PASSWORD_ENV

    tracker = gh_tracker()
    tracker.once()
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    tracker.env[PASSWORD_ENV] = "not-the-password"

    checks = doctor(tracker)

    assert not checks["store"].ok and "password authentication failed" in checks["store"].detail
    assert "not-the-password" not in checks["store"].detail
    engine = checks["engine"]
    assert "no engine" not in engine.detail and "cannot" in engine.detail


@pytest.mark.postgresql_only
def test_the_live_engines_of_a_shared_store_are_named(gh_tracker):
    from mrt_engine.store import engines

    tracker = gh_tracker()
    tracker.once()
    with tracker.store() as store:
        engines.register(
            store, "host-a:42:abc", host="host-a", pid=42, version="x", now=datetime.now(UTC)
        )

    engine = doctor(tracker)["engine"]

    assert engine.ok and "1 engine running: host-a:42:abc (pid 42 on host-a)" in engine.detail


# ---------------------------------------------------------------------- the report
CHECKS = [Check("config", True, "ok.toml"), Check("secrets", False, "GH is not set", "set it")]


def test_a_terminal_that_cannot_print_check_marks_gets_ok_and_fail():
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")

    report(CHECKS, out, {}, as_json=False)

    out.flush()
    text = out.buffer.getvalue().decode("ascii")
    assert text.splitlines()[:2] == ["ok   config   ok.toml", "FAIL secrets  GH is not set"]
    assert "     hint: set it" in text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_colour_unless_no_color_is_set():
    coloured, plain = Terminal(), Terminal()

    report(CHECKS, coloured, {"TERM": "xterm"}, as_json=False)
    report(CHECKS, plain, {"TERM": "xterm", "NO_COLOR": "1"}, as_json=False)

    assert "\x1b[32m✓\x1b[0m config" in coloured.getvalue()
    assert "\x1b[31m✗\x1b[0m secrets" in coloured.getvalue()
    assert "\x1b" not in plain.getvalue() and plain.getvalue().startswith("✓ config")


def test_an_ascii_terminal_gets_every_line_and_json_without_an_encoding_error():
    checks = [Check("source", False, "500 from upstream: “Bad gateway…”", "see it", "hf:x")]
    text, as_json = (io.TextIOWrapper(io.BytesIO(), encoding="ascii") for _ in range(2))

    report(checks, text, {}, as_json=False)
    report(checks, as_json, {}, as_json=True)

    for out in (text, as_json):
        out.flush()
    assert "FAIL source  hf:x: 500 from upstream: ?Bad gateway??" in text.buffer.getvalue().decode()
    parsed = json.loads(as_json.buffer.getvalue())
    assert parsed["checks"][0]["detail"] == "500 from upstream: “Bad gateway…”"


def test_a_token_written_where_its_variable_belongs_is_not_shown(gh_tracker):
    tracker = gh_tracker({"sources": {"github": {"token_env": GH_TOKEN}}})

    result = tracker.cli("doctor", "--json")

    secrets = checks_of(result)["secrets"]
    assert not secrets["ok"] and "looks like the secret itself (not shown)" in secrets["detail"]
    assert GH_TOKEN not in result.stdout + result.stderr


@pytest.mark.sqlite_only("the folder of a SQLite store")
def test_a_file_in_the_way_of_the_store_folder_fails(make_tracker, tmp_path):
    (tmp_path / "state").write_text("not a folder")
    tracker = make_tracker({"state": {"sqlite_path": str(tmp_path / "state" / "mrt.sqlite3")}})

    writable = checks_of(tracker.cli("doctor", "--json"))["store writable"]

    assert not writable["ok"] and f"{tmp_path / 'state'} is a file" in writable["detail"]
    assert (tmp_path / "state").read_text() == "not a folder"


@pytest.mark.sqlite_only("the store's path")
@pytest.mark.parametrize("where", ["name", "folder"])
def test_a_store_path_the_system_cannot_look_up_fails_its_checks_not_doctor(
    make_tracker, tmp_path, where
):
    # A name longer than the file system takes: one of the errors (with EACCES, a folder this
    # user may not enter) that Path.exists() raises instead of answering False.
    long = "x" * 300
    path = tmp_path / long if where == "name" else tmp_path / long / "mrt.sqlite3"
    tracker = make_tracker({"state": {"sqlite_path": str(path)}})

    result = tracker.cli("doctor", "--json")

    assert "Traceback" not in result.stderr, result.stderr
    checks = checks_of(result)
    assert result.returncode == 1 and not checks["store"]["ok"]
    assert "File name too long" in checks["store"]["detail"]


@pytest.mark.sqlite_only("the lock file of a SQLite store")
def test_a_lock_file_doctor_cannot_read_fails_the_engine_check(make_tracker, tmp_path):
    # The store's name fits the file system, its lock file's (".lock" more) does not: as with a
    # lock file this user may not read, doctor cannot tell whether an engine runs.
    tracker = make_tracker({"state": {"sqlite_path": str(tmp_path / ("x" * 252))}})

    engine = checks_of(tracker.cli("doctor", "--json"))["engine"]

    assert not engine["ok"] and "cannot read the lock file" in engine["detail"]


@pytest.mark.sqlite_only("the config's ai line alone")
def test_the_ai_line_shows_no_credentials_of_its_base_url(gh_tracker):
    """``ai.base_url`` may carry a proxy's user and password or a key in its query (Azure's
    ``api-key``): doctor names the endpoint without them, as it does a source's api_base."""
    tracker = gh_tracker(
        {
            "ai": {
                "enabled": True,
                "base_url": "https://bot:hunter2-secret@llm.corp.example/v1?api-key=k3y-secret",
                "model": "qwen3-8b",
            }
        }
    )
    line = doctor(tracker)["ai"].detail
    assert "llm.corp.example" in line
    assert "hunter2-secret" not in line and "k3y-secret" not in line
