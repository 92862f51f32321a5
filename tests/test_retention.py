"""Retention: the store forgets poll metrics, unmatched events' raw JSON and sent deliveries'
attempts after their time, in small batches, and never what dedupe, trace or a retry needs."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pg_cluster
import pytest
from conftest import wait_until

from mrt_engine.batch import commit_events
from mrt_engine.events import TrackerEvent
from mrt_engine.rules import RuleConfig, RuleSet
from mrt_engine.store.db import Store, open_store
from mrt_engine.timeutil import to_store, utcnow

# The suite runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
RULES = [
    RuleConfig(name="qwen", keywords=["qwen"]),
    RuleConfig(name="docs", keywords=["[doc]"], action="tag", tags=["docs"]),
]


def policy(**overrides):
    from mrt_engine.store.retention import RetentionPolicy

    return RetentionPolicy(**{"pause_seconds": 0, **overrides})


def event(title: str, n: int, observed: datetime) -> TrackerEvent:
    return TrackerEvent(
        source="github",
        source_key="github:vllm-project/vllm:issues",
        resource_type="repo_issue",
        resource_id="vllm-project/vllm",
        event_type="issue_opened",
        event_id=str(n),
        title=title,
        summary=f"{title}, in short",
        body=f"{title}, in short, and a longer body that rules read too",
        url=f"https://github.com/vllm-project/vllm/issues/{n}",
        occurred_at=observed,
        observed_at=observed,
        raw={"number": n, "state": "open"},
    )


def add_events(store: Store, titles_at: list[tuple[str, datetime]]) -> dict[str, int]:
    """Events written the way a poll writes them; their ids by title."""
    rules = RuleSet.compile(RULES, ["welink"])
    base = store.db.execute_sql("SELECT COUNT(*) FROM event").fetchone()[0]
    for offset, (title, at) in enumerate(titles_at, start=1):
        with store.write():
            commit_events(store, [event(title, base + offset, at)], rules, at)
    rows = store.db.execute_sql("SELECT title, id FROM event").fetchall()
    return dict(rows)


def deliver(store: Store, event_id: int, status: str, attempts: list[tuple[datetime, str]]):
    """The event's delivery as the outbox leaves it: ``status`` after ``attempts``."""
    db = store.db
    (delivery_id,) = db.execute_sql(
        "SELECT d.id FROM delivery d JOIN alert a ON a.id = d.alert_id WHERE a.event_id = ?",
        (event_id,),
    ).fetchone()
    sent_at = attempts[-1][0] if status == "sent" else None
    with store.write():
        db.execute_sql(
            "UPDATE delivery SET status = ?, attempts = ?, sent_at = ?, last_error = ?"
            " WHERE id = ?",
            (
                status,
                len(attempts),
                to_store(sent_at),
                None if status == "sent" else "HTTP 503",
                delivery_id,
            ),
        )
        for at, outcome in attempts:
            db.execute_sql(
                "INSERT INTO attempt (delivery_id, started_at, finished_at, duration_ms, outcome,"
                " http_status, reply, error) VALUES (?, ?, ?, 20, ?, ?, ?, ?)",
                (
                    delivery_id,
                    to_store(at),
                    to_store(at + SECOND),
                    outcome,
                    200 if outcome == "sent" else 503,
                    "ok" if outcome == "sent" else "busy",
                    None if outcome == "sent" else "HTTP 503",
                ),
            )
    return delivery_id


def add_metrics(store: Store, key: str, starts: list[datetime]) -> None:
    with store.write():
        for at in starts:
            store.db.execute_sql(
                "INSERT INTO poll_metric (source_key, started_at, finished_at, duration_ms,"
                " outcome) VALUES (?, ?, ?, 5, 'not_modified')",
                (key, to_store(at), to_store(at + SECOND)),
            )


