"""Stale sources (O §8): no successful poll for 3x its interval raises one "stale" alert, and
one "fresh again" alert at its next successful poll, through the protected error-as-state path;
never twice across a restart; never for a paused source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import wait_until

from mrt_engine.components import build_components
from mrt_engine.engine import Engine
from mrt_engine.operations import set_paused
from mrt_engine.simulators.base import Fault
from mrt_engine.staleness import stale_watches

pytestmark = pytest.mark.both_backends

REPO = "vllm-project/vllm"
KEY = f"github:{REPO}:issues"
MINUTE = 60


class Clock:
    """The engine's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def tracker_of(gh_tracker, github, **scheduler):
    github.add_issue(REPO, "seed")
    return gh_tracker(
        {
            "sources": {"github": {"poll_interval_seconds": MINUTE, "monitor": {"pulls": False}}},
            # Failures alone never reach the unhealthy alert here: only staleness speaks.
            "scheduler": {
                "unhealthy_after_failures": 1000,
                "stale_after_min_seconds": 0,
                **scheduler,
            },
            "http": {"max_retries": 0},
        }
    )


def engine_at(tracker, clock: Clock) -> Engine:
    engine = Engine(tracker.config, environ=tracker.env, clock=clock)
    engine.open()
    return engine


def health_events(tracker, engine: Engine | None = None) -> list[tuple[str, str]]:
    """The health events committed (read through ``engine``'s store while it is open: one
    store is open in a process at a time)."""
    query = "SELECT event_type, title FROM event WHERE source = 'mrt' ORDER BY id"
    if engine is not None and engine.store is not None:
        rows = engine.store.db.execute_sql(query).fetchall()
    else:
        rows = tracker.sql(query)
    return [(kind, title) for kind, title in rows]


def failing_minutes(engine: Engine, clock: Clock, minutes: int, *, force: bool = True) -> None:
    """A poll a minute (each failing while the upstream fails), the control job's check after
    each."""
    source = engine.sources[0]
    for _ in range(minutes):
        clock.advance(MINUTE)
        engine.poll_source(source, force=force)
        engine.check_stale()


def test_a_source_without_a_successful_poll_for_three_intervals_is_stale_once_then_fresh_once(
    gh_tracker, github, welink
):
    tracker = tracker_of(gh_tracker, github)
    clock = Clock()
    engine = engine_at(tracker, clock)
    try:
        source = engine.sources[0]
        assert engine.poll_source(source, force=True).status == "ok"  # the baseline
        github.inject(Fault(502, "bad gateway", path="/repos/", times=10_000))
        failing_minutes(engine, clock, 2)
        assert health_events(tracker, engine) == []  # two intervals: not yet
        failing_minutes(engine, clock, 1)
        assert [k for k, _ in health_events(tracker, engine)] == ["source_stale"]
        failing_minutes(engine, clock, 30)  # stale for long: still one alert
        github.clear_faults()
        clock.advance(MINUTE)
        assert engine.poll_source(source, force=True).status in ("ok", "not_modified")
        engine.check_stale()
        failing_minutes(engine, clock, 5)  # polls that work: nothing more
        engine.deliver_once()
    finally:
        engine.close()
    events = health_events(tracker)
    assert events == [
        ("source_stale", f"Source {KEY} is stale: no successful poll for 3m"),
        ("source_fresh", f"Source {KEY} polls successfully again, 31m after it went stale"),
    ]
    [(summary,)] = tracker.sql("SELECT summary FROM event WHERE event_type = 'source_stale'")
    assert summary.startswith("the limit is 3m without one; last error: 502")
    # Protected: an alert each, sent to the channel.
    assert tracker.sql(
        "SELECT e.event_type, d.status FROM delivery d JOIN alert a ON a.id = d.alert_id"
        " JOIN event e ON e.id = a.event_id WHERE e.source = 'mrt' ORDER BY e.id"
    ) == [("source_stale", "sent"), ("source_fresh", "sent")]
    texts = welink.texts()
    assert sum("is stale" in t for t in texts) == 1
    assert sum("polls successfully again" in t for t in texts) == 1


def test_a_stale_source_is_not_announced_again_after_a_restart(gh_tracker, github, welink):
    tracker = tracker_of(gh_tracker, github)
    clock = Clock()
    engine = engine_at(tracker, clock)
    try:
        assert engine.poll_source(engine.sources[0], force=True).status == "ok"
        github.inject(Fault(502, "bad gateway", path="/repos/", times=10_000))
        failing_minutes(engine, clock, 4)
    finally:
        engine.close()
    assert [k for k, _ in health_events(tracker)] == ["source_stale"]
    clock.advance(3600)  # down for an hour, then restarted: the upstream still fails
    engine = engine_at(tracker, clock)
    try:
        failing_minutes(engine, clock, 10)
        assert [k for k, _ in health_events(tracker, engine)] == ["source_stale"]
        github.clear_faults()
        failing_minutes(engine, clock, 1)  # this poll works: fresh again, once
        failing_minutes(engine, clock, 3)
    finally:
        engine.close()
    assert [k for k, _ in health_events(tracker)] == ["source_stale", "source_fresh"]


