"""Crash safety: SIGKILL the engine at random instants, with a channel that fails part of the time.

After restarts every matching event is delivered at least once, nothing that did not match is
sent, and a message arrives twice only when its send was in flight at a kill (the store then
holds an ``interrupted`` attempt for it).

Most kills fall at a random instant of the engine's work (its first polls, commits and sends
start as soon as it is running); every fourth falls during its start (opening the store, taking
back the claims of the engine killed before). ``MRT_CRASH_CYCLES`` runs more of them.

Run twice: every alert its own message, and with grouping and a rate limit on (issue 11). With
bundles the guarantee is the same, per message: a carrier takes its members in the transaction
that leases it, so an alert is in exactly one message, whose members never change; a kill
during its send makes the whole message go out again (same text, every member in it), never a
split into two messages that both go out. So an alert's URL may arrive in several copies of one
message, as many more as its carrier's interrupted attempts, and in no other message.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from conftest import deep_merge, wait_until

from mrt_engine.simulators.welink import WeLinkSimulator

REPO = "vllm-project/vllm"
CYCLES = int(os.environ.get("MRT_CRASH_CYCLES", "20"))
WORK_WINDOW = 0.8  # seconds after "engine running": the first poll, its commit, its sends
START_WINDOW = (0.05, 0.5)  # seconds after the process starts: imports, store, recovery


URL = re.compile(r"https?://\S+")
# Grouping windows shorter than a cycle, and a rate low enough that the queue is folded.
GROUPED = {
    "delivery": {"group_wait_seconds": 0.3, "group_interval_seconds": 0.6},
    "notify": {"welink": {"rate_limit_per_minute": 30}},
}


def urls(text: str) -> list[str]:
    return URL.findall(text)


@pytest.mark.parametrize("bundled", [False, True], ids=["single", "grouped"])
def test_sigkill_at_random_points_loses_no_alert_and_duplicates_only_in_flight_sends(
    gh_tracker, github, bundled
):
    rng = random.Random(int(os.environ.get("MRT_CRASH_SEED", "20261122")))
    flaky = WeLinkSimulator(token="crash-token", fail_rate=0.3, seed=rng.randrange(1 << 30)).start()
    try:
        config = {
            "sources": {"github": {"poll_interval_seconds": 1}},
            "scheduler": {"jitter_seconds": 0},
            "delivery": {"max_attempts": 1000, "lease_seconds": 30, "workers": 2},
        }
        tracker = gh_tracker(deep_merge(config, GROUPED) if bundled else config)
        tracker.env["WL"] = flaky.webhook_url
        github.add_issue(
            REPO, "seed DeepSeek before the baseline", at=datetime(2026, 11, 1, tzinfo=UTC)
        )
        assert tracker.once() == 0  # the baseline is taken before the chaos starts

        created: list[tuple[int, str, bool]] = []
        stop = threading.Event()

        def upstream_activity() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                matching = n % 3 == 0
                title = f"[{n}] " + (
                    "DeepSeek-V3.2 kernel change" if matching else "unrelated refactor"
                )
                item = github.add_issue(REPO, title, pull=n % 2 == 0)
                created.append((n, item["html_url"], matching))
                time.sleep(rng.uniform(0.02, 0.15))

        activity = threading.Thread(target=upstream_activity, daemon=True)
        activity.start()
        env = {**os.environ, **tracker.env}
        command = [sys.executable, "-m", "mrt_engine", "run", "--config", str(tracker.path)]
        kills = 0
        log = tracker.path.parent / "engine.log"
        for cycle in range(CYCLES):
            with log.open("w") as err:
                process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
            if cycle % 4 == 3:
                time.sleep(rng.uniform(*START_WINDOW))
            else:
                assert wait_until(
                    lambda p=process: "engine running" in log.read_text() or p.poll() is not None,
                    timeout=30,
                    interval=0.01,
                )
                assert process.poll() is None, log.read_text()
                time.sleep(rng.uniform(0, WORK_WINDOW))
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            kills += 1
        stop.set()
        activity.join(5)

        # A last engine runs until everything is delivered, then stops cleanly.
        final = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        matching_urls = {url for _, url, matching in created if matching}
        try:
            done = wait_until(
                lambda: (
                    tracker_sql_quiet(tracker)
                    and {carriers(tracker).get(u, u) for u in matching_urls}
                    <= {u for m in flaky.messages for u in urls(m.payload["content"]["text"])}
                ),
                timeout=90,
                interval=0.05,
            )
        finally:
            final.send_signal(signal.SIGTERM)
            _, err = final.communicate(timeout=20)
        assert final.returncode == 0, err
        assert done, "not every matching event was delivered"

        texts = [m.payload["content"]["text"] for m in flaky.messages]
        sent = Counter(u for text in texts for u in set(urls(text)))
        unmatched = {url for _, url, matching in created if not matching}
        # A bundle lists what fits the channel's 500 characters ("… and N more"): an alert it
        # carries arrived with its carrier, whose link the message always shows.
        carrier_of = carriers(tracker)
        assert {carrier_of.get(u, u) for u in matching_urls} <= set(sent), (
            "a matching event was never delivered"
        )
        assert not (set(sent) & unmatched), "an event that did not match was sent"
        assert set(sent) <= matching_urls
        # An alert's interrupted sends: those of the delivery whose message carried it.
        interrupted = dict(
            tracker.sql(
                "SELECT e.url, COUNT(*) FROM delivery d JOIN alert a ON a.id = d.alert_id"
                " JOIN event e ON e.id = a.event_id"
                " JOIN attempt t ON t.delivery_id = COALESCE(d.bundle_id, d.id)"
                " WHERE t.outcome = 'interrupted' GROUP BY e.url"
            )
        )
        for url, count in sent.items():
            assert count - 1 <= interrupted.get(url, 0), (
                f"{url} sent {count} times, {interrupted.get(url, 0)} in flight at a kill"
            )
            carrying = {text for text in texts if url in urls(text)}
            assert len(carrying) == 1, f"{url} went out in different messages: {carrying}"
        assert tracker.sql("SELECT COUNT(*) FROM delivery WHERE status != 'sent'") == [(0,)]
        assert tracker.sql("SELECT COUNT(DISTINCT fingerprint) = COUNT(*) FROM event") == [(1,)]
        # Incidents commit with their alerts: each alert is in the one DeepSeek-V3.2 incident,
        # numbered without a gap or a repeat, whatever instant the kills fell at.
        alerts = tracker.sql("SELECT COUNT(*) FROM alert")[0][0]
        assert tracker.sql("SELECT family, events FROM incident") == [("deepseek-v3.2", alerts)]
        positions = tracker.sql("SELECT position FROM incident_event ORDER BY position")
        assert [p for (p,) in positions] == list(range(1, alerts + 1))
        assert kills == CYCLES and len(matching_urls) > 20
        if bundled:  # the chaos did make bundles (not only messages of one alert)
            assert tracker.sql("SELECT COUNT(*) > 0 FROM delivery WHERE bundle_id IS NOT NULL")[
                0
            ] == (1,)
    finally:
        flaky.stop()


def carriers(tracker) -> dict[str, str]:
    """The link of each bundled alert's carrier, by the alert's link."""
    try:
        return dict(
            tracker.sql(
                "SELECT e.url, ce.url FROM delivery d JOIN alert a ON a.id = d.alert_id"
                " JOIN event e ON e.id = a.event_id JOIN delivery c ON c.id = d.bundle_id"
                " JOIN alert ca ON ca.id = c.alert_id JOIN event ce ON ce.id = ca.event_id"
            )
        )
    except Exception:  # the engine holds the write lock: ask again
        return {}


def tracker_sql_quiet(tracker) -> bool:
    """True once nothing is left to deliver (tolerates the engine holding the write lock)."""
    try:
        rows = tracker.sql("SELECT COUNT(*) FROM delivery WHERE status IN ('pending', 'retrying')")
    except Exception:
        return False
    return rows == [(0,)]
