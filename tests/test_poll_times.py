"""When sources are polled: each on time (within its jitter, at its interval on average), and
the polls due within one tick together, so an idle engine wakes once per tick, not per poll."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mrt_engine.poll_times import PollTimes, tick_for

T0 = datetime(2026, 12, 1, 8, 0, 0, 123456, tzinfo=UTC)


def runs(times: PollTimes, count: int) -> list[datetime]:
    """The first ``count`` runs of a trigger, as the scheduler asks for them."""
    at = [times.first_run()]
    while len(at) < count:
        at.append(times.get_next_fire_time(at[-1], at[-1]))
    return at


def test_each_poll_runs_within_its_jitter_of_when_it_is_due_and_never_drifts():
    interval, jitter = 1.0, 0.1
    times = PollTimes(interval, T0, tick_for(interval, jitter), phase=0.37)
    at = runs(times, 5000)
    assert at[0] == T0  # the first poll as the engine starts
    for k, when in enumerate(at):
        due = T0 + timedelta(seconds=k * interval)
        assert abs((when - due).total_seconds()) <= jitter + 1e-6
    # 5000 polls take 4999 intervals, give or take one jitter: no delay piles up.
    assert abs((at[-1] - at[0]).total_seconds() - 4999 * interval) <= jitter + 1e-6


def test_polls_due_within_one_tick_run_together():
    interval, jitter = 1.0, 0.1
    phase = random.Random(7).random()
    # 20 sources, their first polls spread 50 ms apart as the engine starts them.
    sources = [
        PollTimes(interval, T0 + timedelta(milliseconds=50 * i), tick_for(interval, jitter), phase)
        for i in range(20)
    ]
    later = {run for times in sources for run in runs(times, 10)[1:]}
    # 9 later polls each: 180 polls at no more than 6 instants a second (ticks 0.2 s apart).
    assert len(later) <= 9 * 6
    ticks = [(t.timestamp() - phase * 0.2) / 0.2 for t in later]
    assert all(abs(t - round(t)) < 1e-4 for t in ticks)


def test_no_jitter_polls_exactly_at_the_interval():
    times = PollTimes(2.5, T0, tick_for(2.5, 0.0), phase=0.5)
    at = runs(times, 4)
    assert at == [T0 + timedelta(seconds=2.5 * k) for k in range(4)]


def test_a_tick_is_at_most_half_the_interval():
    assert tick_for(1.0, 0.1) == pytest.approx(0.2)
    assert tick_for(10.0, 30.0) == 5.0  # a jitter longer than the interval
    with pytest.raises(ValueError):
        PollTimes(1.0, T0, tick=0.8)


def test_a_late_scheduler_runs_the_next_poll_due_from_now():
    times = PollTimes(60.0, T0, tick_for(60.0, 6.0), phase=0.0)
    now = T0 + timedelta(minutes=10, seconds=5)
    nxt = times.get_next_fire_time(None, now)
    assert now <= nxt + timedelta(seconds=6) and nxt - now <= timedelta(seconds=66)
    # After a missed stretch (the machine slept), the next poll is the one after the last run.
    after = times.get_next_fire_time(T0 + timedelta(minutes=10), now)
    assert abs((after - (T0 + timedelta(minutes=11))).total_seconds()) <= 6


def test_the_engine_starts_every_source_at_once_then_polls_them_on_shared_ticks(gh_tracker):
    repos = [f"org/repo{i}" for i in range(12)]
    tracker = gh_tracker({"sources": {"github": {"repos": repos, "monitor": {"pulls": False}}}})
    engine = tracker.engine()
    engine.open()
    try:
        engine.start()
        assert engine.scheduler is not None
        triggers = [engine.scheduler.get_job(source.key).trigger for source in engine.sources]
        first = [times.first_run() for times in triggers]
        assert first == sorted(first) and len(set(first)) == len(first)  # spread, not on ticks
        second = {t.get_next_fire_time(run, run) for t, run in zip(triggers, first, strict=True)}
        assert len(second) < len(first)  # sharing ticks
    finally:
        engine.stop()


def test_sources_polled_every_second_share_one_or_two_ticks_a_second(gh_tracker):
    """The first polls are spread within one tick (not 50 ms apart over the whole second, which
    put 20 sources' later polls on all five ticks): the later ones then start together."""
    repos = [f"org/repo{i}" for i in range(20)]
    tracker = gh_tracker(
        {
            "sources": {
                "github": {"repos": repos, "monitor": {"pulls": False}, "poll_interval_seconds": 1}
            }
        }
    )
    engine = tracker.engine()
    engine.open()
    try:
        engine.start()
        assert engine.scheduler is not None
        triggers = [engine.scheduler.get_job(source.key).trigger for source in engine.sources]
        first = [times.first_run() for times in triggers]
        assert first == sorted(first) and len(set(first)) == len(first)  # still spread
        later = {run for times in triggers for run in runs(times, 11)[1:]}
        assert len(later) <= 2 * 10  # ten seconds of polls: at most two ticks a second
    finally:
        engine.stop()
