"""On PostgreSQL, the main queries read the big tables through their indexes.

The SQLite checks (tests/test_query_plans.py) read SQLite's ``EXPLAIN QUERY PLAN`` of every
public query on a small store. PostgreSQL's planner chooses by the table's size and statistics:
on a small table a sequential scan is the cheapest plan, so these checks run on a store big
enough for the choice to matter (tens of thousands of events written by the pipeline's own
``write_batch`` and ``incidents.assign``, deliveries in every status with their attempts, then ``ANALYZE``), and ask
``EXPLAIN`` of each statement the main query shapes run: the outbox claim and its due time, the
outbox by status, a trace by fingerprint prefix, URL and id, the status and rule counts, and the
Events search. No plan may read ``event``, ``rule_hit``, ``delivery`` or ``attempt`` whole.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pg_cluster
import pytest
from conftest import postgresql_address

from mrt_engine import incidents, metrics
from mrt_engine.batch import prepare_batch, write_batch
from mrt_engine.delivery.outbox import Outbox
from mrt_engine.delivery.policy import ChannelPolicy
from mrt_engine.events import TrackerEvent
from mrt_engine.notify.base import DigestSettings
from mrt_engine.rules import RuleConfig, RuleSet
from mrt_engine.store import (
    feed,
    health_figures,
    incident_queries,
    postgres,
    queries,
    retention,
)
from mrt_engine.store.db import Store, open_store
from mrt_engine.store.location import StoreLocation, parse_location
from mrt_engine.timeutil import to_store

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
EVENTS = 30_000
# (incident stays small: a row per model family per window, hundreds a year; the planner rightly
# scans a few rows. Its events, incident_event, grow with the alerts.)
BIG_TABLES = frozenset(
    {"event", "rule_hit", "delivery", "attempt", "event_search", "incident_event"}
)
RARE_WORD = "zyxquartz"  # in 5 titles of 30,000
CHANNELS = ["welink", "email"]
RULES = RuleSet.compile([RuleConfig(name="deepseek", keywords=["deepseek"])], CHANNELS)
WORDS = [
    "vllm",
    "sglang",
    "kernel",
    "cache",
    "scheduler",
    "moe",
    "rope",
    "fp8",
    "attention",
    "tokenizer",
    "crash",
    "fix",
]


def _events() -> Iterator[list[TrackerEvent]]:
    """The store's events, a poll's worth at a time: mostly GitHub issues and pull requests,
    a fifth about DeepSeek (matched, alerted to two channels), a few rare words and types."""
    rng = random.Random(10)
    keys = [
        *(
            ("github", f"github:org{i}/repo{i}:{kind}")
            for i in range(15)
            for kind in ("issues", "pulls")
        ),
        *(("huggingface", f"huggingface:org{i}:models") for i in range(5)),
        ("modelscope", "modelscope:Qwen:models"),
    ]
    batch: list[TrackerEvent] = []
    for n in range(1, EVENTS + 1):
        source, key = rng.choice(keys)
        if source == "github":
            kind = "pr_opened" if key.endswith("pulls") else "issue_opened"
        else:
            kind = "model_updated"
        if n % 1000 == 0:
            kind = "release_published"  # a rare type
        words = rng.sample(WORDS, 4)
        if rng.random() < 0.2:
            words.append("DeepSeek-V3")
        if n % 6000 == 0:
            words.append(RARE_WORD)
        batch.append(
            TrackerEvent(
                source=source,
                source_key=key,
                resource_type="repo_issue",
                resource_id=key.split(":")[1],
                event_type=kind,
                event_id=str(n),
                title=" ".join(words).capitalize() + f" #{n}",
                url=f"https://example.org/{key}/{n}",
                observed_at=_when(n),
                raw={"n": n},
            )
        )
        if len(batch) == 500:
            yield batch
            batch = []
    if batch:
        yield batch


def _when(n: int) -> datetime:
    """When the event ``n`` came: the store's events spread over the last 60 days."""
    return NOW - timedelta(days=60) * (EVENTS - n) / EVENTS


