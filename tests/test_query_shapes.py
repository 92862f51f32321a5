"""Queries reshaped to read an index (issue 9 item 5) answer what the plain ones answered.

Each is compared with the obvious answer computed in Python over every row; their plans are
checked by tests/test_query_plans.py.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import console_data
import pytest
from console_data import NOW

from mrt_engine import operations
from mrt_engine.components import compile_rules
from mrt_engine.config import load_config
from mrt_engine.delivery import STATUSES
from mrt_engine.delivery.outbox import Outbox
from mrt_engine.store import feed, migrations, queries
from mrt_engine.store.db import Store, open_store
from mrt_engine.store.models import Delivery, Event
from mrt_engine.timeutil import to_store

CHANNELS = ("welink", "email")


@pytest.fixture
def store(tmp_path: Path):
    """The console's store with a second channel: 8 deliveries, every status on both channels."""
    config = console_data.build(tmp_path)
    store = open_store(load_config(config).db_path)
    try:
        events = [d.alert.event_id for d in Delivery.select().order_by(Delivery.id)]
        for event_id in events:
            operations.resend_event(
                store, event_id, "email", channels=list(CHANNELS), actor="t", clock=lambda: NOW
            )
        statuses = ["dead", "sent", "pending", "retrying"]
        with store.write():
            for i, row in enumerate(Delivery.select().where(Delivery.channel == "email")):
                Delivery.update(status=statuses[i % 4]).where(Delivery.id == row.id).execute()
        yield store
    finally:
        store.close()


def every_delivery() -> list[tuple[int, str, str]]:
    return [(d.id, d.status, d.channel) for d in Delivery.select().order_by(Delivery.id)]


@pytest.mark.parametrize("status", [None, *STATUSES])
@pytest.mark.parametrize("channel", [None, *CHANNELS, "slack"])
def test_an_outbox_page_is_every_matching_row_newest_first(store, status, channel):
    rows = every_delivery()
    matching = [
        i
        for i, s, c in rows
        if (status is None or s == status) and (channel is None or c == channel)
    ]
    newest_first = matching[::-1]
    assert [d.id for d in queries.deliveries(status, channel)] == newest_first
    assert [d.id for d in feed.delivery_rows(status, channel)] == newest_first
    # Paging both ways, two rows at a time.
    for bound in [r[0] for r in rows] + [0, 10_000]:
        older = [i for i in newest_first if i < bound][:2]
        newer = [i for i in matching if i > bound][:2][::-1]
        assert [
            d.id for d in feed.delivery_rows(status, channel, before_id=bound, limit=2)
        ] == older
        assert [d.id for d in feed.delivery_rows(status, channel, after_id=bound, limit=2)] == newer


def test_an_outbox_page_carries_its_event(store):
    [row] = queries.deliveries("dead", "welink")
    event = Event.get_by_id(Delivery.get_by_id(row.id).alert.event_id)
    assert (row.title, row.fingerprint, row.source_key) == (
        event.title,
        event.fingerprint,
        event.source_key,
    )


def test_the_channels_are_those_with_deliveries(store):
    assert feed.channel_names() == ["email", "welink"]
    assert queries.delivery_channels("pending") == ["email", "welink"]
    with store.write():
        Delivery.update(status="sent").where(Delivery.channel == "email").execute()
    assert queries.delivery_channels("pending") == ["welink"]


def test_a_fingerprint_prefix_in_any_case_finds_its_events_and_only_those(store):
    events = list(Event.select().order_by(Event.id))
    for event in events:
        for prefix in (event.fingerprint[:6], event.fingerprint[:12].upper(), event.fingerprint):
            expected = [e.id for e in events if e.fingerprint.startswith(prefix.lower())]
            assert [e.id for e in queries.find_events(prefix)] == expected
    # The prefix that ends in the last hex digit, and one no fingerprint has.
    assert queries.find_events("ffffffff") == [
        e for e in events if e.fingerprint.startswith("ffffffff")
    ]


def queue(store: Store, rows: dict[int, dict]) -> None:
    with store.write():
        Delivery.update(status="sent").execute()
        for delivery_id, values in rows.items():
            Delivery.update(
                status=values.get("status", "pending"),
                priority=values.get("priority", 0),
                next_attempt_at=values.get("due", NOW - timedelta(minutes=1)),
                lease_owner=values.get("lease"),
                lease_expires_at=NOW + timedelta(minutes=1) if values.get("lease") else None,
            ).where(Delivery.id == delivery_id).execute()


