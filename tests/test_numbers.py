"""Numbers from upstreams, from the store and from the command line never overflow a time, a
sleep or a query: an absurd value is a clear error or is held to a bound, never a traceback."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mrt_engine import cli, timeutil
from mrt_engine.config import ConfigError, validate
from mrt_engine.simulators.base import Fault
from mrt_engine.store.db import open_store

REPO = "vllm-project/vllm"
ISSUES = f"github:{REPO}:issues"


@pytest.fixture
def watched(gh_tracker, github):
    github.add_issue(REPO, "seed", at=datetime(2026, 11, 20, 8, 0, tzinfo=UTC))
    tracker = gh_tracker(
        {
            "sources": {"github": {"monitor": {"pulls": False}}},
            "http": {"max_retries": 0},  # a rate limit fails the poll at once, with no wait
        }
    )
    assert tracker.once() == 0
    return tracker


def last_error(tracker) -> tuple[int, str]:
    return tracker.sql(
        "SELECT consecutive_failures, last_error FROM source_state WHERE source_key = ?", ISSUES
    )[0]


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "99999999999999999999"},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1e308"},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "-1e308"},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "inf"},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "nan"},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "99999999999999"},
    ],
    ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()),
)
def test_an_absurd_rate_limit_header_is_a_rate_limit_not_an_overflow(watched, github, headers):
    body = json.dumps({"message": "API rate limit exceeded"})
    github.inject(Fault(429, body, headers, path="/repos/", times=10))
    assert watched.once() == 1
    failures, error = last_error(watched)
    assert failures == 1 and "rate limit" in error and "internal error" not in error
    (until,) = watched.sql("SELECT backoff_until FROM source_state WHERE source_key = ?", ISSUES)[0]
    assert until < "2027"  # held to a day or so, not to the year 5000


def test_a_source_that_failed_for_months_still_records_its_failures(watched, github):
    with watched.store() as store:
        store.db.execute_sql(
            "UPDATE source_state SET consecutive_failures = 5000 WHERE source_key = ?", (ISSUES,)
        )
    github.inject(Fault(500, path="/repos/", times=10))
    assert watched.once() == 1
    failures, error = last_error(watched)
    assert failures == 5001 and "500" in error


def test_doubling_holds_to_its_cap_for_any_count():
    assert [timeutil.doubling(5, n, 60) for n in (0, 1, 2, 3, 4)] == [5, 10, 20, 40, 60]
    assert timeutil.doubling(0.01, 10**6, 3600) == 3600
    assert timeutil.doubling(2_592_000, 1023, 2_592_000) == 2_592_000


@pytest.fixture
def stored(make_tracker):
    tracker = make_tracker({})
    open_store(tracker.db).close()
    return tracker


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["replay", "--since", "99999999999d", "--dry-run"], "--since: "),
        (["replay", "--since", "999999999w", "--dry-run"], "--since: "),
        (["diff", "--source", "x", "--since", "99999999999999999999h"], "--since: "),
        (["cursor", "reset", ISSUES, "--to", "9999999999d"], "--to: "),
        (["outbox", "--limit", "100000000000000000000"], "--limit: "),
        (["outbox", "--limit", "0"], "--limit: "),
    ],
)
def test_an_absurd_number_on_the_command_line_is_a_usage_error(capsys, stored, argv, problem):
    try:
        code = cli.main([*argv, "--config", str(stored.path)])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and problem in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["99999999999d", "9999999d", "9" * 400 + "s"])
def test_an_absurd_age_in_the_config_is_a_key_path_error(value):
    with pytest.raises(ConfigError) as info:
        validate({"sources": {"github": {"repos": ["a/b"], "first_run": value}}})
    assert any(p.startswith("sources.github.first_run: ") for p in info.value.problems)


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_an_upstream_time_beyond_the_calendar_is_no_time(text):
    assert timeutil.parse_upstream(text) is None


def test_a_time_to_come_is_never_shown_as_less_than_it_is():
    """A silence of 2 h made a few seconds ago ends "in 2h" (it showed "in 1h"); ages in the
    past still round down."""
    from datetime import UTC, datetime, timedelta

    from mrt_engine.timeutil import humanize_age

    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert humanize_age(now + timedelta(hours=2) - timedelta(seconds=5), now) == "in 2h"
    assert humanize_age(now + timedelta(seconds=61), now) == "in 2m"
    assert humanize_age(now + timedelta(seconds=30), now) == "in 30s"
    assert humanize_age(now + timedelta(hours=1), now) == "in 1h"
    assert humanize_age(now - timedelta(seconds=7190), now) == "1h ago"
