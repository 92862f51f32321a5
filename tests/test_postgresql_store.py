"""The store on PostgreSQL: its schema, versions, URL and password, and its change watch.

Against the run's real PostgreSQL cluster (tests/pg_cluster.py); skipped with the reason where
PostgreSQL is not installed, a failure in CI.
"""

from __future__ import annotations

import sqlite3
import threading

import pg_cluster
import pytest

from mrt_engine.config import ConfigError, load_config
from mrt_engine.store import migrations, postgres
from mrt_engine.store.db import StoreError, open_store
from mrt_engine.store.location import StoreUrlError, parse_location
from mrt_engine.store.watch import watch_store

pytestmark = pytest.mark.both_backends


@pytest.fixture
def pg(backend, store_location):
    assert backend == "postgresql"
    return store_location


def tables_and_columns_sqlite(path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'event_search%'"
            )
        ]
        return {n: [c[1] for c in conn.execute(f"PRAGMA table_info({n})")] for n in names}
    finally:
        conn.close()


def tables_and_columns_pg(location) -> dict[str, list[str]]:
    with postgres.connect_raw(location) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name NOT IN ('mrt_schema', 'event_search')"
            " ORDER BY table_name, ordinal_position"
        ).fetchall()
    found: dict[str, list[str]] = {}
    for table, column in rows:
        # The counters are views over appended deltas there (no hot rows between engines).
        if not table.endswith("_delta"):
            found.setdefault(table, []).append(column)
    return found


@pytest.mark.postgresql_only
def test_a_new_postgresql_store_has_the_sqlite_schema_at_the_latest_version(pg, tmp_path):
    store = open_store(pg)
    try:
        assert store.found_version == 0 and store.shared
    finally:
        store.close()
    assert postgres.pending(pg) == (migrations.LATEST, migrations.LATEST)
    lite = open_store(tmp_path / "s.sqlite3")
    lite.close()
    # Same tables, same columns in the same order (batch inserts rows by position).
    assert tables_and_columns_pg(pg) == tables_and_columns_sqlite(tmp_path / "s.sqlite3")


@pytest.mark.postgresql_only
def test_engines_starting_together_migrate_once(pg):
    errors: list[BaseException] = []
    found: list[int] = []

    def migrate() -> None:
        try:
            with postgres.connect_raw(pg) as conn:
                found.append(postgres.migrate(conn, pg))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(found) == [0, migrations.LATEST, migrations.LATEST, migrations.LATEST]


@pytest.mark.postgresql_only
def test_a_postgresql_store_from_a_newer_version_is_refused_untouched(pg):
    store = open_store(pg)
    store.close()
    with postgres.connect_raw(pg) as conn:
        conn.execute("UPDATE mrt_schema SET version = %s", (migrations.LATEST + 1,))
    with pytest.raises(StoreError, match="upgrade mrt-engine") as caught:
        open_store(pg)
    assert "\n" not in str(caught.value)
    with postgres.connect_raw(pg) as conn:
        assert conn.execute("SELECT version FROM mrt_schema").fetchone()[0] == migrations.LATEST + 1


@pytest.mark.postgresql_only
def test_an_empty_database_is_no_store_for_queries(pg):
    with pytest.raises(StoreError, match="no store at postgresql://"):
        open_store(pg, create=False)


@pytest.mark.postgresql_only
def test_the_password_comes_from_its_variable_and_is_never_shown(pg, monkeypatch):
    monkeypatch.delenv(pg_cluster.PASSWORD_ENV)
    with pytest.raises(StoreError, match=f"{pg_cluster.PASSWORD_ENV} is not set"):
        open_store(pg)
    monkeypatch.setenv(pg_cluster.PASSWORD_ENV, "wrong-" + pg_cluster.PASSWORD)
    with pytest.raises(StoreError) as caught:
        open_store(pg)
    message = str(caught.value)
    assert "password authentication failed" in message
    assert pg_cluster.PASSWORD not in message and "\n" not in message
    assert message.startswith(f"cannot open the store {pg.display()}")


def test_a_password_in_the_url_is_refused_with_where_it_belongs(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"state": {"url": "postgresql://mrt:hunter2@db.example/mrt"}}')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "state.url" in str(caught.value) and "password_env" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "url, where",
    [
        ("sqlite:///rel/s.sqlite3", "/cfg/rel/s.sqlite3"),
        ("sqlite:////abs/s.sqlite3", "/abs/s.sqlite3"),
        ("postgresql://mrt@db:5433/tracker", "postgresql://mrt@db:5433/tracker"),
        (
            "postgres://mrt@/tracker?host=/run/postgresql",
            "postgresql://mrt@/run/postgresql/tracker",
        ),
    ],
)
def test_store_urls_name_sqlite_files_and_postgresql_databases(url, where):
    from pathlib import Path

    assert parse_location(url, base=Path("/cfg")).display() == where


