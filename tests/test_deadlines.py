"""Slow upstreams (issue 8, items 2 and 3): a request and a poll have a total deadline, a slow host
holds only its own poll workers, the configured timeout wins over a platform's default, and the
engine's stop cuts a slow request short. The upstreams are real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import GH_TOKEN, Tracker, wait_until
from hostile import HostileServer

from mrt_engine.config import HostPolicy, HttpConfig
from mrt_engine.http import HttpClient

REPO = "vllm-project/vllm"


@pytest.fixture
def make_tracker(make_tracker):
    """The shared fixture, with the GitHub token in the environment."""
    return lambda config, env=None: make_tracker(config, {"GH": GH_TOKEN, **(env or {})})


@pytest.fixture
def trickle():
    with HostileServer("trickle") as server:
        yield server


@pytest.fixture
def silent():
    with HostileServer("silent") as server:
        yield server


def issues_only(api_base: str, repos: list[str] | None = None) -> dict[str, Any]:
    return {
        "github": {
            "repos": repos or [REPO],
            "api_base": api_base,
            "token_env": "GH",
            "monitor": {"issues": True, "pulls": False, "releases": False},
        }
    }


def repoint(tracker: Tracker, api_base: str, **sections: dict[str, Any]) -> None:
    """Point the tracker's GitHub source at another upstream (same source key, same store)."""
    data = json.loads(tracker.path.read_text())
    data["sources"]["github"]["api_base"] = api_base
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    tracker.path.write_text(json.dumps(data))