def test_a_restart_after_downtime_gives_a_source_an_interval_before_it_is_stale(
    gh_tracker, github, welink
):
    tracker = tracker_of(gh_tracker, github)
    clock = Clock()
    engine = engine_at(tracker, clock)
    try:
        assert engine.poll_source(engine.sources[0], force=True).status == "ok"
    finally:
        engine.close()
    clock.advance(86400)  # the engine was stopped for a day
    engine = engine_at(tracker, clock)
    try:
        engine.check_stale()
        assert health_events(tracker, engine) == []  # not stale for the engine's own downtime
        github.inject(Fault(502, "bad gateway", path="/repos/", times=10_000))
        failing_minutes(engine, clock, 1)  # but it has not worked for a day: one interval
    finally:
        engine.close()
    assert health_events(tracker) == [
        ("source_stale", f"Source {KEY} is stale: no successful poll for 1d")
    ]


def test_a_source_is_never_stale_sooner_than_the_minimum(gh_tracker, github, welink):
    tracker = tracker_of(gh_tracker, github, stale_after_min_seconds=600)
    clock = Clock()
    engine = engine_at(tracker, clock)
    try:
        assert engine.poll_source(engine.sources[0], force=True).status == "ok"
        github.inject(Fault(502, "bad gateway", path="/repos/", times=10_000))
        failing_minutes(engine, clock, 9)  # 3 intervals long past, 10 minutes not yet
        assert health_events(tracker, engine) == []
        failing_minutes(engine, clock, 1)
    finally:
        engine.close()
    assert [k for k, _ in health_events(tracker)] == ["source_stale"]


def test_a_paused_source_is_never_stale(gh_tracker, github, welink):
    tracker = tracker_of(gh_tracker, github)
    clock = Clock()
    engine = engine_at(tracker, clock)
    try:
        assert engine.poll_source(engine.sources[0], force=True).status == "ok"
        assert engine.store is not None
        set_paused(engine.store, KEY, True, actor="test", clock=clock)
        failing_minutes(engine, clock, 60, force=False)  # the scheduler's polls find it paused
        assert health_events(tracker, engine) == []
        set_paused(engine.store, KEY, False, actor="test", clock=clock)
        github.inject(Fault(502, "bad gateway", path="/repos/", times=10_000))
        failing_minutes(engine, clock, 2)  # its limit counts from its last paused poll
        assert health_events(tracker, engine) == []
        failing_minutes(engine, clock, 1)
    finally:
        engine.close()
    assert [k for k, _ in health_events(tracker)] == ["source_stale"]


def test_the_running_engine_s_control_job_raises_stale_then_fresh(gh_tracker, github, welink):
    github.add_issue(REPO, "seed")
    tracker = gh_tracker(
        {
            "sources": {"github": {"poll_interval_seconds": 1, "monitor": {"pulls": False}}},
            "scheduler": {
                "unhealthy_after_failures": 1000,
                "max_backoff_seconds": 1,
                "jitter_seconds": 0,
                "stale_after_intervals": 2,
                "stale_after_min_seconds": 0,
            },
            "http": {"max_retries": 0},
        }
    )
    assert tracker.once() == 0  # the baseline
    github.inject(Fault(502, "bad gateway", path="/repos/", times=100_000))
    engine = tracker.engine()
    engine.start()
    try:
        assert wait_until(lambda: any("is stale" in t for t in welink.texts()), 30)
        github.clear_faults()
        assert wait_until(lambda: any("successfully again" in t for t in welink.texts()), 30)
    finally:
        engine.stop()
    assert [k for k, _ in health_events(tracker)] == ["source_stale", "source_fresh"]


@pytest.mark.sqlite_only("the config alone")
def test_the_multiplier_is_set_globally_and_per_source_key_or_pattern(make_tracker, github):
    tracker = make_tracker(
        {
            "poll_interval_seconds": 100,
            "sources": {"github": {"repos": [REPO, "sgl-project/sglang"], "api_base": github.url}},
            "scheduler": {
                "stale_after_intervals": 4,
                "stale_after_min_seconds": 500,
                "stale_after_intervals_by_source": {
                    f"github:{REPO}:issues": 10,
                    "github:*:pulls": 0,  # never stale
                },
            },
        }
    )
    config = tracker.config
    watches = stale_watches(config.scheduler, build_components(config, {}).sources)
    assert {k: w.limit.total_seconds() for k, w in watches.items()} == {
        f"github:{REPO}:issues": 1000,
        "github:sgl-project/sglang:issues": 500,  # 4 x 100 s, but at least 500 s
    }
