"""Several engines on one PostgreSQL store: sources leased to one live engine each, outbox
claims that skip each other's rows, and engines killed at random instants losing nothing.

Real processes (``mrt-engine run``) against the run's PostgreSQL cluster and the simulators.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from conftest import wait_until

from mrt_engine.simulators.welink import WeLinkSimulator

pytestmark = [pytest.mark.both_backends, pytest.mark.postgresql_only]

REPOS = [f"org{i}/models{i}" for i in range(6)]
LEASE = 3.0  # engine_lease_seconds: renewals every second


def shared_config(**extra) -> dict:
    config = {
        "sources": {
            "github": {
                "repos": REPOS,
                "monitor": {"pulls": False},
                "poll_interval_seconds": 1,
            }
        },
        "scheduler": {"jitter_seconds": 0, "engine_lease_seconds": LEASE},
    }
    for key, value in extra.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def start_engine(tracker, log_name: str) -> subprocess.Popen:
    log = tracker.path.parent / log_name
    return subprocess.Popen(
        [sys.executable, "-m", "mrt_engine", "run", "--config", str(tracker.path)],
        env={**os.environ, **tracker.env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )


def live_engines(tracker) -> dict[str, list[str]]:
    """{engine id: sources it polls} of the live engines, from `mrt-engine status --json`."""
    result = tracker.cli("status", "--json")
    if result.returncode != 0:
        return {}
    report = json.loads(result.stdout)
    return {e["id"]: e["sources"] for e in report.get("engines", []) if e["live"]}


def shares(tracker) -> list[int]:
    return sorted(len(s) for s in live_engines(tracker).values())


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.wait(20)


def test_two_engines_share_the_sources_and_a_dead_ones_are_taken_within_a_lease(gh_tracker, github):
    tracker = gh_tracker(shared_config())
    first = start_engine(tracker, "a.log")
    second = None
    try:
        assert wait_until(lambda: shares(tracker) == [6], 30), live_engines(tracker)
        second = start_engine(tracker, "b.log")
        # The newcomer gets its share: the first gives back what is over half.
        assert wait_until(lambda: shares(tracker) == [3, 3], 30), live_engines(tracker)
        held = live_engines(tracker)
        assert sorted(k for keys in held.values() for k in keys) == sorted(
            f"github:{r}:issues" for r in REPOS
        )
        # Kill the first: its sources are the second's within one lease period (plus the
        # second's next renewal, a third of it).
        before = len(github.requests)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = time.monotonic()
        assert wait_until(lambda: shares(tracker) == [6], 30), live_engines(tracker)
        took = time.monotonic() - killed_at
        assert took <= LEASE * 1.34 + 1.5, f"took {took:.1f} s"
        # Every source is polled again (none forgotten) ...
        assert wait_until(
            lambda: (
                {r.path for r in github.requests[before:]} >= {f"/repos/{r}/issues" for r in REPOS}
            ),
            10,
        )
    finally:
        for process in (first, second):
            if process is not None:
                stop(process)
    # ... and no source was ever polled twice in one interval (1 s; the scheduler's ticks
    # are exact, so two engines polling one source would show as gaps far below it).
    times = defaultdict(list)
    for r in github.requests:
        times[r.path].append(r.received_at)
    gaps = [b - a for ts in times.values() for a, b in itertools.pairwise(ts)]
    assert gaps and min(gaps) > 0.5, sorted(gaps)[:5]


def test_two_engines_killed_at_random_lose_no_alert_and_never_send_twice_outside_a_kill(
    gh_tracker, github
):
    rng = random.Random(int(os.environ.get("MRT_CRASH_SEED", "20261201")))
    flaky = WeLinkSimulator(token="crash-token", fail_rate=0.3, seed=rng.randrange(1 << 30)).start()
    try:
        tracker = gh_tracker(
            shared_config(delivery={"max_attempts": 1000, "lease_seconds": 30, "workers": 2})
        )
        tracker.env["WL"] = flaky.webhook_url
        for repo in REPOS:
            github.add_issue(repo, "seed DeepSeek", at=datetime(2026, 11, 1, tzinfo=UTC))
        assert tracker.once() == 0  # baselines before the chaos

        created: list[tuple[str, bool]] = []
        stop_activity = threading.Event()

        def upstream_activity() -> None:
            n = 0
            while not stop_activity.is_set():
                n += 1
                matching = n % 3 == 0
                title = f"[{n}] " + ("DeepSeek kernel change" if matching else "unrelated")
                item = github.add_issue(REPOS[n % len(REPOS)], title)
                created.append((item["html_url"], matching))
                time.sleep(rng.uniform(0.02, 0.12))

        activity = threading.Thread(target=upstream_activity, daemon=True)
        activity.start()
        engines = [start_engine(tracker, "e0.log"), start_engine(tracker, "e1.log")]
        cycles = int(os.environ.get("MRT_SHARED_CRASH_CYCLES", "8"))
        for cycle in range(cycles):
            time.sleep(rng.uniform(0.3, 1.5))
            victim = cycle % 2
            engines[victim].send_signal(signal.SIGKILL)
            engines[victim].wait(10)
            engines[victim] = start_engine(tracker, f"e{victim}.log")
        stop_activity.set()
        activity.join(5)

        matching_urls = {url for url, matching in created if matching}

        def delivered() -> set[str]:
            return {m.payload["content"]["text"].rsplit("\n", 1)[-1] for m in flaky.messages}

        def quiet() -> bool:
            try:
                rows = tracker.sql(
                    "SELECT COUNT(*) FROM delivery WHERE status IN ('pending', 'retrying')"
                )
            except Exception:
                return False
            return rows == [(0,)]

        try:
            done = wait_until(lambda: matching_urls <= delivered() and quiet(), 120, 0.1)
        finally:
            for process in engines:
                stop(process)
        assert done, f"undelivered: {len(matching_urls - delivered())}"
        sent = Counter(m.payload["content"]["text"].rsplit("\n", 1)[-1] for m in flaky.messages)
        unmatched = {url for url, matching in created if not matching}
        assert not (set(sent) & unmatched), "an event that did not match was sent"
        interrupted = dict(
            tracker.sql(
                "SELECT e.url, COUNT(*) FROM attempt t JOIN delivery d ON d.id = t.delivery_id"
                " JOIN alert a ON a.id = d.alert_id JOIN event e ON e.id = a.event_id"
                " WHERE t.outcome = 'interrupted' GROUP BY e.url"
            )
        )
        for url, count in sent.items():
            assert count - 1 <= interrupted.get(url, 0), (
                f"{url} sent {count} times, {interrupted.get(url, 0)} in flight at a kill"
            )
        assert tracker.sql("SELECT COUNT(DISTINCT fingerprint) = COUNT(*) FROM event") == [(True,)]
        assert len(matching_urls) > 10
    finally:
        flaky.stop()