def finishes(action: Callable[[], Any], within: float = 90.0) -> Any:
    """Run ``action`` in a thread; fail (instead of hanging the suite) if it does not return."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(action()), daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), f"still running after {within:.0f}s"
    return result[0]


def read_store(db: Path, query: str, *params: Any) -> list[tuple]:
    """Read the store with a plain connection (the engine under test holds the process binding)."""
    with sqlite3.connect(db, timeout=15) as conn:
        return conn.execute(query, params).fetchall()


def state(tracker: Tracker) -> tuple:
    return tracker.sql("SELECT cursor, last_error, consecutive_failures FROM source_state")[0]


# ---------------------------------------------------------------------- request and poll deadlines
def test_a_trickling_upstream_fails_the_poll_at_the_request_deadline_and_keeps_the_cursor(
    make_tracker, github, trickle
):
    github.add_issue(REPO, "seed")
    tracker = make_tracker({"sources": issues_only(github.url)})
    assert tracker.once() == 0
    cursor = state(tracker)[0]
    assert cursor
    repoint(tracker, trickle.url, http={"request_deadline_seconds": 2, "max_retries": 0})
    assert finishes(tracker.once) == 1
    after, error, failures = state(tracker)
    assert after == cursor and failures == 1
    assert "no complete answer within 2s" in error
    assert "http.request_deadline_seconds" in error
    assert "internal error" not in error
    metric = tracker.sql("SELECT outcome, error FROM poll_metric ORDER BY id DESC LIMIT 1")[0]
    assert metric == ("error", error)


def test_a_single_blocked_read_ends_at_the_request_deadline(make_tracker, silent):
    tracker = make_tracker(
        {
            "sources": issues_only(silent.url),
            # The read timeout alone would wait five minutes for the silent upstream.
            "http": {"timeout_seconds": 300, "request_deadline_seconds": 1, "max_retries": 2},
        }
    )
    assert finishes(tracker.once) == 1
    error = state(tracker)[1]
    assert "no complete answer within 1s (http.request_deadline_seconds) (after 3 tries)" in error
    assert silent.requests == 3


def test_a_poll_deadline_bounds_all_requests_retries_and_backoff_sleeps(make_tracker, silent):
    tracker = make_tracker(
        {
            "sources": issues_only(silent.url),
            # Each try times out after 1 s and is retried ten times with growing sleeps: ~30 s
            # without a poll deadline.
            "http": {
                "timeout_seconds": 1,
                "max_retries": 10,
                "retry_initial_seconds": 1,
                "retry_max_seconds": 4,
            },
            "scheduler": {"poll_deadline_seconds": 3},
        }
    )
    assert finishes(tracker.once) == 1
    _cursor, error, failures = state(tracker)
    assert failures == 1
    assert "scheduler.poll_deadline_seconds" in error and "3s" in error
    assert silent.requests < 5  # the deadline ended the retries, not max_retries


def test_deadlines_are_bounded_settings_with_defaults():
    from mrt_engine.config import ConfigError, validate

    config = validate({})
    assert config.http.request_deadline_seconds > config.http.timeout_seconds
    assert config.scheduler.poll_deadline_seconds >= config.http.request_deadline_seconds
    for section, key in (
        ("http", "request_deadline_seconds"),
        ("scheduler", "poll_deadline_seconds"),
    ):
        with pytest.raises(ConfigError) as caught:
            validate({section: {key: 1e9}})
        assert f"{section}.{key}: must be <=" in str(caught.value)


# ---------------------------------------------------------------------- a slow host waits alone
def test_slow_sources_on_one_host_do_not_starve_a_source_on_another_host(make_tracker, trickle, hf):
    hf.put_model("Qwen/Qwen3-8B")
    tracker = make_tracker(
        {
            "poll_interval_seconds": 1,
            "sources": {
                # Five repositories on a host that trickles: every poll holds a worker for the
                # whole request deadline, far longer than the test.
                **issues_only(trickle.url, [f"slow/repo{i}" for i in range(5)]),
                "huggingface": {"orgs": ["Qwen"], "api_base": hf.url},
            },
            "http": {"request_deadline_seconds": 300, "max_retries": 0},
            # Idle polls (304s) reach poll_metric at the flush: soon, for this test.
            "scheduler": {"poll_workers": 4, "idle_flush_seconds": 0.2},
        }
    )
    engine = tracker.engine()
    engine.start()
    try:
        assert wait_until(lambda: trickle.requests >= 4, timeout=30)
        hf_polls = (
            "SELECT coalesce(sum(polls), 0) FROM poll_metric WHERE source_key LIKE 'huggingface:%'"
            " AND outcome IN ('ok', 'not_modified')"
        )
        polled = wait_until(lambda: read_store(tracker.db, hf_polls)[0][0] >= 3, timeout=30)
        # The slow host is held to its own concurrency (GitHub's default of 4): the fifth
        # repository waits for a turn instead of taking another worker.
        slow_requests = trickle.requests
    finally:
        finishes(engine.stop, within=60)
    assert polled, "the HuggingFace source was starved by the slow GitHub host"
    assert slow_requests == 4


@pytest.mark.parametrize("mode", ["trickle", "silent"])
def test_stopping_the_engine_cuts_a_slow_request_short(make_tracker, mode, caplog):
    caplog.set_level("INFO", logger="mrt_engine.http")
    with HostileServer(mode) as server:
        tracker = make_tracker(
            {
                "sources": issues_only(server.url),
                "http": {"timeout_seconds": 300, "request_deadline_seconds": 300},
                "scheduler": {"shutdown_timeout_seconds": 2},
            }
        )
        engine = tracker.engine()
        engine.start()
        stopped_at = None
        try:
            assert wait_until(lambda: server.requests >= 1, timeout=30)
            time.sleep(0.3)  # the request is now blocked in a read
        finally:
            started = time.monotonic()
            finishes(engine.stop, within=60)
            stopped_at = time.monotonic() - started
        assert engine._active_polls == 0, "a poll was still running after stop returned"
        assert stopped_at < 30  # far below the 300 s the request would otherwise take
    assert "cut 1 request in flight short" in caplog.text
    # Cut short by the stop, not failed by the upstream: nothing recorded against the source.
    assert tracker.sql("SELECT last_error, consecutive_failures FROM source_state") == [(None, 0)]


def test_stopping_an_idle_engine_reports_no_request_cut_short(make_tracker, caplog):
    """Connections kept alive between polls are closed at a stop, but no request was cut
    short: the log says so only when one was (it said "cut 3 HTTP connections short" at every
    stop, of an engine that was only waiting for its next poll)."""
    from mrt_engine.simulators.github import GitHubSimulator

    caplog.set_level("INFO", logger="mrt_engine.http")
    with GitHubSimulator() as github:
        github.add_issue("vllm-project/vllm", "seed")
        tracker = make_tracker({"sources": issues_only(github.url)})
        engine = tracker.engine()
        engine.start()
        try:
            assert wait_until(lambda: tracker.baselines() == 1, timeout=30)
            assert wait_until(lambda: engine._active_polls == 0, timeout=30)
        finally:
            finishes(engine.stop)
    assert "short" not in caplog.text


# ---------------------------------------------------------------------- timeout precedence
@pytest.mark.parametrize(
    "http",
    [
        {"timeout_seconds": 1},
        {"timeout_seconds": 60, "hosts": {"127.0.0.1": {"timeout_seconds": 1}}},
    ],
    ids=["global", "per-host"],
)
def test_a_configured_timeout_wins_over_the_platform_default(make_tracker, silent, http):
    tracker = make_tracker({"sources": issues_only(silent.url), "http": {**http, "max_retries": 1}})
    assert finishes(tracker.once) == 1
    _cursor, error, _failures = state(tracker)
    assert "ReadTimeout" in error and "after 2 tries" in error
    # Two tries of 1 s, not of GitHub's built-in 20 s.
    duration_ms = tracker.sql("SELECT duration_ms FROM poll_metric")[0][0]
    assert duration_ms < 15_000


def test_host_policy_precedence_per_host_then_global_then_platform_default():
    config = HttpConfig(
        timeout_seconds=5,
        hosts={
            "api.github.com": HostPolicy(timeout_seconds=2, max_concurrency=1),
            "hub.example:8443": HostPolicy(min_interval_seconds=0.0),
            "hub.example": HostPolicy(min_interval_seconds=3.0, max_concurrency=3),
        },
    )
    client = HttpClient(config)
    platform = HostPolicy(max_concurrency=4, min_interval_seconds=0.5, timeout_seconds=20)
    for url in ("https://api.github.com", "https://hf.example", "https://hub.example:8443"):
        client.set_host_defaults(url, platform)
    try:
        github = client.host_policy("https://api.github.com/repos/x/y")
        assert (github.timeout_seconds, github.max_concurrency, github.min_interval_seconds) == (
            2,  # per host
            1,  # per host
            0.5,  # platform default: nobody set it
        )
        # The explicit global timeout wins over the platform's 20 s.
        assert client.host_policy("https://hf.example/api").timeout_seconds == 5
        # host:port wins over the host name, field by field; 0 is a setting, not "unset".
        hub = client.host_policy("https://hub.example:8443/api")
        assert (hub.min_interval_seconds, hub.max_concurrency, hub.timeout_seconds) == (0.0, 3, 5)
    finally:
        client.close()
    # Without an explicit global timeout, the platform's default applies.
    client = HttpClient(HttpConfig())
    client.set_host_defaults("https://api.github.com", platform)
    try:
        assert client.host_policy("https://api.github.com").timeout_seconds == 20
        assert client.host_policy("https://elsewhere.example").timeout_seconds == 20
    finally:
        client.close()


# ---------------------------------------------------------------------- the same for channels
def test_a_trickling_welink_fails_the_send_at_its_timeout_instead_of_holding_a_worker(
    gh_tracker, github
):
    tracker = gh_tracker({"delivery": {"request_timeout_seconds": 1}})
    github.add_issue(REPO, "seed")
    tracker.once()
    github.add_issue(REPO, "Qwen3 support")
    # A byte every 0.3 s: no single read waits anywhere near the 1 s timeout.
    with HostileServer("trickle", interval=0.3) as trickle:
        tracker.env["WL"] = f"{trickle.url}/api/werobot/v1/webhook/send?token=abc&channel=x"
        assert finishes(tracker.once) == 1
    status, error = tracker.sql("SELECT status, last_error FROM delivery")[0]
    assert status == "retrying"
    assert error == "no complete answer from WeLink within 1s (delivery.request_timeout_seconds)"