def seed(store: Store, now: datetime = NOW, margin: timedelta = SECOND) -> dict[str, int]:
    """A store with rows on both sides of every retention (30, 30 and 90 days before ``now``),
    ``margin`` from its edge (wide enough, for a command run later, to stay on its side)."""
    old, young = now - 30 * DAY - margin, now - 30 * DAY + margin
    for key in ("github:a:issues", "github:b:issues"):
        add_metrics(store, key, [now - 31 * DAY, old, young, now - DAY])
    ids = add_events(
        store,
        [
            ("old plain", old),  # unmatched, old: its raw goes
            ("old Qwen sent long ago", now - 200 * DAY),  # matched: everything stays
            ("old [Doc] tagged", old),  # a tag rule matched it: raw stays
            ("young plain", young),  # unmatched, young: raw stays
            ("Qwen sent lately", now - 100 * DAY),
            ("Qwen dead", now - 300 * DAY),
            ("Qwen retrying", now - 200 * DAY),
            ("Qwen sent then resent", now - 200 * DAY),
        ],
    )
    sent_old = now - 90 * DAY - margin
    ids["delivery sent long ago"] = deliver(
        store,
        ids["old Qwen sent long ago"],
        "sent",
        [(sent_old - 60 * SECOND, "failed"), (sent_old, "sent")],
    )
    ids["delivery sent lately"] = deliver(
        store, ids["Qwen sent lately"], "sent", [(now - 90 * DAY + margin, "sent")]
    )
    ids["delivery dead"] = deliver(
        store,
        ids["Qwen dead"],
        "dead",
        [(now - 300 * DAY + i * SECOND, "failed") for i in range(3)],
    )
    ids["delivery retrying"] = deliver(
        store, ids["Qwen retrying"], "retrying", [(now - 200 * DAY, "failed")]
    )
    ids["delivery resent"] = deliver(
        store, ids["Qwen sent then resent"], "pending", [(now - 199 * DAY, "sent")]
    )
    add_answers(
        store,
        [
            ("unused long", now - 60 * DAY, old),  # its last use is past 30 days: it goes
            ("used lately", now - 60 * DAY, young),  # old, but asked for again: it stays
            ("new", now - DAY, now - DAY),
        ],
    )
    return ids


def add_answers(store: Store, answers: list[tuple[str, datetime, datetime]]) -> None:
    """Answers of the optional AI: (text, created, last used)."""
    with store.write():
        for text, created, used in answers:
            store.db.execute_sql(
                "INSERT INTO ai_cache (task, model, content_hash, result, tokens, created_at,"
                " used_at) VALUES ('summary', 'qwen3-8b', ?, ?, 10, ?, ?)",
                (
                    hashlib.sha256(text.encode()).hexdigest(),
                    text,
                    to_store(created),
                    to_store(used),
                ),
            )


def table(store: Store, query: str, *params) -> list[tuple]:
    return list(store.db.execute_sql(query, params).fetchall())


@pytest.fixture
def store(backend, store_location):
    s = open_store(store_location)
    yield s
    s.close()


def data_version(path: Path, probe: sqlite3.Connection) -> tuple[int, str]:
    """The store's ``data_version`` as ``probe`` sees it, and a hash of its files' bytes."""
    digest = hashlib.sha256()
    for suffix in ("", "-wal"):
        file = Path(str(path) + suffix)
        if file.exists():
            digest.update(file.read_bytes())
    return probe.execute("PRAGMA data_version").fetchone()[0], digest.hexdigest()


@contextmanager
def unchanged(location) -> Iterator[None]:
    """Asserts that nothing was written to the store meanwhile. SQLite: its ``data_version``
    and its files' bytes; PostgreSQL: the change notifications the console's watch counts, and
    every table's rows."""
    if location.is_sqlite:
        with closing(sqlite3.connect(location.path)) as probe:
            before = data_version(location.path, probe)
            yield
            assert data_version(location.path, probe) == before
        return
    from mrt_engine.store import postgres
    from mrt_engine.store.watch import PgStoreWatch

    def rows() -> dict[str, list]:
        with closing(postgres.connect_raw(location)) as conn:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
                )
            ]
            return {n: sorted(map(repr, conn.execute(f'SELECT * FROM "{n}"'))) for n in names}

    watch = PgStoreWatch(location)
    try:
        version, before = watch.version(), rows()
        yield
        assert rows() == before
        threading.Event().wait(0.2)  # a notification arrives a moment after its commit
        assert watch.version() == version
    finally:
        watch.close()


