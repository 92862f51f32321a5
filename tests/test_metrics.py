"""Metrics (issue 12): what each poll and each send records, and `mrt-engine metrics`.

A poll's row in ``poll_metric`` holds its answers by status class (2xx, 304, 4xx, 5xx: every try,
a retried one too), its retries and the rate-limit budget left; an idle-polls row sums them. An
attempt records whether a failed send was temporary or permanent and whether it made a dead
letter. ``mrt-engine metrics`` sums them per source and per channel since a time.
"""

from __future__ import annotations

import json
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest

from mrt_engine.simulators.base import Fault

# The suite runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends

REPO = "vllm-project/vllm"
KEY = f"github:{REPO}:issues"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
ISSUES_ONLY = {"sources": {"github": {"monitor": {"pulls": False}}}}
COUNTS = "http_requests, http_2xx, http_304, http_4xx, http_5xx, http_retries, rate_limit_remaining"


def settled(gh_tracker, github, extra=None):
    """A tracker whose source took its baseline and holds an ETag: its next poll is a 304."""
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker({**ISSUES_ONLY, **(extra or {})})
    assert tracker.once() == 0
    assert tracker.once() == 0
    return tracker


def last_metric(tracker) -> tuple:
    return tracker.sql(
        f"SELECT outcome, polls, {COUNTS} FROM poll_metric WHERE source_key = ?"
        " ORDER BY id DESC LIMIT 1",
        KEY,
    )[0]


def test_a_poll_records_its_answers_by_status_class_its_retries_and_the_budget_left(
    gh_tracker, github
):
    tracker = settled(gh_tracker, github)
    github.add_issue(REPO, "DeepSeek V4 support")
    github.inject(Fault(503, path=f"/repos/{REPO}/issues"))
    assert tracker.once() == 0
    outcome, polls, requests, h2xx, h304, h4xx, h5xx, retries, budget = last_metric(tracker)
    assert (outcome, polls) == ("ok", 1)
    assert (h5xx, retries) == (1, 1)  # the 503, then the same request again
    assert h2xx >= 1 and h4xx == 0 and h304 == 0
    assert requests == h2xx + h5xx
    assert budget == github.remaining


def test_a_refused_request_counts_as_a_4xx_without_a_retry(gh_tracker, github):
    tracker = settled(gh_tracker, github)
    github.inject(Fault(404, path=f"/repos/{REPO}/issues"))
    assert tracker.once() == 1
    outcome, _, requests, h2xx, h304, h4xx, h5xx, retries, _ = last_metric(tracker)
    assert outcome == "error"
    assert (requests, h4xx, retries, h2xx, h304, h5xx) == (1, 1, 0, 0, 0, 0)


def test_idle_polls_sum_their_answers_in_their_one_row(gh_tracker, github):
    tracker = settled(gh_tracker, github)
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        assert [engine.poll_source(source).status for _ in range(4)] == ["not_modified"] * 4
    finally:
        engine.close()  # stopping flushes the held polls
    outcome, polls, requests, h2xx, h304, h4xx, h5xx, retries, budget = last_metric(tracker)
    assert (outcome, polls, requests, h304, h2xx, h4xx, h5xx, retries) == (
        "not_modified",
        4,
        4,
        4,
        0,
        0,
        0,
        0,
    )
    assert budget == github.remaining  # the latest reading


def attempts(tracker) -> list[tuple]:
    return tracker.sql("SELECT outcome, failure, delivery_status FROM attempt ORDER BY id")


def test_a_failed_send_records_whether_it_was_temporary_and_whether_it_made_a_dead_letter(
    gh_tracker, github, welink
):
    tracker = settled(gh_tracker, github, {"delivery": {"max_attempts": 2}})
    github.add_issue(REPO, "DeepSeek thing")
    welink.inject(Fault(503, path="/api/werobot", times=5))
    tracker.once()
    tracker.once(later=0.3)
    assert attempts(tracker) == [
        ("failed", "temporary", "retrying"),
        ("failed", "temporary", "dead"),
    ]