def _build(store: Store) -> None:
    for events in _events():  # as a poll writes them, incidents too (DeepSeek-V3 ones)
        batch = prepare_batch(events, RULES, events[-1].observed_at)
        with store.write():
            write_batch(store, batch)
            incidents.assign(store, batch)
    db = store.db
    with store.write():
        # Where the outbox stands after a while: most sent, some dead, a few waiting.
        db.execute_sql(
            "UPDATE delivery SET status = CASE WHEN id % 50 = 0 THEN 'dead'"
            " WHEN id % 50 = 1 THEN 'retrying' WHEN id % 50 IN (2, 3) THEN 'pending'"
            " ELSE 'sent' END, attempts = 1, sent_at = CASE WHEN id % 50 > 3 THEN ? END,"
            " next_attempt_at = ?",
            (to_store(NOW - timedelta(hours=1)), to_store(NOW - timedelta(minutes=1))),
        )
        db.execute_sql(
            "INSERT INTO attempt (delivery_id, started_at, finished_at, duration_ms, outcome,"
            " http_status) SELECT id, ?, ?, 40, CASE WHEN status = 'sent' THEN 'sent'"
            " ELSE 'failed' END, 200 FROM delivery WHERE status != 'pending'",
            (to_store(NOW - timedelta(hours=1)), to_store(NOW - timedelta(hours=1))),
        )
    db.execute_sql("ANALYZE")


def _settle(address: str, url: str) -> None:
    """VACUUM ANALYZE, as autovacuum would do some time after the build: the plans are then
    those of a store at rest, not of whichever state autovacuum had reached when a test ran
    (a search once took a sequential scan of event_search in CI, an index scan here)."""
    with pg_cluster.admin_connect(address, url.rsplit("/", 1)[1]) as conn:
        conn.execute("VACUUM ANALYZE")


@pytest.fixture(scope="module")
def big_store() -> Iterator[StoreLocation]:
    address = postgresql_address()
    url = pg_cluster.new_database(address, prefix="plans")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(pg_cluster.PASSWORD_ENV, pg_cluster.PASSWORD)
        location = parse_location(url, password_env=pg_cluster.PASSWORD_ENV)
        store = open_store(location)
        try:
            _build(store)
        finally:
            store.close()
        _settle(address, url)
        yield location
    pg_cluster.drop_database(address, url)