def counter(location):
    """``count(where)``: poll_metric rows, read on a connection of its own (as the console's,
    while an engine has the store)."""
    if location.is_sqlite:

        def count(where: str) -> int:
            with closing(sqlite3.connect(location.path, timeout=15)) as db:
                return db.execute(f"SELECT COUNT(*) FROM poll_metric WHERE {where}").fetchone()[0]

        return count
    from mrt_engine.store import postgres

    def count_pg(where: str) -> int:
        with closing(postgres.connect_raw(location)) as db:
            return db.execute(f"SELECT COUNT(*) FROM poll_metric WHERE {where}").fetchone()[0]

    return count_pg


# ---------------------------------------------------------------------- what is pruned
def test_prune_deletes_exactly_the_rows_past_their_retention(store):
    from mrt_engine.store.retention import prune

    ids = seed(store)
    metrics_before = table(store, "SELECT id, started_at FROM poll_metric ORDER BY id")
    events_before = table(store, "SELECT * FROM event ORDER BY id")
    hits_before = table(store, "SELECT * FROM rule_hit ORDER BY id")
    alerts_before = table(store, "SELECT * FROM alert ORDER BY id")
    deliveries_before = table(store, "SELECT * FROM delivery ORDER BY id")
    attempts_before = table(store, "SELECT id, delivery_id FROM attempt ORDER BY id")

    report = prune(store, policy(), NOW)

    assert {p.table: p.rows for p in report.parts} == {
        "poll_metric": 4,
        "event": 1,
        "attempt": 2,
        "notice_group": 0,
        "ai_cache": 1,
    }
    cutoff = to_store(NOW - 30 * DAY)
    assert table(store, "SELECT id, started_at FROM poll_metric ORDER BY id") == [
        m for m in metrics_before if m[1] >= cutoff
    ]
    # Every event row stays (its fingerprint is the dedupe); only the old unmatched one's raw goes.
    events_after = table(store, "SELECT * FROM event ORDER BY id")
    raw_at = [d[0] for d in store.db.execute_sql("SELECT * FROM event").description].index("raw")
    assert [e[:raw_at] + e[raw_at + 1 :] for e in events_after] == [
        e[:raw_at] + e[raw_at + 1 :] for e in events_before
    ]
    cleared = {e[0] for e in events_after if e[raw_at] is None}
    assert cleared == {ids["old plain"]}
    (body,) = table(store, "SELECT body FROM event WHERE id = ?", ids["old plain"])[0]
    assert body.startswith("old plain, in short, and a longer body")  # what rules read stays
    assert table(store, "SELECT * FROM rule_hit ORDER BY id") == hits_before
    assert table(store, "SELECT * FROM alert ORDER BY id") == alerts_before
    assert table(store, "SELECT * FROM delivery ORDER BY id") == deliveries_before
    # Attempts go only with a delivery sent more than 90 days ago; unsent ones keep theirs.
    assert table(store, "SELECT id, delivery_id FROM attempt ORDER BY id") == [
        a for a in attempts_before if a[1] != ids["delivery sent long ago"]
    ]
    [(action, after)] = table(store, "SELECT action, after FROM audit")
    assert action == "prune"
    assert json.loads(after) == {
        "poll_metric": 4,
        "event": 1,
        "attempt": 2,
        "notice_group": 0,
        "ai_cache": 1,
    }
    assert [r for (r,) in table(store, "SELECT result FROM ai_cache ORDER BY id")] == [
        "used lately",
        "new",
    ]