def test_a_claim_takes_the_highest_priority_then_the_earliest_due_then_the_oldest(store):
    welink = [i for i, _, c in every_delivery() if c == "welink"]
    email = [i for i, _, c in every_delivery() if c == "email"]
    a, b, c, d = welink
    queue(
        store,
        {
            a: {"priority": 5, "due": NOW - timedelta(minutes=1)},
            b: {"priority": 5, "due": NOW - timedelta(minutes=2), "status": "retrying"},
            c: {"priority": 9, "due": NOW + timedelta(minutes=1)},  # not due yet
            d: {"priority": 9, "lease": "another-engine"},  # being sent
            email[0]: {"priority": 99},  # another channel's
        },
    )
    outbox = Outbox(store, owner="me", clock=lambda: NOW)
    assert outbox.next_due("welink") == NOW - timedelta(minutes=2)
    assert [claim.delivery_id for claim in outbox.claim("welink", limit=10)] == [b, a]
    assert outbox.claim("welink") == []
    assert outbox.next_due("slack") is None


def test_equal_priority_and_due_time_are_claimed_oldest_first(store):
    welink = [i for i, _, c in every_delivery() if c == "welink"]
    queue(store, {i: {"priority": 1} for i in welink})
    outbox = Outbox(store, owner="me", clock=lambda: NOW)
    assert [claim.delivery_id for claim in outbox.claim("welink", limit=10)] == welink


def test_release_and_recover_take_back_every_lease(store):
    welink = [i for i, _, c in every_delivery() if c == "welink"]
    queue(store, {welink[0]: {"lease": "me"}, welink[1]: {"lease": "gone", "status": "retrying"}})
    Outbox(store, owner="me", clock=lambda: NOW).release()
    leases = {d.id: d.lease_owner for d in Delivery.select() if d.lease_owner}
    assert leases == {welink[1]: "gone"}
    Outbox(store, owner="other", clock=lambda: NOW).recover()
    assert Delivery.select().where(Delivery.lease_owner.is_null(False)).count() == 0


def test_a_replay_window_holds_the_events_that_happened_in_it(store, tmp_path):
    # Some sources give no time: their events count from when they were observed.
    events = list(Event.select().order_by(Event.id))
    with store.write():
        for n, event in enumerate(events):
            observed = NOW - timedelta(hours=n)
            occurred = None if n % 3 == 0 else observed - timedelta(days=n % 2)
            Event.update(observed_at=observed, occurred_at=occurred).where(
                Event.id == event.id
            ).execute()
    (tmp_path / "rules").mkdir()
    rules = compile_rules(load_config(console_data.write_config(tmp_path / "rules")))
    events = list(Event.select().order_by(Event.id))
    for since_h, until_h in [(30, None), (5, None), (30, 2), (3, 1), (1000, 999)]:
        since = NOW - timedelta(hours=since_h)
        until = None if until_h is None else NOW - timedelta(hours=until_h)
        inside = [
            e.id
            for e in events
            if (e.occurred_at or e.observed_at) >= since
            and (until is None or (e.occurred_at or e.observed_at) <= until)
        ]
        plan, work = operations.plan_replay(rules, since=since, until=until)
        assert plan.scanned == len(inside), (since_h, until_h)
        assert [row.id for row, _, _ in work] == [
            i for i in inside if i in {r.id for r, _, _ in work}
        ]


def test_a_schema_2_store_gets_the_outbox_indexes_and_keeps_its_rows(tmp_path):
    path = tmp_path / "s.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.migrate(conn, path, target=2)
    now = to_store(NOW)
    conn.execute(
        "INSERT INTO event (fingerprint, source, source_key, resource_type, resource_id,"
        " event_type, event_id, title, observed_at) VALUES ('ab', 's', 'k', 'r', 'i', 't', 'e',"
        " 'x', ?)",
        (now,),
    )
    conn.execute("INSERT INTO alert (event_id, created_at) VALUES (1, ?)", (now,))
    conn.execute(
        "INSERT INTO delivery (alert_id, channel, next_attempt_at, created_at, updated_at)"
        " VALUES (1, 'welink', ?, ?, ?)",
        (now, now, now),
    )
    conn.close()
    store = open_store(path)
    try:
        indexes = {
            r[0] for r in store.db.execute_sql("SELECT name FROM sqlite_master WHERE type='index'")
        }
        assert {
            "delivery_status_channel",
            "delivery_queue",
            "delivery_queue_due",
            "delivery_leased",
        } <= indexes
        assert "delivery_due" not in indexes
        assert [d.channel for d in queries.deliveries("pending")] == ["welink"]
        assert Outbox(store, owner="me", clock=lambda: NOW).next_due("welink") == NOW
    finally:
        store.close()
