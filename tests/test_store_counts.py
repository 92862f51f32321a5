"""Outbox and rule-hit counts: kept by the store itself, right after every kind of write, and
read without counting the delivery or rule_hit tables."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import timedelta

import pytest
from console_data import NOW, build, event, write_config

from mrt_engine import operations
from mrt_engine.batch import commit_events
from mrt_engine.components import compile_rules
from mrt_engine.config import load_config
from mrt_engine.delivery.outbox import Outbox, OutboxPolicy
from mrt_engine.notify.base import SendResult
from mrt_engine.store import feed, queries
from mrt_engine.store.db import open_store
from mrt_engine.store.models import Delivery
from mrt_engine.timeutil import from_store, to_store

# The suite runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends

LATER = NOW + timedelta(hours=1)


class Other:
    """A second plain connection to the store, committing each statement (what another
    process, or an operator's sqlite3 or psql shell, would write with); ``?`` marks on both."""

    def __init__(self, location) -> None:
        self.location = location
        if location.is_postgresql:
            from mrt_engine.store import postgres

            self.conn = postgres.connect_raw(location)
        else:
            self.conn = sqlite3.connect(location.path, isolation_level=None)

    def execute(self, sql: str, params: tuple = ()):
        if self.location.is_postgresql:
            from mrt_engine.store.postgres import qmark_sql

            return self.conn.execute(qmark_sql(sql), params)
        return self.conn.execute(sql, params)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def store_and_other(tmp_path, backend, store_state):
    """The store of the console's fixed data, and a second plain connection to it."""
    state = store_state if backend == "postgresql" else None
    config = load_config(build(tmp_path, state=state))
    store = open_store(config.store_location)
    other = Other(config.store_location)
    yield store, other, config
    other.close()
    store.close()


def truth(conn: Other, now) -> tuple[dict, dict]:
    """The counts as a full GROUP BY of the tables says they are."""
    outbox: dict[str, dict[str, int]] = {"*": {s: 0 for s in queries.STATUSES}}
    for channel, status, n in conn.execute(
        "SELECT channel, status, COUNT(*) FROM delivery GROUP BY channel, status"
    ):
        outbox.setdefault(channel, {s: 0 for s in queries.STATUSES})[status] = n
        outbox["*"][status] = outbox["*"].get(status, 0) + n
    hour, day = to_store(now - timedelta(hours=1)), to_store(now - timedelta(days=1))
    hits = {
        rule: (in_hour, in_day, total, from_store(last))
        for rule, in_hour, in_day, total, last in conn.execute(
            "SELECT rule, SUM(CASE WHEN evaluated_at >= ? THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN evaluated_at >= ? THEN 1 ELSE 0 END), COUNT(*),"
            " MAX(evaluated_at) FROM rule_hit GROUP BY rule",
            (hour, day),
        )
    }
    return outbox, hits


def assert_counts_right(store, other, now=LATER) -> None:
    with store.read():
        outbox = queries.outbox_counts()
        stats = feed.rule_stats(now)
        channels = feed.channel_names()
    expected_outbox, expected_hits = truth(other, now)
    assert outbox == expected_outbox
    assert channels == sorted(set(expected_outbox) - {"*"})
    assert {
        s.rule: (s.last_hour, s.last_day, s.total, s.last_hit) for s in stats.values()
    } == expected_hits


def test_counts_stay_right_through_engine_workers_operations_and_other_connections(
    store_and_other,
):
    store, other, config = store_and_other
    assert_counts_right(store, other)  # the engine's commits (and the backfill of a new store)
    actor, clock = "test", lambda: LATER

    # The engine: another poll's events, hits, alerts and outbox rows.
    with store.write():
        commit_events(
            store,
            [event(20, "[Model] DeepSeek-V4"), event(21, "[Bug] Qwen3 OOM")],
            compile_rules(config),
            NOW,
        )
    assert_counts_right(store, other)

    # The delivery workers: claims that fail (retrying, then dead) and succeed (sent).
    outbox = Outbox(store, owner="w", policy=OutboxPolicy(max_attempts=2), clock=clock)
    for result in (SendResult(ok=False, error="503"), SendResult(ok=True)):
        for claim in outbox.claim("welink", limit=3):
            outbox.complete(claim, result, 12)
            assert_counts_right(store, other)
    outbox.policy.max_attempts = 1
    for claim in outbox.claim("welink", limit=10):
        outbox.complete(claim, SendResult(ok=False, error="503"), 12)
    assert_counts_right(store, other)

    # Operations: resend one delivery, requeue the dead, resend an event to a new channel, replay.
    with store.read():
        dead = [d.id for d in Delivery.select().where(Delivery.status == "dead")]
        sent = Delivery.get(Delivery.status == "sent").id
    assert len(dead) >= 2
    operations.resend_delivery(store, dead[0], actor=actor, clock=clock)
    assert_counts_right(store, other)
    operations.requeue_dead(store, actor=actor, clock=clock)
    assert_counts_right(store, other)
    operations.resend_delivery(store, sent, actor=actor, clock=clock)
    operations.resend_event(store, 3, "welink", channels=["welink"], actor=actor, clock=clock)
    assert_counts_right(store, other)
    torch = [{"name": "torch", "keywords": ["torch"], "priority": 5}]  # a new rule: replay hits
    rules = compile_rules(
        load_config(write_config(config.path.parent, extra_rules=torch, state=config_state(config)))
    )
    operations.replay(
        store,
        rules,
        since=NOW - timedelta(days=1),
        actor=actor,
        clock=clock,
    )
    assert_counts_right(store, other)

    # Another connection: hand-written statements of every kind.
    other.execute("UPDATE delivery SET status = 'sent' WHERE status = 'pending'")
    other.execute("UPDATE delivery SET channel = 'email' WHERE id = (SELECT MIN(id) FROM delivery)")
    other.execute("UPDATE delivery SET attempts = attempts + 1")  # not a counted column
    assert_counts_right(store, other)
    other.execute("DELETE FROM attempt WHERE delivery_id = (SELECT MAX(id) FROM delivery)")
    other.execute("DELETE FROM delivery WHERE id = (SELECT MAX(id) FROM delivery)")
    assert_counts_right(store, other)
    other.execute(
        "INSERT INTO rule_hit (event_id, rule, action, reason, evaluated_at)"
        " VALUES (1, 'by-hand', 'notify', 'typed', ?)",
        (to_store(LATER),),
    )
    other.execute("UPDATE rule_hit SET rule = 'renamed' WHERE rule = 'qwen'")
    assert_counts_right(store, other)
    other.execute("DELETE FROM rule_hit WHERE rule = 'renamed'")
    other.execute("DELETE FROM delivery WHERE id NOT IN (SELECT delivery_id FROM attempt)")
    assert_counts_right(store, other)


def config_state(config) -> dict:
    """The config's ``state`` section, as written."""
    return json.loads(config.path.read_text())["state"]


_FROM = re.compile(r'(?:FROM|JOIN)\s+"(\w+)"(?:\s+AS\s+"(\w+)")?', re.IGNORECASE)


@pytest.mark.sqlite_only  # PostgreSQL's plans: tests/test_query_plans_pg.py (a bigger store)
def test_counts_and_channel_names_read_no_full_table_of_deliveries_or_rule_hits(
    store_and_other, store_statements
):
    store, other, _config = store_and_other
    statements = store_statements
    with store.read():
        queries.outbox_counts()
        feed.rule_stats(NOW)
        feed.channel_names()  # the console's channels when attached by the store's path only
    assert statements
    for sql, params in statements:
        names = {alias or table: table for table, alias in _FROM.findall(sql)}
        for row in other.execute(f"EXPLAIN QUERY PLAN {sql}", params):
            detail = row[-1]
            if detail.startswith("SCAN "):
                scanned = names.get(detail.split()[1], detail.split()[1])
                assert scanned not in ("delivery", "rule_hit", "event"), (sql, detail)
