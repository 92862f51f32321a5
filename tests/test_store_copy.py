"""``mrt-engine store copy``: a store moved from SQLite to PostgreSQL (and back, and between
SQLite files) with everything the engine wrote, so that an engine on the copy carries on
where the original left off; a target that holds data is refused, the source never changes.

The stores are written by the engine itself (GitHub and WeLink simulators); PostgreSQL is the
run's real cluster (tests/pg_cluster.py).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pg_cluster
import pytest
from conftest import Tracker, postgresql_address, recent_t0

from mrt_engine.store import migrations, postgres
from mrt_engine.store.db import open_store
from mrt_engine.store.feed import EventFilter, event_rows
from mrt_engine.store.location import parse_location
from mrt_engine.store.lock import EngineLock
from mrt_engine.store.search import indexed_text

REPO = "vllm-project/vllm"
T0 = recent_t0()  # refreshed for each test by conftest._fresh_t0
# Every table the copy carries, in the order it copies them, with the column it pages by.
COPIED = {
    "source_state": "source_key",
    "event": "id",
    "rule_hit": "id",
    "alert": "id",
    "silence": "id",
    "delivery": "id",
    "attempt": "id",
    "audit": "id",
    "poll_metric": "id",
    "quarantine": "id",
    "retention_mark": "job",
    "delivery_count": "channel, status",
    "rule_hit_count": "rule",
}


@pytest.fixture
def pg_url(monkeypatch) -> str:
    """A new, empty PostgreSQL database (its password in PASSWORD_ENV)."""
    address = postgresql_address()
    url = pg_cluster.new_database(address, prefix="copy")
    monkeypatch.setenv(pg_cluster.PASSWORD_ENV, pg_cluster.PASSWORD)
    yield url
    pg_cluster.drop_database(address, url)


@pytest.fixture
def written(gh_tracker, github, welink):
    """A SQLite store the engine wrote: a baseline, alerts, deliveries sent, retrying, dead and
    pending (a resend), their attempts, a quarantined item, audit rows and poll metrics."""
    tracker = gh_tracker(
        {"delivery": {"max_attempts": 2}, "sources": {"github": {"monitor": {"pulls": False}}}}
    )
    welink.fail_matching = "Qwen"  # these always fail (WeLink code 58500)
    github.add_issue(REPO, "seed", at=T0)
    assert tracker.once() == 0  # the baseline
    github.add_issue(REPO, "DeepSeek one", at=T0 + timedelta(minutes=1))
    github.add_issue(REPO, "Qwen two", at=T0 + timedelta(minutes=2))
    bad = github.add_issue(REPO, "DeepSeek broken", at=T0 + timedelta(minutes=3))
    bad["created_at"] = "yesterday-ish"
    github.add_issue(REPO, "DeepSeek three", at=T0 + timedelta(minutes=3))
    tracker.once()
    tracker.once(later=0.3)  # Qwen two: its second and last attempt, dead
    github.add_issue(REPO, "Qwen four", at=T0 + timedelta(minutes=4))
    tracker.once()  # Qwen four: retrying
    [(first,)] = tracker.sql(
        "SELECT d.id FROM delivery d JOIN alert a ON a.id = d.alert_id"
        " JOIN event e ON e.id = a.event_id WHERE e.title = 'DeepSeek one'"
    )
    assert tracker.cli("resend", str(first)).returncode == 0  # pending again
    statuses = {s for (s,) in tracker.sql("SELECT status FROM delivery")}
    assert statuses == {"sent", "retrying", "dead", "pending"}
    assert tracker.sql("SELECT COUNT(*) FROM quarantine") == [(1,)]
    return tracker


def on_store(tracker: Tracker, state: dict, name: str) -> Tracker:
    """The same config as ``tracker``'s with its store somewhere else."""
    data = json.loads(tracker.path.read_text())
    data["state"] = state
    path = tracker.path.parent / name / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data))
    env = dict(tracker.env)
    if "password_env" in state:
        env[pg_cluster.PASSWORD_ENV] = pg_cluster.PASSWORD
    return Tracker(path, env)


def pg_state(url: str) -> dict:
    return {"url": url, "password_env": pg_cluster.PASSWORD_ENV}


def rows_of(location) -> dict[str, list[tuple]]:
    """Every copied table's rows in key order (counters without their zero rows)."""
    found = {}
    if location.is_postgresql:
        with postgres.connect_raw(location) as conn:
            for table, key in COPIED.items():
                found[table] = [
                    tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY {key}")
                ]
    else:
        conn = sqlite3.connect(location.path)
        try:
            for table, key in COPIED.items():
                found[table] = conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
        finally:
            conn.close()
    for table in ("delivery_count", "rule_hit_count"):
        found[table] = [r for r in found[table] if r[-1] != 0]
    return found


def searched(location, words: str) -> list[int]:
    """The event ids the Events filter finds for ``words`` (through the search index)."""
    store = open_store(location, create=False)
    try:
        return [r.id for r in event_rows(EventFilter.parse(words))]
    finally:
        store.close()