def test_a_second_prune_changes_nothing(store):
    from mrt_engine.store.retention import prune

    seed(store)
    prune(store, policy(), NOW)
    with unchanged(store.location):
        report = prune(store, policy(), NOW)
    assert [p.rows for p in report.parts] == [0, 0, 0, 0, 0]
    assert report.batches == 0


def test_a_dry_run_counts_what_a_prune_would_do_and_changes_nothing(store):
    from mrt_engine.store.retention import prune

    seed(store)
    with unchanged(store.location):
        dry = prune(store, policy(batch_rows=1), NOW, dry_run=True)
    real = prune(store, policy(), NOW)
    assert [(p.table, p.rows) for p in dry.parts] == [(p.table, p.rows) for p in real.parts]
    assert dry.dry_run and dry.batches == 0


def test_prune_in_batches_of_a_few_rows_does_the_same(store):
    from mrt_engine.store.retention import prune

    seed(store)
    add_metrics(store, "github:c:issues", [NOW - 40 * DAY + i * SECOND for i in range(9)])
    report = prune(store, policy(batch_rows=2), NOW)
    assert {p.table: p.rows for p in report.parts} == {
        "poll_metric": 13,
        "event": 1,
        "attempt": 2,
        "notice_group": 0,
        "ai_cache": 1,
    }
    assert report.largest_batch_rows == 2
    assert report.batches >= 7 + 1 + 1  # fewer rows a batch when one holds the store too long
    assert table(
        store, "SELECT COUNT(*) FROM poll_metric WHERE started_at < ?", to_store(NOW - 30 * DAY)
    ) == [(0,)]


def test_events_are_walked_from_where_the_last_prune_ended(store):
    """A daily prune reads the events that aged since the last one, not the whole history: an
    event the last prune decided on is not read again (its raw stays even when it would go)."""
    from mrt_engine.store.retention import prune

    ids = seed(store)
    prune(store, policy(), NOW)
    with store.write():  # a raw that came back behind the mark is not looked at again
        store.db.execute_sql("UPDATE event SET raw = '{}' WHERE id = ?", (ids["old plain"],))
    add_events(store, [("plain, aged since", NOW + DAY - 30 * DAY - SECOND)])
    report = prune(store, policy(), NOW + DAY)
    assert {p.table: p.rows for p in report.parts}["event"] == 2  # and "young plain", aged
    cleared = table(store, "SELECT title FROM event WHERE raw IS NULL ORDER BY id")
    assert cleared == [("young plain",), ("plain, aged since",)]
    assert table(store, "SELECT raw FROM event WHERE id = ?", ids["old plain"]) == [("{}",)]


def test_an_event_stored_out_of_time_order_is_pruned_and_the_mark_waits_for_the_young(store):
    """Ids follow the time events were stored, except when they do not (a clock set back, a
    store built by a script): the walk goes past young events and the mark stops at the first."""
    from mrt_engine.store.retention import prune

    ids = seed(store)
    late = add_events(store, [("old plain, stored late", NOW - 60 * DAY)])
    report = prune(store, policy(), NOW)
    assert {p.table: p.rows for p in report.parts}["event"] == 2
    cleared = table(store, "SELECT title FROM event WHERE raw IS NULL ORDER BY id")
    assert cleared == [("old plain",), ("old plain, stored late",)]
    assert ids["young plain"] < late["old plain, stored late"]
    marks = table(store, "SELECT job, through_id FROM retention_mark")
    assert marks == [("event_raw", ids["young plain"] - 1)]


def test_an_event_a_replay_matches_meanwhile_keeps_its_raw(store):
    """The write re-checks what the read found: a rule hit that arrived in between keeps it."""
    from mrt_engine.store import retention

    ids = seed(store)
    found = retention.UnmatchedRaw(NOW - 30 * DAY)
    ids_found, _, _ = found.find(store, 0, 100, lambda: False)
    assert ids_found == [ids["old plain"]]
    with store.write():
        store.db.execute_sql(
            "INSERT INTO rule_hit (event_id, rule, action, reason, evaluated_at)"
            " VALUES (?, 'new', 'notify', 'replayed', ?)",
            (ids["old plain"], to_store(NOW)),
        )
        assert found.apply(store.db, ids_found, ids_found[-1]) == 0
    assert table(store, "SELECT raw IS NOT NULL FROM event WHERE id = ?", ids["old plain"]) == [
        (1,)
    ]


