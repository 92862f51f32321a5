"""A host's poll lane: quick polls due together run on one thread, a slow one spills the rest."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import pytest

from mrt_engine.poll_lane import LanePool


def _record(log: list, lock: threading.Lock, name: str, hold: threading.Event | None = None):
    def job() -> str:
        with lock:
            log.append((name, threading.get_ident()))
        if hold is not None:
            assert hold.wait(30), "the test never released the held job"
        return name

    return job


def test_quick_work_due_together_runs_in_order_one_at_a_time():
    pool = LanePool(4, spill_seconds=5)
    log: list = []
    running: list = []
    most: list = []
    lock = threading.Lock()

    def job(n: int) -> int:
        with lock:
            running.append(n)
            most.append(len(running))
            log.append(n)
        time.sleep(0.001)
        with lock:
            running.remove(n)
        return n

    try:
        futures = [pool.submit(job, n) for n in range(8)]
        assert [f.result(timeout=10) for f in futures] == list(range(8))
    finally:
        pool.shutdown()
    assert log == list(range(8))
    assert max(most) == 1  # four threads were there to take them; none spilled
    assert pool.threads <= 2  # the one that ran them, and at most one timing their spill


def test_work_waiting_behind_a_slow_poll_spills_to_another_thread_after_the_spill_time():
    pool = LanePool(2, spill_seconds=0.05)
    log: list = []
    lock = threading.Lock()
    hold = threading.Event()
    try:
        slow = pool.submit(_record(log, lock, "slow", hold))
        started = time.monotonic()
        quick = pool.submit(_record(log, lock, "quick"))
        assert quick.result(timeout=10) == "quick"  # while the slow one still runs
        waited = time.monotonic() - started
        assert not slow.done()
        hold.set()
        assert slow.result(timeout=10) == "slow"
    finally:
        hold.set()
        pool.shutdown()
    assert waited >= 0.05
    assert log[0][1] != log[1][1]


def test_a_lane_never_runs_more_polls_at_once_than_its_size():
    pool = LanePool(2, spill_seconds=0.01)
    hold = threading.Event()
    running = []
    most = []
    lock = threading.Lock()

    def job() -> None:
        with lock:
            running.append(1)
            most.append(len(running))
        hold.wait(30)
        with lock:
            running.pop()

    try:
        futures = [pool.submit(job) for _ in range(5)]
        deadline = time.monotonic() + 10
        while len(most) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # past many spill times: a third would have started by now
        assert len(most) == 2
        hold.set()
        for future in futures:
            future.result(timeout=10)
    finally:
        hold.set()
        pool.shutdown()
    assert max(most) == 2
    assert pool.threads == 2


def test_every_waiting_poll_behind_slow_ones_still_starts_in_order():
    pool = LanePool(3, spill_seconds=0.02)
    log: list = []
    lock = threading.Lock()
    hold = threading.Event()
    try:
        futures = [pool.submit(_record(log, lock, "slow1", hold))]
        futures.append(pool.submit(_record(log, lock, "slow2", hold)))
        futures += [pool.submit(_record(log, lock, f"quick{i}")) for i in range(4)]
        for future in futures[2:]:
            future.result(timeout=10)  # the third thread runs them while two are held
        hold.set()
        for future in futures[:2]:
            future.result(timeout=10)
    finally:
        hold.set()
        pool.shutdown()
    assert [name for name, _ in log] == ["slow1", "slow2", *(f"quick{i}" for i in range(4))]


def test_a_failing_poll_fails_its_future_and_the_lane_goes_on():
    pool = LanePool(1)

    def boom() -> None:
        raise ValueError("upstream garbage")

    try:
        failed = pool.submit(boom)
        after = pool.submit(lambda: "next")
        with pytest.raises(ValueError, match="upstream garbage"):
            failed.result(timeout=10)
        assert after.result(timeout=10) == "next"
    finally:
        pool.shutdown()


def test_shutdown_runs_what_is_queued_then_takes_nothing_more():
    pool = LanePool(1, spill_seconds=5)
    hold = threading.Event()
    log: list = []
    lock = threading.Lock()
    first = pool.submit(_record(log, lock, "first", hold))
    second = pool.submit(_record(log, lock, "second"))
    threading.Timer(0.1, hold.set).start()
    pool.shutdown(wait=True)
    assert first.result(timeout=0) == "first"
    assert second.result(timeout=0) == "second"
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)


def test_shutdown_can_cancel_what_waits():
    pool = LanePool(1, spill_seconds=5)
    hold = threading.Event()
    log: list = []
    lock = threading.Lock()
    first = pool.submit(_record(log, lock, "first", hold))
    waiting = pool.submit(_record(log, lock, "waiting"))
    deadline = time.monotonic() + 10
    while not log and time.monotonic() < deadline:
        time.sleep(0.01)
    pool.shutdown(wait=False, cancel_futures=True)
    hold.set()
    assert first.result(timeout=10) == "first"
    with pytest.raises(CancelledError):
        waiting.result(timeout=10)
    assert [name for name, _ in log] == ["first"]


def test_a_lane_under_many_submitting_threads_runs_every_poll_once():
    pool = LanePool(3, spill_seconds=0.001)
    counts: dict[int, int] = {}
    lock = threading.Lock()

    def job(n: int) -> None:
        with lock:
            counts[n] = counts.get(n, 0) + 1
        if n % 7 == 0:
            time.sleep(0.003)

    def submitter(base: int) -> list:
        return [pool.submit(job, base + i) for i in range(200)]

    results: list = []
    threads = [
        threading.Thread(target=lambda b=b: results.extend(submitter(b))) for b in (0, 1000, 2000)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for future in results:
            future.result(timeout=30)
    finally:
        pool.shutdown()
    assert len(counts) == 600
    assert set(counts.values()) == {1}
    assert pool.threads <= 3