def copy(tracker: Tracker, *args: str):
    return tracker.cli("store", "copy", *args)


def to_pg(tracker: Tracker, url: str, *args: str):
    return copy(tracker, "--to", url, "--to-password-env", pg_cluster.PASSWORD_ENV, *args)


def file_state(path: Path) -> tuple[bytes, bytes]:
    """A SQLite store's file and its WAL (a read-only reader may leave an empty one)."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes(), wal.read_bytes() if wal.exists() else b""


def settled_file_state(path: Path) -> tuple[bytes, bytes]:
    """:func:`file_state` once the WAL is checkpointed into the file: a connection that the
    commands before closed late (its close checkpoints) then changes no byte, and any change
    left is a write."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return file_state(path)


def test_a_store_copied_to_postgresql_carries_on_where_the_sqlite_store_left_off(
    written, github, welink, pg_url
):
    source = written
    status = json.loads(source.cli("status", "--json").stdout)
    urls = [u for (u,) in source.sql("SELECT url FROM event ORDER BY id")]
    traces = {u: source.cli("trace", u).stdout for u in urls}
    [(max_event, max_alert, max_delivery)] = source.sql(
        "SELECT (SELECT MAX(id) FROM event), (SELECT MAX(id) FROM alert),"
        " (SELECT MAX(id) FROM delivery)"
    )
    sent_before = len(welink.texts())
    before = settled_file_state(source.location.path)

    result = to_pg(source, pg_url)

    assert result.returncode == 0, result.stderr
    assert pg_cluster.PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for table in ("event", "rule_hit", "alert", "delivery", "attempt", "quarantine"):
        n = len(source.sql(f"SELECT id FROM {table}"))
        assert f"{table}: {n:,} rows" in result.stderr  # progress
        assert any(line.split()[:2] == [table, f"{n:,}"] for line in result.stdout.splitlines())
    assert "counts match" in result.stdout
    assert file_state(source.location.path) == before
    target = parse_location(pg_url, password_env=pg_cluster.PASSWORD_ENV)
    assert rows_of(target) == rows_of(source.location)
    # the Events filter's index: each event's folded title, as the engine writes it
    with postgres.connect_raw(target) as conn:
        index = conn.execute("SELECT rowid, title FROM event_search ORDER BY rowid").fetchall()
    events = source.sql("SELECT id, title FROM event ORDER BY id")
    assert index == [(i, indexed_text(t)) for i, t in events]

    # `status` and `trace` on the copy say what they said on the original.
    copied = on_store(source, pg_state(pg_url), "copy")
    on_copy = json.loads(copied.cli("status", "--json").stdout)
    assert on_copy["sources"] == status["sources"] and on_copy["outbox"] == status["outbox"]
    for url, text in traces.items():
        assert copied.cli("trace", url).stdout == text

    # An engine on the copy carries on: the cursor holds (no new baseline, nothing old is news
    # again), the pending and retrying deliveries go out, the dead one stays dead, and a new
    # item gets ids after the copied ones.
    welink.fail_matching = None
    github.add_issue(REPO, "DeepSeek five", at=T0 + timedelta(minutes=6))
    assert copied.once() == 0
    titles = [
        t
        for (t,) in copied.sql(
            "SELECT e.title FROM alert a JOIN event e ON e.id = a.event_id ORDER BY a.id"
        )
    ]
    assert titles == ["DeepSeek one", "Qwen two", "DeepSeek three", "Qwen four", "DeepSeek five"]
    [(event_id, alert_id)] = copied.sql(
        "SELECT e.id, a.id FROM event e JOIN alert a ON a.event_id = e.id"
        " WHERE e.title = 'DeepSeek five'"
    )
    assert event_id == max_event + 1 and alert_id == max_alert + 1
    assert copied.sql("SELECT MIN(id) FROM delivery WHERE id > ?", max_delivery)[0][0] is not None
    sent = welink.texts()[sent_before:]
    assert len(sent) == 3
    for title in ("DeepSeek one", "Qwen four", "DeepSeek five"):
        assert sum(title in text for text in sent) == 1, sent
    statuses = dict(
        copied.sql(
            "SELECT e.title, d.status FROM delivery d JOIN alert a ON a.id = d.alert_id"
            " JOIN event e ON e.id = a.event_id"
        )
    )
    assert statuses["Qwen two"] == "dead" and statuses["DeepSeek five"] == "sent"
    # the counters' triggers are on again: the engine's writes kept them right
    assert copied.sql(
        "SELECT channel, status, n FROM delivery_count WHERE n > 0 ORDER BY channel, status"
    ) == copied.sql(
        "SELECT channel, status, COUNT(*) FROM delivery GROUP BY channel, status"
        " ORDER BY channel, status"
    )
    assert file_state(source.location.path) == before  # the original is as it was