def test_an_old_item_seen_again_after_its_raw_was_pruned_is_not_news(gh_tracker, github, welink):
    """The fingerprint row outlives its raw: an item polled again (a cursor moved back) is known."""
    from mrt_engine.store.retention import prune

    github.add_issue("vllm-project/vllm", "seed", at=utcnow() - timedelta(hours=2))
    tracker = gh_tracker()
    tracker.once()
    github.add_issue("vllm-project/vllm", "A plain bug", at=utcnow() - timedelta(hours=1))
    tracker.once()
    with tracker.store() as store:
        report = prune(store, policy(), utcnow() + 40 * DAY)
    assert {p.table: p.rows for p in report.parts}["event"] == 2  # the seed and the bug
    assert tracker.sql("SELECT COUNT(*) FROM event WHERE raw IS NOT NULL") == [(0,)]
    before = tracker.sql("SELECT id, fingerprint FROM event ORDER BY id")
    since = (utcnow() - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    reset = tracker.cli("cursor", "reset", "github:vllm-project/vllm:issues", "--to", since)
    assert reset.returncode == 0, reset.stderr
    assert tracker.once(later=40 * 86400) == 0
    assert tracker.sql("SELECT id, fingerprint FROM event ORDER BY id") == before
    assert welink.texts() == []


# ---------------------------------------------------------------------- the engine's daily prune
def test_the_engine_prunes_in_batches_lets_polls_commit_between_them_and_stops_on_shutdown(
    gh_tracker, github
):
    github.add_issue("vllm-project/vllm", "seed", at=utcnow() - timedelta(hours=1))
    tracker = gh_tracker(
        {
            "sources": {"github": {"poll_interval_seconds": 1}},
            "retention": {"interval_seconds": 1, "batch_rows": 2, "pause_seconds": 0.01},
        }
    )
    old = utcnow() - 40 * DAY
    with tracker.store() as store:
        add_metrics(store, "github:gone:issues", [old + i * SECOND for i in range(2000)])

    count = counter(tracker.location)  # another connection: the engine has the store

    def remaining() -> int:
        return count("source_key = 'github:gone:issues'")

    def polls() -> int:
        return count("source_key != 'github:gone:issues'")

    engine = tracker.engine()
    engine.start()
    try:
        assert wait_until(lambda: remaining() < 2000, timeout=30)  # the first prune runs
        polled = polls()
        # News for the next poll, which commits it (an idle poll's times wait for the flush).
        github.add_issue("vllm-project/vllm", "news", at=utcnow())
        assert wait_until(lambda: polls() > polled, timeout=30)  # a poll commits meanwhile
        assert remaining() > 0  # ... between two batches of the prune
    finally:
        engine.stop()
    left = remaining()
    assert left > 0  # the stop ended the prune half-way
    report = engine.last_prune
    assert report is not None and report.stopped
    assert report.largest_batch_rows <= 2
    assert report.parts[0].rows == 2000 - left
    assert report.batches >= (2000 - left) // 2
    assert not any(t.name.startswith("retention") and t.is_alive() for t in threading.enumerate())
    assert wait_until(lambda: remaining() == left, timeout=0.5)  # nothing runs on


def test_retention_can_be_turned_off(gh_tracker, github):
    github.add_issue("vllm-project/vllm", "seed", at=utcnow() - timedelta(hours=1))
    tracker = gh_tracker({"retention": {"enabled": False, "interval_seconds": 1}})
    with tracker.store() as store:
        add_metrics(store, "github:gone:issues", [utcnow() - 40 * DAY])
    engine = tracker.engine()
    engine.start()
    try:
        assert not wait_until(lambda: engine.last_prune is not None, timeout=2.5)
    finally:
        engine.stop()
    assert tracker.sql("SELECT COUNT(*) FROM poll_metric WHERE source_key LIKE '%gone%'") == [(1,)]


# ---------------------------------------------------------------------- the command line
@pytest.fixture
def seeded(make_tracker):
    """A config whose store holds rows on both sides of every retention, as of now: ten
    minutes from each edge, as the commands run seconds later (one second was too close for a
    command started on a busy machine: a young row had turned old)."""
    tracker = make_tracker({})
    with tracker.store() as store:
        seed(store, utcnow(), margin=timedelta(minutes=10))
    return tracker


def test_store_prune_dry_run_prints_per_table_what_it_would_do(seeded):
    with unchanged(seeded.location):
        result = seeded.cli("store", "prune", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("dry run: nothing was changed")
    assert any(
        line.split()[:3] == ["poll_metric", "would", "delete"] and " 4 " in line for line in lines
    )
    assert any(line.split()[:2] == ["event", "would"] and " 1 " in line for line in lines)
    assert any(line.split()[:2] == ["attempt", "would"] and " 2 " in line for line in lines)
    assert any(
        line.split()[:3] == ["ai_cache", "would", "delete"] and " 1 AI answers not used" in line
        for line in lines
    )


def test_store_prune_prints_what_it_did_and_json_says_it_too(seeded):
    result = seeded.cli("store", "prune", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["dry_run"] is False
    assert {p["table"]: p["rows"] for p in data["parts"]} == {
        "poll_metric": 4,
        "event": 1,
        "attempt": 2,
        "notice_group": 0,
        "ai_cache": 1,
    }
    again = seeded.cli("store", "prune")
    assert again.returncode == 0, again.stderr
    assert "nothing to prune" in again.stdout


def test_trace_says_when_a_sent_deliverys_attempts_were_pruned(seeded):
    assert seeded.cli("store", "prune").returncode == 0
    result = seeded.cli("trace", "https://github.com/vllm-project/vllm/issues/2")
    assert result.returncode == 0, result.stderr
    assert "sent, 2 attempts" in result.stdout
    assert (
        "attempts not kept: the delivery was sent longer ago than retention.sent_attempts_days"
        in result.stdout
    )


@pytest.mark.sqlite_only
def test_store_stats_counts_rows_and_bytes_of_every_table(seeded):
    result = seeded.cli("store", "stats", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    tables = {t["table"]: t for t in data["tables"]}
    assert tables["event"]["rows"] == 8 and tables["poll_metric"]["rows"] == 8
    assert tables["attempt"]["rows"] == 8 and tables["delivery"]["rows"] == 5
    assert all(t["bytes"] > 0 for t in tables.values())
    assert tables["event"]["index_bytes"] > 0
    file = data["file"]
    assert file["bytes"] == seeded.db.stat().st_size
    with closing(sqlite3.connect(seeded.db)) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    # Every page is a table's, an index's or free: the figures add up to the database.
    assert (
        sum(t["bytes"] + t["index_bytes"] for t in tables.values()) + file["free_bytes"]
        == pages * size
    )
    assert "wal_bytes" in file
    text = seeded.cli("store", "stats")
    assert text.returncode == 0, text.stderr
    assert any(line.split()[:2] == ["event", "8"] for line in text.stdout.splitlines())
    assert "free" in text.stdout and "wal" in text.stdout


@pytest.mark.sqlite_only
def test_store_vacuum_gives_the_space_of_pruned_rows_back_and_waits_for_no_engine(
    make_tracker,
):
    tracker = make_tracker({})
    with tracker.store() as store:
        add_metrics(
            store, "github:gone:issues", [utcnow() - 40 * DAY + i * SECOND for i in range(3000)]
        )
    assert tracker.cli("store", "prune").returncode == 0
    before = tracker.db.stat().st_size
    engine = tracker.engine()
    engine.open()
    try:
        refused = tracker.cli("store", "vacuum")
    finally:
        engine.close()
    assert refused.returncode == 2
    assert "another mrt-engine is already running" in refused.stderr
    result = tracker.cli("store", "vacuum")
    assert result.returncode == 0, result.stderr
    assert tracker.db.stat().st_size < before
    assert "vacuumed" in result.stdout


@pytest.mark.postgresql_only
def test_store_stats_on_postgresql_counts_rows_and_the_servers_bytes_of_every_table(seeded):
    result = seeded.cli("store", "stats", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    tables = {t["table"]: t for t in data["tables"]}
    assert tables["event"]["rows"] == 8 and tables["poll_metric"]["rows"] == 8
    assert tables["attempt"]["rows"] == 8 and tables["delivery"]["rows"] == 5
    assert tables["event_search"]["rows"] == 8  # the search index is a table here
    assert {"source_state", "engine_instance", "retention_mark", "mrt_schema"} <= set(tables)
    assert all(t["bytes"] > 0 for t in tables.values() if t["rows"])
    assert tables["event"]["index_bytes"] > 0 and tables["event_search"]["index_bytes"] > 0
    assert data["file"] is None
    # The tables and their indexes are part of the database (with its catalogs).
    assert sum(t["bytes"] + t["index_bytes"] for t in tables.values()) < data["database_bytes"]
    text = seeded.cli("store", "stats")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"store {seeded.location.display()}: database ")
    assert any(line.split()[:2] == ["event", "8"] for line in lines)
    assert pg_cluster.PASSWORD not in text.stdout + result.stdout


@pytest.mark.postgresql_only
def test_store_vacuum_on_postgresql_says_it_is_autovacuums_job(seeded):
    result = seeded.cli("store", "vacuum")
    assert result.returncode == 2
    assert "autovacuum" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------- config
def test_retention_has_defaults_and_bounds(tmp_path):
    from mrt_engine.config import ConfigError, validate

    retention = validate({}).retention
    assert (retention.poll_metrics_days, retention.unmatched_raw_days) == (30, 30)
    assert retention.sent_attempts_days == 90 and retention.interval_seconds == 86400
    for key, value, problem in (
        ("unmatched_raw_days", 0, "retention.unmatched_raw_days: must be >= 1, got 0"),
        ("sent_attempts_days", 1e6, "retention.sent_attempts_days: must be <= 36500"),
        ("interval_seconds", 0.5, "retention.interval_seconds: must be >= 1, got 0.5"),
        ("batch_rows", 0, "retention.batch_rows: must be >= 1, got 0"),
        (
            "poll_metric_days",
            7,
            'retention.poll_metric_days: unknown key (did you mean "poll_metrics_days"?)',
        ),
    ):
        with pytest.raises(ConfigError) as info:
            validate({"retention": {key: value}})
        assert info.value.problems[0].startswith(problem), info.value.problems


def test_an_ai_answer_asked_for_again_is_kept_and_one_no_one_asks_for_goes(store):
    from mrt_engine.ai.client import AiClient
    from mrt_engine.ai.settings import AiConfig
    from mrt_engine.simulators.openai_compat import OpenAICompatSimulator
    from mrt_engine.store.retention import prune

    def ask(text: str):
        return [{"role": "user", "content": text}]

    with OpenAICompatSimulator(api_key=None) as llm:
        config = AiConfig(enabled=True, base_url=llm.base_url, model="qwen3-8b")
        then = AiClient(config, store, clock=lambda: NOW - 40 * DAY)
        for text in ("asked again", "asked once"):
            assert then.chat("summary", ask(text), timeout=5, max_tokens=50) is not None
        then.close()
        later = AiClient(config, store, clock=lambda: NOW - 2 * DAY)
        again = later.chat("summary", ask("asked again"), timeout=5, max_tokens=50)
        later.close()
        assert again is not None and again.cached and len(llm.chat_requests()) == 2
    report = prune(store, policy(), NOW)
    assert {p.table: p.rows for p in report.parts}["ai_cache"] == 1
    [(result,)] = table(store, "SELECT result FROM ai_cache")
    assert "asked again" in result
