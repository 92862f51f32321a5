"""The Health view's figures (mrt_engine.store.health_figures) from a day of polls and sends,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from console_data import NOW, build

from mrt_engine.config import load_config
from mrt_engine.store import health_figures
from mrt_engine.store.db import open_store

pytestmark = pytest.mark.both_backends


@pytest.fixture
def store(tmp_path, store_state):
    path = build(tmp_path, state=store_state, with_polls=True)
    store = open_store(load_config(path).store_location)
    yield store
    store.close()


def figures(store, now=NOW, **options):
    with store.read():
        return health_figures.health_figures(now, **options)


def test_a_day_is_24_hours_oldest_first_up_to_the_current_one(store):
    found = figures(store)
    assert len(found.hours) == 24
    assert found.hours[-1] == NOW.replace(minute=0)
    assert found.hours[0] == NOW.replace(minute=0) - timedelta(hours=23)


def test_each_source_has_its_new_events_and_poll_durations_per_hour(store):
    by_key = {s.source_key: s for s in figures(store).sources}
    assert sorted(by_key) == [
        "github:sgl-project/sglang:issues",
        "github:sgl-project/sglang:pulls",
        "github:vllm-project/vllm:issues",
        "github:vllm-project/vllm:pulls",
    ]
    vllm = by_key["github:vllm-project/vllm:issues"]  # n = 2 in the seeded order
    assert len(vllm.new_events) == len(vllm.poll_ms) == 24
    # hours_ago h -> index 23 - h; new events where h % 3 == 2
    assert vllm.new_events[23 - 2] == (2 * 7 + 2 * 3) % 11
    assert vllm.new_events[23 - 1] == 0
    assert sum(vllm.new_events) == sum((h * 7 + 6) % 11 for h in range(24) if h % 3 == 2)
    # Per hour: an ok poll (its duration) and 5 idle polls of 120 ms each: the mean of the 6.
    slow = 900 + 150 * 5
    assert vllm.poll_ms[23 - 5] == (slow + 120 * 5) // 6
    assert vllm.polls == 24 * 6 and vllm.not_modified == 24 * 5 and vllm.errors == 0
    assert vllm.not_modified_ratio == pytest.approx(5 / 6)
    assert vllm.rate_limit_remaining == 4987


def test_a_failing_source_counts_its_errors_and_has_no_304_in_those_hours(store):
    pulls = {s.source_key: s for s in figures(store).sources}["github:vllm-project/vllm:pulls"]
    assert pulls.errors == 2
    assert pulls.polls == 24 + 22 * 6  # n = 3: 6 idle polls an hour, none in the failing two
    assert pulls.not_modified == 22 * 6
    assert pulls.rate_limit_remaining is None


def test_each_channel_has_its_queue_and_its_sends_and_failures_per_hour(store):
    (welink,) = figures(store).channels
    assert welink.channel == "welink"
    assert (welink.pending, welink.retrying, welink.dead, welink.queued) == (1, 1, 1, 2)
    # The fixed store's attempts, 20 minutes before NOW: 1 sent, 3 + 1 failed.
    assert welink.sent[-1] == 1 and welink.failed[-1] == 4
    assert welink.sent[23 - 3] == 3 and welink.failed[23 - 3] == 0
    assert welink.sent[23 - 5] == 0 and welink.failed[23 - 5] == 1
    assert sum(welink.sent) + sum(welink.failed) == 5 + sum(h % 4 for h in range(1, 24))


def test_a_channel_of_the_config_with_no_delivery_yet_is_shown_empty(store):
    channels = {c.channel: c for c in figures(store, channels=["email", "welink"]).channels}
    assert sorted(channels) == ["email", "welink"]
    assert channels["email"].queued == 0 and sum(channels["email"].sent) == 0


def test_what_is_older_than_the_day_is_not_counted(store):
    later = figures(store, now=NOW + timedelta(hours=22))
    vllm = {s.source_key: s for s in later.sources}["github:vllm-project/vllm:issues"]
    # Only the polls of the last two seeded hours (9:10 and 8:10 on NOW's day) are in the day.
    assert vllm.polls == 2 * 6
    assert sum(later.channels[0].sent) == 1 + (1 % 4)