def test_a_postgresql_copy_copied_back_to_sqlite_equals_the_original(written, pg_url, tmp_path):
    source = written
    there = to_pg(source, pg_url)
    assert there.returncode == 0, there.stderr
    back = tmp_path / "back" / "store.sqlite3"
    # from the config's store, its password from the config's state.password_env
    result = copy(on_store(source, pg_state(pg_url), "copy"), "--to", f"sqlite:///{back}")
    assert result.returncode == 0, result.stderr
    again = parse_location(back)
    assert rows_of(again) == rows_of(source.location)
    for words in ("eepse", "qwen four", "seed"):
        assert searched(again, words) == searched(source.location, words) != []
    # and an SQLite file copied to another is the same again (one mechanism for every pair)
    third = tmp_path / "third.sqlite3"
    result = copy(source, "--from", str(back), "--to", str(third))
    assert result.returncode == 0, result.stderr
    assert rows_of(parse_location(third)) == rows_of(source.location)
    store = open_store(third, create=False)
    store.close()
    assert store.found_version == migrations.LATEST


def test_a_target_that_holds_data_is_refused_untouched_and_replaced_only_when_asked(
    written, pg_url, tmp_path
):
    source = written
    assert to_pg(source, pg_url).returncode == 0
    target = parse_location(pg_url, password_env=pg_cluster.PASSWORD_ENV)
    with postgres.connect_raw(target) as conn:
        conn.execute("INSERT INTO audit (at, actor, action, target) VALUES ('t', 'x', 'y', 'z')")
    kept = rows_of(target)

    refused = to_pg(source, pg_url)

    assert refused.returncode == 2
    assert "holds data" in refused.stderr and "--replace" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert rows_of(target) == kept

    replaced = to_pg(source, pg_url, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert rows_of(target) == rows_of(source.location)

    # a SQLite target too
    other = tmp_path / "other.sqlite3"
    assert copy(source, "--to", str(other)).returncode == 0
    before = other.read_bytes()
    refused = copy(source, "--to", str(other))
    assert refused.returncode == 2 and "holds data" in refused.stderr
    assert other.read_bytes() == before


def test_a_copy_from_a_store_an_engine_runs_on_is_refused(written, tmp_path):
    lock = EngineLock(written.location.path)
    lock.acquire()
    try:
        result = copy(written, "--to", str(tmp_path / "t.sqlite3"))
    finally:
        lock.release()
    assert result.returncode == 2
    assert "running" in result.stderr and "stop it" in result.stderr
    assert not (tmp_path / "t.sqlite3").exists()


def test_a_copy_from_a_postgresql_store_with_a_live_engine_is_refused(written, pg_url, tmp_path):
    assert to_pg(written, pg_url).returncode == 0
    now = datetime.now(UTC).isoformat()
    with postgres.connect_raw(parse_location(pg_url, password_env=pg_cluster.PASSWORD_ENV)) as c:
        c.execute(
            "INSERT INTO engine_instance (id, host, pid, version, started_at, heartbeat_at)"
            " VALUES ('e1', 'h', 1, 'v', %s, %s)",
            (now, now),
        )
    result = copy(
        written,
        "--from",
        pg_url,
        "--from-password-env",
        pg_cluster.PASSWORD_ENV,
        "--to",
        str(tmp_path / "t.sqlite3"),
    )
    assert result.returncode == 2
    assert "1 engine" in result.stderr and "running" in result.stderr
    assert not (tmp_path / "t.sqlite3").exists()


def test_a_source_at_an_older_schema_is_refused_with_the_way_forward(make_tracker, tmp_path):
    tracker = make_tracker({})
    conn = sqlite3.connect(tracker.location.path, isolation_level=None)
    migrations.migrate(conn, tracker.location.path, target=2)
    conn.close()
    before = tracker.location.path.read_bytes()
    result = copy(tracker, "--to", str(tmp_path / "t.sqlite3"))
    assert result.returncode == 2
    assert "schema version 2" in result.stderr and "mrt-engine migrate" in result.stderr
    assert tracker.location.path.read_bytes() == before


def test_a_store_is_not_copied_onto_itself(written):
    result = copy(written, "--to", f"sqlite:///{written.location.path}")
    assert result.returncode == 2 and "same store" in result.stderr


def test_a_nul_character_sqlite_holds_reaches_postgresql_as_u_fffd(gh_tracker, github, pg_url):
    tracker = gh_tracker({"sources": {"github": {"monitor": {"pulls": False}}}})
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "DeepSeek nul", body="ab", at=T0 + timedelta(minutes=1))
    tracker.once()
    # A store an older mrt-engine wrote: SQLite held U+0000 as it came (text.storable now
    # replaces it on every backend); PostgreSQL's text cannot hold one.
    tracker.sql("UPDATE event SET title = ? WHERE title = ?", "DeepSeek \x00 nul", "DeepSeek nul")

    result = to_pg(tracker, pg_url)

    assert result.returncode == 0, result.stderr
    assert "1 row held U+0000 in a text" in result.stdout
    target = parse_location(pg_url, password_env=pg_cluster.PASSWORD_ENV)
    with postgres.connect_raw(target) as conn:
        titles = [t for (t,) in conn.execute("SELECT title FROM event ORDER BY id")]
    assert titles == ["seed", "DeepSeek \ufffd nul"]
