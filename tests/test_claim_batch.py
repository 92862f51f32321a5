"""A delivery worker claims several due deliveries in one transaction and sends them in turn;
what it cannot send in time (a stop, a lease run short) it gives back unsent."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from conftest import wait_until

from mrt_engine.delivery.worker import CLAIM_BATCH, DeliveryWorkers
from mrt_engine.notify.base import Channel, Outgoing, SendResult

pytestmark = pytest.mark.both_backends

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
PLAIN = {"delivery": {"group_wait_seconds": 0, "group_interval_seconds": 0}}


class Recorder(Channel):
    """A channel of ours that records each send and what the store held at that moment."""

    name = "welink"

    def __init__(self, engine, on_send=None) -> None:
        self.engine = engine
        self.on_send = on_send
        self.sent: list[int] = []
        self.leased_at_send: list[int] = []

    def send(self, outgoing: Outgoing) -> SendResult:
        leased = read(self.engine, "SELECT COUNT(*) FROM delivery WHERE lease_owner IS NOT NULL")
        self.leased_at_send.append(leased[0][0])
        self.sent.append(outgoing.delivery_id)
        if self.on_send is not None:
            self.on_send(outgoing)
        return SendResult(ok=True, http_status=200)

    def describe(self) -> str:
        return "recorder"


def read(engine, query: str) -> list[tuple]:
    """Read through the open engine's store (one store per process)."""
    return [tuple(r) for r in engine.store.db.execute_sql(query).fetchall()]


def alerts(gh_tracker, github, count: int, extra: dict | None = None):
    tracker = gh_tracker({**PLAIN, **(extra or {})})
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    for i in range(count):
        github.add_issue(REPO, f"DeepSeek-V{i} support")
    engine = tracker.engine()
    engine.open()
    engine.poll_all()
    assert read(engine, "SELECT COUNT(*) FROM delivery WHERE status = 'pending'")[0][0] == count
    return tracker, engine


