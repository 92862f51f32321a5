"""Delivery workers: threads that drain the outbox, each channel with its own workers.

Channels are independent: a WeLink outage (or a slow SMTP server) never holds e-mail back,
because every channel has its own threads and its rows retry on their own schedule.

An idle worker sleeps until it is woken, not on a timer: every worker thread of every channel
waking twice a second to ask the store whether anything is due cost an idle engine CPU for
nothing (a wake-up of a sleeping thread is what an idle engine pays most for). Work reaches a
worker by one of three ways: the engine's own commits of alerts call :meth:`DeliveryWorkers.notify`
at once; the engine's control job calls :meth:`DeliveryWorkers.look` every second (on a tick it
wakes for anyway), which wakes the workers when anything was committed to the store since its
last look (another process's resend or requeue, another engine's alert on a shared store, a
claim taken back) or when a channel's next delivery, as last read, has come due by the
engine's clock. A worker that knows when its channel's next delivery is due (a retry's backoff)
also wakes then by itself. So a delivery waits at most about a second for a worker, and an idle
engine's workers do not run at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from mrt_engine.delivery.outbox import Claim, Outbox
from mrt_engine.delivery.policy import PLAIN
from mrt_engine.logs import log_context
from mrt_engine.notify.base import Channel, Outgoing, SendResult
from mrt_engine.secrets import redact
from mrt_engine.silence import Silence, SilenceTarget, silencing
from mrt_engine.silences import ActiveSilences, active_now
from mrt_engine.state_cache import StateCache

log = logging.getLogger(__name__)

# A worker nobody woke looks by itself after this long anyway (in case its waker is gone).
MAX_IDLE_SECONDS = 60.0
# A worker claims up to this many due deliveries in one transaction and sends them in turn:
# one write lock, one read of the queue and one look at when the next is due for several sends
# (a claim of one each was a third of a delivery's CPU in the store). Each is leased and has its
# in_flight attempt written in that transaction, as a claim of one; one whose lease runs short
# before its turn, or is still unsent at a stop, is given back (Outbox.give_back).
CLAIM_BATCH = 4


@dataclass
class DeliveryPass:
    """What one ``--once`` delivery pass did."""

    attempted: int = 0
    sent: int = 0
    failed: int = 0
    silenced: int = 0  # stopped by a silence before the send: not a failure
    statuses: dict[int, str] = field(default_factory=dict)


def send_claim(
    outbox: Outbox,
    channels: Mapping[str, Channel],
    claim: Claim,
    silences: ActiveSilences | None = None,
) -> str:
    """Send one claimed delivery, record the attempt, return the delivery's new status.

    A silence made after the hit but before this send stops it (``silenced``: see
    :meth:`Outbox.silence`); ``silences`` are the worker's, kept while the store is unchanged
    (without it they are read)."""
    with claim_context(claim):  # every line about this send names the delivery
        return _send_claim(outbox, channels, claim, silences)


def claim_context(claim: Claim) -> log_context:
    """The log context of a line about ``claim``: its delivery, channel, event and source."""
    c = claim.context
    return log_context(
        delivery=claim.delivery_id,
        channel=claim.channel,
        fingerprint=c.fingerprint,
        source=c.source_key,
    )


def _send_claim(
    outbox: Outbox,
    channels: Mapping[str, Channel],
    claim: Claim,
    silences: ActiveSilences | None,
) -> str:
    if not claim.released:
        silence = _silencing(outbox, claim, silences)
        if silence is not None:
            why = f"silenced before the send by silence {silence.id} ({silence.describe()})"
            return outbox.silence(claim, silence.id, why)
    channel = channels.get(claim.channel)
    t0 = time.monotonic()
    if channel is None:
        result = SendResult(ok=False, error=f"channel {claim.channel!r} is not configured")
    else:
        try:
            result = channel.send(Outgoing(claim.delivery_id, claim.attempt_number, claim.context))
        except Exception as exc:  # a channel bug is a failed attempt, never a lost alert
            error = redact(f"{type(exc).__name__}: {exc}")
            # One line, like a source's crash; the traceback is there at --log-level debug.
            log.error(
                "channel %s raised while sending delivery %d: %s",
                claim.channel,
                claim.delivery_id,
                error,
            )
            log.debug("the channel's traceback", exc_info=True)
            result = SendResult(ok=False, error=error)
    duration_ms = int((time.monotonic() - t0) * 1000)
    return outbox.complete(claim, result, duration_ms)


def _silencing(outbox: Outbox, claim: Claim, silences: ActiveSilences | None) -> Silence | None:
    """The active silence that matches the claim's alert, if any (never a protected one's).

    A bundle's alerts are matched at its claim instead (:meth:`Planner._unsilenced`): one
    silence must not hold back the others it carries."""
    c = claim.context
    if c.items:
        return None
    target = SilenceTarget(c.source_key, c.resource_id, c.event_type, c.rules, c.title, c.summary)
    if target.protected:
        return None
    now = outbox.clock()
    return silencing(active_now(outbox.store, now, silences), target, now)


class DeliveryWorkers:
    """``workers`` threads per channel, woken by new alerts or by their next due time."""

    def __init__(
        self,
        outbox: Outbox,
        channels: Mapping[str, Channel],
        *,
        workers: int,
        stop: threading.Event,
    ) -> None:
        self.outbox = outbox
        self.channels = dict(channels)
        self.workers = workers
        self.stop = stop
        self._threads: list[threading.Thread] = []
        # Bumped by every wake-up: a worker sleeps until it moves (none is lost between a
        # worker finding nothing due and its going to sleep).
        self._wakes = 0
        self._woken = threading.Condition()
        # When each channel's next delivery is due, as last read: the same until a commit (an
        # alert, a claim, a resend from another process), so an idle check reads no table.
        self._due: StateCache[datetime | None] = StateCache(outbox.store.location)
        self._waiting: dict[str, datetime] = {}  # channels whose next delivery is not due yet
        self._looked: object = None  # the store's version at the last look
        self._silences = ActiveSilences(outbox.store)  # what the sends check, as _due

    def start(self) -> None:
        for name in self.channels:
            for i in range(self.workers):
                thread = threading.Thread(
                    target=self._run,
                    args=(name, f"{name}-{i + 1}"),
                    name=f"deliver-{name}-{i + 1}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)

    def notify(self) -> None:
        """New work was committed: wake the idle workers now."""
        with self._woken:
            self._wakes += 1
            self._woken.notify_all()

    def look(self) -> None:
        """Wake the idle workers if there may be work for them: anything committed to the
        store since the last look, or a channel's next delivery now due (see the module's
        docstring; the engine calls this every second)."""
        version = self._due.version()  # None: cannot tell (or PostgreSQL): as if changed
        changed = version is None or version != self._looked
        self._looked = version
        if not changed:
            now = self.outbox.clock()
            changed = any(due <= now for due in list(self._waiting.values()))
        if changed:
            self.notify()

    def _run(self, channel: str, worker: str) -> None:
        with log_context(channel=channel):  # every line of this worker names its channel
            self._work(channel, worker)

    def _work(self, channel: str, worker: str) -> None:
        while not self.stop.is_set():
            wakes = self._wakes  # before looking: a wake-up from now on is not missed
            try:
                claims = self._claim_if_due(channel, worker)
            except Exception as exc:
                self._log_failure(exc, f"delivery worker {worker} could not read the outbox")
                self.stop.wait(2.0)
                continue
            if not claims:
                self._sleep(channel, since=wakes)
                continue
            for i, claim in enumerate(claims):
                if self.stop.is_set() or not self.outbox.time_to_send(claim):
                    self._give_back(claims[i:], worker)
                    break
                try:
                    send_claim(self.outbox, self.channels, claim, self._silences)
                except Exception as exc:
                    # The lease expires and another worker retries; the attempt stays in_flight.
                    with claim_context(claim):
                        self._log_failure(
                            exc,
                            f"delivery worker {worker} could not record delivery"
                            f" {claim.delivery_id}",
                        )

    def _give_back(self, claims: list[Claim], worker: str) -> None:
        try:
            self.outbox.give_back(claims)
        except Exception as exc:  # their leases expire and another worker sends them
            self._log_failure(exc, f"delivery worker {worker} could not give back its claims")

    def _sleep(self, channel: str, since: int) -> None:
        """Until a wake-up after the ``since``-th one, the stop, or the channel's next delivery
        as last read comes due (a retry needs no waker), at most MAX_IDLE_SECONDS."""
        timeout = MAX_IDLE_SECONDS
        due = self._waiting.get(channel)
        if due is not None:
            timeout = min(timeout, max((due - self.outbox.clock()).total_seconds(), 0.0))
        with self._woken:
            self._woken.wait_for(lambda: self._wakes != since or self.stop.is_set(), timeout)

    def _log_failure(self, exc: Exception, what: str) -> None:
        """A store fault in one line (the daemon stops on a damaged file); a bug with its
        traceback."""
        fault = self.outbox.store.fault(exc)
        if fault is None:
            log.exception("%s", what)
        else:
            log.error("%s: %s", what, fault)

    def _claim_if_due(self, channel: str, worker: str) -> list[Claim]:
        due = self._due.get(channel, lambda: self.outbox.next_due(channel))
        if due is None or due > self.outbox.clock():
            if due is None:
                self._waiting.pop(channel, None)
            else:
                self._waiting[channel] = due
            return []
        self._waiting.pop(channel, None)
        # A channel that groups, folds or holds a digest plans each message at its claim.
        plain = self.outbox.channels.get(channel, PLAIN).plain
        return self.outbox.claim(channel, limit=CLAIM_BATCH if plain else 1, worker=worker)

    def join(self, timeout: float) -> bool:
        """Wait for workers to finish their current send; ``True`` if all stopped in time."""
        self.notify()  # the stop is set: idle workers wake to see it
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        return not any(t.is_alive() for t in self._threads)

    def close(self) -> None:
        """Let go of the connection that watches the store (the engine is closing)."""
        self._due.close()
        self._silences.close()

    def deliver_due_once(self) -> DeliveryPass:
        """Attempt every due delivery once (``--once``), each channel concurrently."""
        report = DeliveryPass()
        lock = threading.Lock()
        tried: set[int] = set()  # shared, so no delivery is tried twice in one pass

        def drain(channel: str) -> None:
            while not self.stop.is_set():
                with lock:
                    exclude = list(tried)
                claims = self.outbox.claim(
                    channel, limit=1, worker=f"{channel}-once", exclude=exclude
                )
                if not claims:
                    return
                for claim in claims:
                    with lock:
                        tried.add(claim.delivery_id)
                    status = send_claim(self.outbox, self.channels, claim, self._silences)
                    with lock:
                        report.attempted += 1
                        report.statuses[claim.delivery_id] = status
                        if status == "sent":
                            report.sent += 1
                        elif status == "silenced":
                            report.silenced += 1
                        else:
                            report.failed += 1

        jobs = [c for c in self.channels for _ in range(self.workers)]
        if not jobs:
            return report
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="deliver-once") as pool:
            for future in [pool.submit(drain, c) for c in jobs]:
                future.result()
        return report