def test_a_send_refused_for_good_is_a_permanent_failure_and_a_dead_letter(
    gh_tracker, github, welink
):
    tracker = settled(gh_tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    welink.inject(
        Fault(200, '{"code": "58601", "data": null, "message": "param error"}', path="/api/werobot")
    )
    tracker.once()
    github.add_issue(REPO, "Qwen thing")
    tracker.once()
    assert attempts(tracker) == [("failed", "permanent", "dead"), ("sent", None, "sent")]


# ---------------------------------------------------------------------- mrt-engine metrics
def test_the_metrics_command_sums_polls_per_source_and_sends_per_channel(
    gh_tracker, github, welink
):
    tracker = settled(gh_tracker, github, {"delivery": {"max_attempts": 2}})
    github.add_issue(REPO, "DeepSeek thing")
    github.inject(Fault(502, path=f"/repos/{REPO}/issues"))
    welink.inject(Fault(503, path="/api/werobot", times=2))
    tracker.once()
    tracker.once(later=0.3)  # the retry: dead after its second attempt
    github.add_issue(REPO, "Qwen thing")
    tracker.once(later=0.6)

    done = tracker.cli("metrics", "--json", "--since", "1h")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (source,) = report["sources"]
    rows = tracker.sql(
        "SELECT SUM(polls), SUM(http_requests), SUM(http_2xx), SUM(http_304), SUM(http_5xx),"
        " SUM(http_retries), SUM(events_new) FROM poll_metric WHERE source_key = ?",
        KEY,
    )[0]
    polls, requests, h2xx, h304, h5xx, retries, new = (int(n) for n in rows)
    assert source["source_key"] == KEY
    assert sum(source["polls"].values()) == polls == 5
    assert (source["http_requests"], source["http_2xx"], source["http_304"]) == (
        requests,
        h2xx,
        h304,
    )
    assert (source["http_5xx"], source["http_retries"]) == (h5xx, retries) == (1, 1)
    assert source["events_new"] == new >= 3  # the seed, and the two issues
    assert source["rate_limit_remaining"] == github.remaining
    (channel,) = report["channels"]
    assert channel == {
        "channel": "welink",
        "sends": 3,
        "successes": 1,
        "temporary_failures": 2,
        "permanent_failures": 0,
        "dead_letters": 1,
        "queue_depth": 0,
        "oldest_pending_seconds": None,
    }

    table = tracker.cli("metrics", "--since", "1h")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert any(line.startswith(KEY) and line.split()[1] == "5" for line in lines)
    assert any(line.split()[:7] == ["welink", "3", "1", "2", "0", "1", "0"] for line in lines)


def test_the_metrics_command_counts_only_what_happened_since_the_time_given(gh_tracker, github):
    tracker = settled(gh_tracker, github)
    report = json.loads(tracker.cli("metrics", "--json", "--since", "all").stdout)
    assert sum(report["sources"][0]["polls"].values()) == 2
    later = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = json.loads(tracker.cli("metrics", "--json", "--since", later).stdout)
    assert report["sources"][0]["polls"] == {}


def test_the_metrics_command_shows_the_queue_and_the_age_of_its_oldest_delivery(
    gh_tracker, github, welink
):
    tracker = settled(gh_tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    welink.inject(Fault(503, path="/api/werobot", times=5))
    tracker.once()  # polled, sent once, retrying
    report = json.loads(tracker.cli("metrics", "--json").stdout)
    (channel,) = report["channels"]
    assert channel["queue_depth"] == 1
    assert 0 <= channel["oldest_pending_seconds"] < 600


def test_a_wrong_since_is_one_line_and_exit_2(gh_tracker, github):
    tracker = settled(gh_tracker, github)
    done = tracker.cli("metrics", "--since", "yesterday-ish")
    assert done.returncode == 2
    assert "--since" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_schema_7_adds_the_columns_to_an_existing_store(tmp_path):
    """A store of schema 6 gains the columns with their defaults; old rows read as zero."""
    import sqlite3

    from mrt_engine.store import migrations
    from mrt_engine.store.db import open_store

    path = tmp_path / "old.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        migrations.migrate(conn, path, target=6)
        conn.execute(
            "INSERT INTO poll_metric (source_key, started_at, finished_at, duration_ms, outcome)"
            " VALUES ('k', '2026-11-20T08:00:00.000000Z', '2026-11-20T08:00:01.000000Z', 5, 'ok')"
        )
        conn.commit()
    store = open_store(path)
    try:
        row = store.db.execute_sql(f"SELECT {COUNTS} FROM poll_metric").fetchone()
        assert row == (0, 0, 0, 0, 0, 0, None)
        cols = [r[1] for r in store.db.execute_sql("PRAGMA table_info(attempt)").fetchall()]
        assert {"failure", "delivery_status"} <= set(cols)
    finally:
        store.close()