def run_workers(engine, channel, until, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    workers = DeliveryWorkers(engine.outbox, {"welink": channel}, workers=1, stop=stop)
    try:
        workers.start()
        workers.notify()
        assert wait_until(until, timeout=20)
    finally:
        stop.set()
        workers.join(10)
        workers.close()


def test_a_worker_leases_several_due_deliveries_in_one_claim_and_records_each_attempt(
    gh_tracker, github
):
    tracker, engine = alerts(gh_tracker, github, CLAIM_BATCH + 2)
    channel = Recorder(engine)
    try:
        run_workers(engine, channel, lambda: len(channel.sent) == CLAIM_BATCH + 2)
    finally:
        engine.close()
    # The first send found the whole batch leased (a claim of one leased one at a time).
    assert channel.leased_at_send[0] == CLAIM_BATCH
    assert sorted(channel.sent) == sorted(set(channel.sent))  # each sent once
    rows = tracker.sql("SELECT status, attempts FROM delivery ORDER BY id")
    assert rows == [("sent", 1)] * (CLAIM_BATCH + 2)
    outcomes = tracker.sql("SELECT outcome FROM attempt ORDER BY id")
    assert outcomes == [("sent",)] * (CLAIM_BATCH + 2)


def test_a_batch_whose_lease_runs_short_gives_the_rest_back_unsent(gh_tracker, github):
    """A slow send used up half of the lease: the batch's other claims are not sent on a lease
    about to run out (another worker could claim them meanwhile); they are given back, with no
    attempt recorded for them, and claimed again afresh."""
    tracker, engine = alerts(gh_tracker, github, 2, {"delivery": {"lease_seconds": 60}})
    skew = {"by": timedelta(0)}
    real_clock = engine.outbox.clock
    engine.outbox.clock = lambda: real_clock() + skew["by"]
    seen: list[list[tuple]] = []

    def first_send_is_slow(outgoing: Outgoing) -> None:
        if not seen:
            skew["by"] = timedelta(seconds=31)  # more than half of the 60 s lease
        seen.append(read(engine, "SELECT delivery_id, outcome FROM attempt ORDER BY id"))

    channel = Recorder(engine, first_send_is_slow)
    try:
        run_workers(engine, channel, lambda: len(channel.sent) == 2)
    finally:
        engine.close()
    first, second = channel.sent
    # At the second send the batch's second attempt was given back: one attempt each, no
    # in_flight attempt for a send that never started.
    assert seen[0] == [(first, "in_flight"), (second, "in_flight")]
    assert seen[1] == [(first, "sent"), (second, "in_flight")]
    outcomes = tracker.sql("SELECT delivery_id, outcome FROM attempt ORDER BY id")
    assert outcomes == [(first, "sent"), (second, "sent")]
    assert tracker.sql("SELECT status, attempts FROM delivery ORDER BY id") == [("sent", 1)] * 2


def test_a_stopping_worker_gives_back_the_claims_it_has_not_sent(gh_tracker, github):
    tracker, engine = alerts(gh_tracker, github, CLAIM_BATCH)
    stop = threading.Event()
    channel = Recorder(engine, lambda outgoing: stop.set())  # the engine stops mid-batch
    try:
        run_workers(engine, channel, lambda: stop.is_set(), stop)
    finally:
        engine.close()
    assert len(channel.sent) == 1
    rows = tracker.sql("SELECT status, lease_owner FROM delivery ORDER BY id")
    sent = channel.sent[0]
    assert [r for i, r in enumerate(rows, 1) if i != sent] == [("pending", None)] * (
        CLAIM_BATCH - 1
    )
    assert tracker.sql("SELECT delivery_id, outcome FROM attempt") == [(sent, "sent")]


def test_a_batchs_sends_are_recorded_in_one_transaction_each_at_its_own_time(gh_tracker, github):
    """The outcomes of a claimed batch's sends are committed together after its last send (one
    write, with the next claim, instead of one per send); each attempt keeps the time its own
    send finished, and
    until that commit each stays in_flight (a kill then makes it interrupted: sent again)."""
    tracker, engine = alerts(gh_tracker, github, CLAIM_BATCH)
    skew = {"by": timedelta(0)}
    real_clock = engine.outbox.clock
    engine.outbox.clock = lambda: real_clock() + skew["by"]
    seen: list[list[tuple]] = []

    def each_send_takes_a_second(outgoing: Outgoing) -> None:
        seen.append(read(engine, "SELECT outcome FROM attempt ORDER BY id"))
        skew["by"] += timedelta(seconds=1)

    channel = Recorder(engine, each_send_takes_a_second)
    try:
        run_workers(engine, channel, lambda: len(channel.sent) == CLAIM_BATCH)
        assert wait_until(
            lambda: (
                read(engine, "SELECT COUNT(*) FROM delivery WHERE status = 'sent'")[0][0]
                == CLAIM_BATCH
            ),
            timeout=10,
        )
    finally:
        engine.close()
    assert seen[-1] == [("in_flight",)] * CLAIM_BATCH
    rows = tracker.sql("SELECT started_at, finished_at FROM attempt ORDER BY delivery_id")
    started = {r[0] for r in rows}
    finished = [r[1] for r in rows]
    assert len(started) == 1  # claimed together
    assert len(set(finished)) == CLAIM_BATCH and finished == sorted(finished)
    assert tracker.sql("SELECT status, attempts FROM delivery") == [("sent", 1)] * CLAIM_BATCH
    sent_at = [r[0] for r in tracker.sql("SELECT sent_at FROM delivery ORDER BY id")]
    assert [str(s) for s in sent_at] == [str(f) for f in finished]


@pytest.mark.sqlite_only
def test_a_claimed_batch_reads_its_messages_in_two_queries_whatever_its_size(gh_tracker, github):
    """Each claim carries its own alert's message (its rules' reasons too), read for the whole
    batch at once: the deliveries with their events, and their rule hits."""
    _tracker, engine = alerts(gh_tracker, github, CLAIM_BATCH)
    statements: list[str] = []
    connection = engine.store.db.connection()
    connection.set_trace_callback(statements.append)
    try:
        claims = engine.outbox.claim("welink", limit=CLAIM_BATCH, worker="test")
    finally:
        connection.set_trace_callback(None)
        engine.close()
    assert len(claims) == CLAIM_BATCH
    titles = {c.context.title for c in claims}
    assert titles == {f"DeepSeek-V{i} support" for i in range(CLAIM_BATCH)}
    assert all(c.context.reasons and all(c.context.reasons) for c in claims)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len([s for s in reads if "FROM rule_hit" in s]) == 1
    assert len([s for s in reads if "JOIN event" in s]) == 1


@pytest.mark.sqlite_only
def test_a_batchs_sends_are_recorded_in_the_transaction_that_claims_the_next_batch(
    gh_tracker, github
):
    """One write transaction between the last send of a batch and the first of the next: it
    records the sends and leases the next batch (one commit, not two). After a full batch the
    worker claims again at once, without first reading when the next delivery is due."""
    tracker, engine = alerts(gh_tracker, github, 2 * CLAIM_BATCH)
    statements: list[str] = []
    at_send: list[int] = []

    def trace_the_workers_connection(outgoing: Outgoing) -> None:
        if not at_send:  # the worker's own connection (one per thread)
            engine.store.db.connection().set_trace_callback(statements.append)
        at_send.append(len(statements))

    channel = Recorder(engine, trace_the_workers_connection)
    try:
        run_workers(engine, channel, lambda: len(channel.sent) == 2 * CLAIM_BATCH)
    finally:
        engine.close()
    between = statements[at_send[CLAIM_BATCH - 1] : at_send[CLAIM_BATCH]]
    begins = [s for s in between if s.upper().startswith("BEGIN")]
    assert len(begins) == 1, between
    assert any(s.startswith("UPDATE attempt SET outcome") for s in between)
    assert any(s.startswith("INSERT INTO attempt") for s in between)
    assert not [s for s in between if "MIN(next_attempt_at)" in s]
    rows = tracker.sql("SELECT status, attempts FROM delivery")
    assert rows == [("sent", 1)] * (2 * CLAIM_BATCH)


def test_a_delivery_is_leased_for_at_least_twice_the_longest_send_of_any_channel(
    gh_tracker, github, smtp
):
    """An e-mail send may take 3 × its step timeout (300 s here): a 120 s lease would let
    another worker claim and send it again while the first send still waits."""
    email = {
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "from_addr": "mrt@tracker.example",
        "to_list": ["oncall@example.com"],
        "ca_file": smtp.ca_file,
        "timeout_seconds": 100,
    }
    tracker = gh_tracker({"notify": {"email": email}, "delivery": {"lease_seconds": 120}})
    engine = tracker.engine()
    engine.open()
    try:
        assert engine.outbox.policy.lease_seconds == 605.0
    finally:
        engine.close()
    short = gh_tracker({"delivery": {"lease_seconds": 120}}).engine()  # WeLink: 10 s a send
    short.open()
    try:
        assert short.outbox.policy.lease_seconds == 120.0
    finally:
        short.close()