@pytest.fixture
def store(big_store: StoreLocation, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv(pg_cluster.PASSWORD_ENV, pg_cluster.PASSWORD)
    store = open_store(big_store)
    yield store
    store.close()


@dataclass
class Ran:
    sql: str
    params: tuple


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[Ran]:
    """Every statement the store's connections run (Peewee's and raw cursors' alike): they all
    go through the driver's cursor wrapper, which this records without changing."""
    found: list[Ran] = []
    execute = postgres.QmarkCursor.execute

    def recording(self, statement, params=None):
        found.append(Ran(statement, tuple(params or ())))
        return execute(self, statement, params)

    monkeypatch.setattr(postgres.QmarkCursor, "execute", recording)
    return found


def plan_of(location: StoreLocation, statement: Ran) -> dict | None:
    """PostgreSQL's plan of ``statement`` (JSON), or None for one that is not a query."""
    sql = statement.sql.strip()
    if not sql.upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
        return None
    if "?" in sql:
        sql = postgres.qmark_sql(sql)
    with closing(postgres.connect_raw(location)) as conn:
        row = conn.execute("EXPLAIN (FORMAT JSON) " + sql, statement.params or None).fetchone()
    found = row[0]
    return (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]


def nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def problems(location: StoreLocation, statements: list[Ran]) -> list[str]:
    """The statements whose plans read a big table whole."""
    found = []
    for statement in statements:
        plan = plan_of(location, statement)
        if plan is None:
            continue
        for node in nodes(plan):
            if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in BIG_TABLES:
                found.append(
                    f"{statement.sql} {statement.params}: Seq Scan on {node['Relation Name']}"
                )
    return found


def plans_text(location: StoreLocation, statements: list[Ran]) -> str:
    """The statements with the nodes of their plans, for a failure's message."""
    out = []
    for statement in statements:
        plan = plan_of(location, statement)
        if plan is not None:
            out.append(statement.sql[:200])
            out.extend(
                f"   {n['Node Type']} {n.get('Relation Name', '')} {n.get('Index Name', '')}"
                f" rows={n.get('Plan Rows')}"
                for n in nodes(plan)
            )
    return "\n".join(out)


_POLICIES = {
    "welink": ChannelPolicy(group_wait=30, group_interval=300, rate_per_minute=1),
    "email": ChannelPolicy(digest=DigestSettings(below_priority=100)),
}
SHAPES: dict[str, Callable[[Store], object]] = {
    "outbox claim": lambda s: Outbox(s, owner="plans", clock=lambda: NOW).claim("welink", limit=5),
    "outbox due": lambda s: Outbox(s, owner="plans", clock=lambda: NOW).next_due("email"),
    # Claims that group, fold (a rate of one a minute) and hold a digest (mrt_engine.delivery.bundles).
    "outbox claim, grouped and folded": lambda s: Outbox(
        s, owner="plans", clock=lambda: NOW, channels=_POLICIES
    ).claim("welink", limit=5),
    "outbox claim, digest": lambda s: Outbox(
        s, owner="plans", clock=lambda: NOW, channels=_POLICIES
    ).claim("email", limit=5),
    "outbox dead": lambda s: queries.deliveries("dead", None, 50),
    "outbox sent on welink": lambda s: queries.deliveries("sent", "welink", 50),
    "outbox pending, older page": lambda s: queries.deliveries("pending", None, 50, before_id=5000),
    "outbox newest": lambda s: feed.delivery_rows(),
    "trace prefix": lambda s: queries.trace(_fingerprint(s)[:8]),
    "trace fingerprint": lambda s: queries.trace(_fingerprint(s)),
    "trace url": lambda s: queries.trace("https://example.org/github:org3/repo3:issues/1203"),
    "trace delivery": lambda s: queries.trace("delivery:77"),
    "status counts": lambda s: queries.outbox_counts(),
    "channel names": lambda s: feed.channel_names(),
    "rule counts": lambda s: feed.rule_stats(NOW),
    "sources": lambda s: queries.source_states(),
    # The last half hour: the store's attempts all started an hour ago (a day would be all of
    # them, which the planner rightly reads whole); in a year's store a day is a small range.
    "metrics": lambda s: metrics.figures(s, NOW - timedelta(minutes=30), NOW),
    "prometheus scrape": lambda s: _scrape_twice(s),
    # The Health view's day: here all the attempts are an hour old, so the day is taken two
    # days on, when they are history (as most of a real store's are) and the day a small part.
    "health figures": lambda s: health_figures.health_figures(
        NOW + timedelta(days=2), channels=CHANNELS
    ),
    # ~4,000 events of five DeepSeek-V3 incidents: the latest incidents, 20 events of each.
    "incidents": lambda s: incident_queries.incidents(NOW, limit=20),
    "prune": lambda s: retention.prune(
        s, retention.RetentionPolicy(unmatched_raw_days=30, sent_attempts_days=1), NOW
    ),
}


def _scrape_twice(store: Store) -> None:
    """The exporter's first scrape (where its counting starts), and one that has the latest
    thousand rows of each followed table to count."""
    from mrt_engine.prometheus import StoreCollector

    collector = StoreCollector(lambda: store)
    with store.read():
        collector.follow(store)
        collector._polls.last -= 1000
        collector._attempts.last -= 1000
        collector.follow(store)
        collector.gauges(store)


def _fingerprint(store: Store) -> str:
    return store.db.execute_sql("SELECT fingerprint FROM event WHERE id = 12345").fetchone()[0]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_main_queries_read_no_big_table_whole(store, ran, shape):
    SHAPES[shape](store)
    assert ran
    assert problems(store.location, ran) == [], plans_text(store.location, ran)


SEARCHES = [
    RARE_WORD,
    "deepseek",
    "kernel cache",
    "fp",
    "type:release_published",
    "source:huggingface",
    "source:github:org3/*",
    "matched:yes",
    "deepseek type:pr_opened matched:yes",
    f"{RARE_WORD} source:github",
]


@pytest.mark.parametrize("query", SEARCHES)
def test_the_events_search_reads_no_big_table_whole(store, ran, query):
    with store.read():
        feed.event_rows(feed.EventFilter.parse(query))
        feed.event_rows(feed.EventFilter.parse(query), before_id=20_000)
        feed.event_rows(feed.EventFilter.parse(query), after_id=10_000)
    assert problems(store.location, ran) == [], plans_text(store.location, ran)


def test_a_rare_word_is_found_through_the_trigram_index(store, ran):
    with store.read():
        rows = feed.event_rows(feed.EventFilter.parse(RARE_WORD.upper()))
    assert [r.id for r in rows] == [30_000, 24_000, 18_000, 12_000, 6_000]
    assert all(RARE_WORD in r.title for r in rows)
    steps = [plan_of(store.location, r) for r in ran if "event_search" in r.sql]
    assert steps
    for plan in steps:
        found = {
            (n["Node Type"], n.get("Index Name") or n.get("Relation Name")) for n in nodes(plan)
        }
        assert ("Bitmap Index Scan", "event_search_title") in found, found
        assert not [n for n in found if n[0] == "Seq Scan"], found