@pytest.mark.parametrize(
    "url",
    ["mysql://x/y", "postgresql://db/", "postgresql://db/x?sslmod=require", "sqlite://x.db"],
)
def test_unusable_store_urls_are_one_clear_line(url):
    with pytest.raises(StoreUrlError) as caught:
        parse_location(url)
    assert "\n" not in str(caught.value)


def test_the_store_watch_says_changed_only_after_a_commit(backend, store_location):
    """SQLite: PRAGMA data_version; PostgreSQL: the triggers' notifications, read off the socket
    without a query. Either way: unchanged store, same answer; a commit elsewhere, a new one."""
    store = open_store(store_location)
    watch = watch_store(store)
    try:
        first = watch.version()
        assert first is not None and watch.version() == first
        # a commit by another connection (another process would do the same)
        if backend == "postgresql":
            with postgres.connect_raw(store_location) as conn:
                conn.execute(
                    "INSERT INTO audit (at, actor, action, target) VALUES ('t', 'a', 'b', 'c')"
                )
        else:
            with sqlite3.connect(store_location.path) as conn:
                conn.execute(
                    "INSERT INTO audit (at, actor, action, target) VALUES ('t', 'a', 'b', 'c')"
                )
        for _ in range(50):  # a notification arrives a moment after the commit
            now = watch.version()
            if now != first:
                break
            threading.Event().wait(0.02)
        assert now is not None and now != first
        assert watch.version() == now
    finally:
        watch.close()
        store.close()


def test_statements_that_change_no_row_leave_the_store_watch_unchanged(backend, store_location):
    """An engine's periodic sweeps (claims of gone engines, retention's re-checked batches)
    often match nothing: the console must not read the store again for them."""
    store = open_store(store_location)
    watch = watch_store(store)
    if backend == "postgresql":
        other = postgres.connect_raw(store_location)
    else:
        other = sqlite3.connect(store_location.path, isolation_level=None)
    try:
        other.execute(
            "INSERT INTO quarantine (source_key, item_key, error, first_seen_at, last_seen_at)"
            " VALUES ('k', 'i', 'e', 't', 't')"
        )
        threading.Event().wait(0.3)  # a notification arrives a moment after its commit
        first = watch.version()
        for statement in (
            "UPDATE delivery SET lease_owner = NULL WHERE lease_owner IS NOT NULL",
            "UPDATE attempt SET outcome = 'interrupted' WHERE outcome = 'in_flight'",
            "DELETE FROM poll_metric WHERE id < 0",
            "INSERT INTO audit (at, actor, action, target) SELECT at, actor, action, target"
            " FROM audit WHERE id < 0",
            "INSERT INTO quarantine (source_key, item_key, error, first_seen_at, last_seen_at)"
            " VALUES ('k', 'i', 'e', 't', 't') ON CONFLICT (source_key, item_key) DO NOTHING",
        ):
            other.execute(statement)
        threading.Event().wait(0.3)
        assert watch.version() == first
        other.execute("UPDATE quarantine SET times = times + 1")  # a change: seen
        threading.Event().wait(0.3)
        assert watch.version() != first
    finally:
        other.close()
        watch.close()
        store.close()


@pytest.mark.postgresql_only
def test_the_watch_of_a_restarted_connection_says_it_cannot_tell_then_recovers(pg):
    store = open_store(pg)
    watch = watch_store(store)
    try:
        first = watch.version()
        assert first is not None
        with postgres.connect_raw(pg) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND query LIKE 'LISTEN%'"
            )
        answers = [watch.version() for _ in range(20) if not threading.Event().wait(0.05)]
        assert None in answers  # "don't know": the console reads again
        assert answers[-1] is not None and answers[-1] != first  # a new connection, new numbers
    finally:
        watch.close()
        store.close()


def test_an_unreachable_postgresql_is_one_line_and_exit_2(make_tracker):
    tracker = make_tracker({"state": {"url": "postgresql://mrt@127.0.0.1:9/none"}})
    result = tracker.cli("status")
    assert result.returncode == 2
    assert result.stderr.count("\n") <= 1 and "Traceback" not in result.stderr
    assert "postgresql://mrt@127.0.0.1:9/none" in result.stderr


@pytest.mark.postgresql_only
def test_a_connection_the_server_dropped_is_replaced_after_the_statement_that_met_it(pg):
    """A PostgreSQL restart or failover drops every connection: the statement that meets the
    break fails (its poll or send is recorded as failed and retried); the next ones work."""
    from mrt_engine.store.models import Audit
    from mrt_engine.timeutil import utcnow

    store = open_store(pg)
    try:
        with store.write():
            Audit.create(at=utcnow(), actor="a", action="before", target="x")
        with postgres.connect_raw(pg) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(Exception) as caught, store.write():
            Audit.create(at=utcnow(), actor="a", action="during", target="x")
        assert store.fault(caught.value) is not None  # a store fault: one line, not a bug
        with store.write():
            Audit.create(at=utcnow(), actor="a", action="after", target="x")
        assert [a.action for a in Audit.select().order_by(Audit.id)] == ["before", "after"]
    finally:
        store.close()


@pytest.mark.postgresql_only
def test_check_and_status_name_the_postgresql_store_without_its_password(make_tracker):
    tracker = make_tracker({})
    checked = tracker.cli("check")
    assert checked.returncode == 0, checked.stderr
    assert f"store    {tracker.location.display()}" in checked.stdout
    assert tracker.once() == 0
    status = tracker.cli("status")
    assert status.returncode == 0 and f"store {tracker.location.display()}" in status.stdout
    tracker.env[pg_cluster.PASSWORD_ENV] = "not-the-password"
    refused = tracker.cli("check")
    assert refused.returncode == 2
    assert "password authentication failed" in refused.stderr
    for result in (checked, status, refused):
        assert pg_cluster.PASSWORD not in result.stdout + result.stderr
        assert "not-the-password" not in result.stdout + result.stderr


@pytest.mark.postgresql_only
def test_commits_that_count_the_same_rules_in_opposite_orders_do_not_deadlock(pg):
    """Two engines' polls hit rules A, B and B, A; two workers move deliveries between
    statuses in opposite orders. With one counter row per key their row locks deadlocked
    (PostgreSQL aborted one commit); the counters are appended deltas there, so both commit,
    and the counts stay exact through folds."""
    store = open_store(pg)
    store.close()
    now = "2026-12-01T00:00:00.000000Z"
    with postgres.connect_raw(pg) as setup:
        setup.execute(
            "INSERT INTO event (id, fingerprint, source, source_key, resource_type,"
            " resource_id, event_type, event_id, title, observed_at) VALUES"
            " (1, 'f1', 's', 'k', 'r', 'r', 't', '1', 'x', %s)",
            (now,),
        )
    first, second = postgres.connect_raw(pg), postgres.connect_raw(pg)
    try:
        for conn in (first, second):
            conn.execute("BEGIN")
        hit = (
            "INSERT INTO rule_hit (event_id, rule, action, reason, evaluated_at)"
            " VALUES (1, %s, 'notify', 'r', %s)"
        )
        first.execute(hit, ("rule-a", now))
        second.execute(hit, ("rule-b", now))
        done: list[str] = []

        def finish(conn, rule: str) -> None:
            conn.execute(hit, (rule, now))
            conn.execute("COMMIT")
            done.append(rule)

        other = threading.Thread(target=finish, args=(second, "rule-a"))
        other.start()
        finish(first, "rule-b")
        other.join(30)
        assert sorted(done) == ["rule-a", "rule-b"]
    finally:
        first.close()
        second.close()
    store = open_store(pg)
    try:
        counts = dict(store.db.execute_sql("SELECT rule, n FROM rule_hit_count").fetchall())
        assert counts == {"rule-a": 2, "rule-b": 2}
        store.fold_counters()
        rows = store.db.execute_sql("SELECT COUNT(*) FROM rule_hit_count_delta").fetchone()[0]
        assert rows == 2
        assert dict(store.db.execute_sql("SELECT rule, n FROM rule_hit_count").fetchall()) == counts
    finally:
        store.close()


def test_a_title_holding_u0000_is_stored_with_u_fffd_and_does_not_block_its_source(
    gh_tracker, github
):
    """PostgreSQL's text cannot hold U+0000: stored as it came, such a title failed every poll
    of its source there. Both backends now store U+FFFD in its place (text.storable)."""
    github.add_issue("vllm-project/vllm", "seed")
    tracker = gh_tracker({"sources": {"github": {"monitor": {"pulls": False}}}})
    assert tracker.once() == 0
    github.add_issue("vllm-project/vllm", "DeepSeek \x00 support")
    assert tracker.once() == 0
    titles = [r[0] for r in tracker.sql("SELECT title FROM event WHERE baseline = 0")]
    assert titles == ["DeepSeek \ufffd support"]
    assert tracker.sql("SELECT last_error FROM source_state") == [(None,)]


def test_a_job_runs_on_one_engine_at_a_time(backend, store_location):
    """Retention on a shared store: one engine prunes, the others skip that round. (SQLite has
    one engine per store: always its turn.)"""
    import subprocess
    import sys

    store = open_store(store_location)
    try:
        with store.only_one("retention") as mine:
            assert mine
            # Another engine (another process) asks meanwhile.
            code = (
                "import sys, os\n"
                "from mrt_engine.store.db import open_store\n"
                "from mrt_engine.store.location import parse_location\n"
                f"loc = parse_location({str(store_location.path or '')!r} or {_url(store_location)!r},"
                f" password_env={store_location.password_env!r})\n"
                "s = open_store(loc)\n"
                "with s.only_one('retention') as mine: print(mine)\n"
                "s.close()\n"
            )
            other = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
            )
            assert other.returncode == 0, other.stderr
            assert other.stdout.strip() == ("False" if backend == "postgresql" else "True")
        with store.only_one("retention") as again:
            assert again  # let go at the end
    finally:
        store.close()


def _url(location) -> str:
    p = location.params
    return f"postgresql://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}" if p else ""
