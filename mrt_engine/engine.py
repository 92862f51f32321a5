"""The Engine: wires store, scheduler, sources, rules and delivery; start, stop, or run once."""

from __future__ import annotations

import gc
import logging
import os
import secrets as pysecrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from apscheduler.executors.pool import ThreadPoolExecutor as SchedulerPool
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from mrt_engine import __version__, sources
from mrt_engine.ai.client import AiClient
from mrt_engine.ai.similarity import Embeddings, fit_topics
from mrt_engine.ai.summary import Summarizer
from mrt_engine.ai.title_embeddings import TitleEmbeddings
from mrt_engine.ai.triage import Triage
from mrt_engine.components import build_components
from mrt_engine.config import Config
from mrt_engine.delivery.outbox import Outbox, OutboxPolicy
from mrt_engine.delivery.policy import channel_policies
from mrt_engine.delivery.worker import DeliveryPass, DeliveryWorkers
from mrt_engine.health import protected_rules
from mrt_engine.http import HttpClient, host_key
from mrt_engine.incident_clusters import cluster_settings
from mrt_engine.logs import log_context
from mrt_engine.notify.base import Channel
from mrt_engine.pipeline import Pipeline, PollOutcome, ensure_state, load_state
from mrt_engine.poll_lane import PollLane
from mrt_engine.poll_times import PollTimes, tick_for
from mrt_engine.rules.matcher import RuleSet
from mrt_engine.sd_notify import SystemdNotifier
from mrt_engine.sources.base import Source
from mrt_engine.staleness import StaleSources, stale_watches
from mrt_engine.state_cache import StateCache
from mrt_engine.store import engines
from mrt_engine.store.db import Store, open_store, prepare_folder, store_fault
from mrt_engine.store.lock import EngineLock
from mrt_engine.store.models import SourceState as SourceStateRow
from mrt_engine.store.retention import PruneReport, RetentionPolicy, prune
from mrt_engine.timeutil import Clock, utcnow
from mrt_engine.wording import plural

log = logging.getLogger(__name__)

CONTROL_INTERVAL_SECONDS = 1.0
# At most this long between two sources' first polls as the engine starts (see Engine.start).
FIRST_POLL_STEP_SECONDS = 0.05
# The first prune after start waits this long at most (then every retention.interval_seconds),
# so an engine restarted more often than daily still prunes, after its first polls.
FIRST_PRUNE_AFTER_SECONDS = 60.0
# How often CPython hands the GIL to another thread (default 5 ms). The engine's threads mostly
# call into SQLite and the network, and each call takes the GIL back when it returns; with the
# default, a poll thread evaluating rules makes every such return wait up to 5 ms, so polls
# queue behind each other instead of overlapping. 0.2 ms lets one poll write while another thinks
# (tests/perf/bench_pipeline.py measures it).
GIL_SWITCH_INTERVAL_SECONDS = 0.0002
# CPython's cycle collector runs after every 700 new containers (default): a poll makes
# thousands (a page of upstream objects, its events, their rows), almost none in a cycle and all
# freed by reference counting when the poll ends, so most collections walk young objects for
# nothing, and each tenth walks the older ones too. Every 10 000 containers, and with what the
# engine holds from its start (modules, config, compiled rules) frozen out of every collection
# (gc.freeze), the collector cost a poll about half as much CPU (tests/perf/bench_pipeline.py).
GC_YOUNG_THRESHOLD = 10_000
_frozen = False


def tune_interpreter() -> None:
    """Settings the engine's process runs best with (see GIL_SWITCH_INTERVAL_SECONDS and
    GC_YOUNG_THRESHOLD)."""
    global _frozen
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    young, *older = gc.get_threshold()
    if young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, *older)
    if not _frozen:  # once: what a process frozen later holds (another engine's) stays collectable
        _frozen = True
        gc.freeze()


def _poll_requests() -> list[str]:
    """The keys of the sources an operator asked to poll now."""
    query = SourceStateRow.select(SourceStateRow.source_key).where(
        SourceStateRow.poll_requested_at.is_null(False)
    )
    return [row.source_key for row in query]


def _lane(host: str) -> str:
    """The name of the scheduler executor that polls the sources of ``host``."""
    return f"polls {host}"


class Engine:
    """One running tracker over one store."""

    def __init__(
        self,
        config: Config,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Clock = utcnow,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self._environ = os.environ if environ is None else environ
        self.ai: AiClient | None = None  # the optional AI (issue 13), when ai.enabled
        self.components = build_components(
            config, os.environ if environ is None else environ, clock
        )
        self.stop_event = threading.Event()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{pysecrets.token_hex(3)}"
        self.http = HttpClient(
            config.http,
            stop=self.stop_event,
            clock=clock,
            transport=http_transport,
            poll_deadline_seconds=config.scheduler.poll_deadline_seconds,
        )
        for source in self.components.sources:
            self.http.set_host_defaults(
                source.api_base, sources.kinds()[source.platform].host_defaults
            )
        self.location = config.store_location
        # One engine per SQLite file; on PostgreSQL several engines share the store.
        self.lock = EngineLock(self.location.path) if self.location.is_sqlite else None
        self.store: Store | None = None
        self.pipeline: Pipeline | None = None
        self.outbox: Outbox | None = None
        self.workers: DeliveryWorkers | None = None
        self.scheduler: BackgroundScheduler | None = None
        self._source_locks = {s.key: threading.Lock() for s in self.components.sources}
        self._active_polls = 0
        self._active_lock = threading.Condition()
        self._stopped = threading.Event()
        self._retention: threading.Thread | None = None
        # On a shared store, the sources whose leases this engine holds (None: all of them).
        self.held: set[str] | None = None
        self._not_before: dict[str, datetime] = {}  # sources taken over: when they are due
        self.last_prune: PruneReport | None = None
        self.staleness: StaleSources | None = None  # sources without a success for too long
        # The sources an operator asked to poll now, as last read (re-read after any commit).
        self._requests: StateCache[list[str]] = StateCache(self.location)

    @property
    def sources(self) -> list[Source]:
        return self.components.sources

    @property
    def channels(self) -> dict[str, Channel]:
        return self.components.channels

    @property
    def rules(self) -> RuleSet:
        return self.components.rules

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Take the store (refusing if another engine holds it) and recover what a crash left.

        A store that cannot be used (folder, lock file, a damaged file) raises one
        :class:`~mrt_engine.store.db.StoreError`, with nothing left open.
        """
        tune_interpreter()
        for warning in self.components.warnings:
            log.warning("%s", warning)
        if self.lock is not None:
            prepare_folder(self.location.path)
            self.lock.acquire()
        try:
            self.store = open_store(self.location)
            self._recover()
        except BaseException as exc:
            fault = self._fault(exc) if isinstance(exc, Exception) else None
            if self.store is not None:
                self.store.close()
                self.store = None
            if self.lock is not None:
                self.lock.release()
            if fault is not None:
                raise fault from None
            raise

    # ------------------------------------------------------------------ shared stores
    @property
    def lease_seconds(self) -> float:
        return self.config.scheduler.engine_lease_seconds

    def _take_back_claims(self) -> int:
        """Deliveries claimed by engines that are gone: all claims on a store of one engine
        (this one holds its lock), those of engines no longer live on a shared store."""
        assert self.outbox is not None and self.store is not None
        if not self.store.shared:
            return self.outbox.recover()
        live_since = self.clock() - timedelta(seconds=self.lease_seconds)
        return self.outbox.recover(live_since=live_since)

    def renew_leases(self) -> None:
        """On a shared store: heartbeat, and hold this engine's share of its sources (the
        scheduler polls only those). A store fault is one log line; the leases then run out
        and other engines take the sources."""
        store = self.store
        if store is None or not store.shared or self.stop_event.is_set():
            return
        try:
            held = engines.take_leases(
                store,
                self.owner,
                [s.key for s in self.sources],
                now=self.clock(),
                lease_seconds=self.lease_seconds,
                before_release=lambda keys: self.flush_idle_polls(),
            )
            if self.held is not None:
                self._wait_for_due(store, held - self.held)
            released = self._take_back_claims()
            store.fold_counters()
        except Exception as exc:
            fault = store.fault(exc)
            if fault is None:
                log.exception("cannot renew the engine's leases")
            else:
                log.error("cannot renew the engine's leases: %s", fault)
            return
        if held != self.held:
            log.info(
                "engine %s polls %s of %s",
                self.owner,
                plural(len(held), "source"),
                len(self.sources),
            )
        self.held = held
        if released:
            log.warning("took back %s of engines that are gone", plural(released, "delivery claim"))

    def _wait_for_due(self, store: Store, taken: set[str]) -> None:
        """Sources taken over from another engine are next polled when they are due after
        that engine's last poll (written by it before it gave them back), not at once."""
        by_key = {s.key: s for s in self.sources}
        for key in taken:
            row = load_state(store, key)
            source = by_key.get(key)
            if row is not None and row.last_poll_at is not None and source is not None:
                self._not_before[key] = row.last_poll_at + timedelta(seconds=source.interval)

    def _fault(self, exc: Exception) -> Any:
        """The store fault behind ``exc`` (a one-line StoreError), or None."""
        if self.location.is_sqlite:
            return store_fault(exc, self.location.path)
        from mrt_engine.store import postgres

        return postgres.store_fault(exc, self.location)

    def _delivery_lease(self) -> float:
        """``delivery.lease_seconds``, raised to twice the longest send of any channel (and
        5 s): a worker sends a claim only while half its lease is left, so no send, and no
        earlier send of its batch waiting to be recorded, outlives its lease and is claimed
        and sent again by another worker meanwhile."""
        configured = self.config.delivery.lease_seconds
        sends = [channel.send_seconds() or 0.0 for channel in self.channels.values()]
        needed = 2 * max(sends, default=0.0) + 5
        if needed <= configured:
            return configured
        log.info(
            "deliveries are leased for %gs, not delivery.lease_seconds = %gs: twice the longest"
            " send a channel may take, and 5 s",
            needed,
            configured,
        )
        return needed

    def _recover(self) -> None:
        """Wire outbox, pipeline and workers to the open store; take back a dead engine's claims."""
        assert self.store is not None
        delivery = self.config.delivery
        self.outbox = Outbox(
            self.store,
            owner=self.owner,
            policy=OutboxPolicy(
                max_attempts=delivery.max_attempts,
                backoff_initial=delivery.backoff_initial_seconds,
                backoff_max=delivery.backoff_max_seconds,
                jitter=delivery.jitter,
                lease_seconds=self._delivery_lease(),
            ),
            clock=self.clock,
            channels=channel_policies(self.config),
        )
        now = self.clock()
        engines.register(
            self.store,
            self.owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            now=now,
        )
        released = self._take_back_claims()
        if released:
            log.warning(
                "took back %s left by a previous engine", plural(released, "delivery claim")
            )
        fit_topics(self.rules, self.store)  # topic rules work without the AI too
        enrich = self._optional_ai()
        health = protected_rules(list(self.channels))
        self.pipeline = Pipeline(
            self.store,
            self.http,
            self.rules,
            clock=self.clock,
            max_backoff_seconds=self.config.scheduler.max_backoff_seconds,
            health=health,
            unhealthy_after=self.config.scheduler.unhealthy_after_failures,
        )
        self.pipeline.incident_window = timedelta(days=self.config.incidents.window_days)
        embeddings = None  # AI3 by the endpoint's embeddings when it has a model (else lexical)
        if enrich is not None and self.ai is not None and self.config.ai.embedding_model:
            embeddings = TitleEmbeddings(self.ai)
        self.pipeline.clusters = cluster_settings(self.config, embeddings)
        for source in self.sources:
            ensure_state(self.store, source, now)
        watches = stale_watches(self.config.scheduler, self.sources)
        self.staleness = StaleSources(self.store, health, watches, self.clock)
        self.staleness.load()
        if self.store.shared:
            self.renew_leases()
        self.workers = DeliveryWorkers(
            self.outbox,
            self.channels,
            workers=delivery.workers,
            stop=self.stop_event,
            enrich=enrich,
        )
        log.info(
            "engine %s opened %s: %s, %s, %s",
            self.owner,
            self.location,
            plural(len(self.sources), "source"),
            plural(len(self.channels), "channel"),
            plural(len(self.rules.rules), "rule"),
        )

    def _optional_ai(self) -> Summarizer | None:
        """Start the optional AI (``ai.enabled``): topic rules judged by embeddings when
        ``ai.embedding_model`` is set; the summary step for messages (``None``: AI off)."""
        if not self.config.ai.enabled or self.store is None:
            return None
        if self.ai is not None:  # opened again
            self.ai.close()
        self.ai = AiClient(
            self.config.ai,
            self.store,
            environ=self._environ,
            clock=self.clock,
            stop=self.stop_event,
            user_agent=self.config.http.user_agent,
        )
        topic_rules = self.rules.topic_rules
        if self.config.ai.embedding_model and topic_rules:
            self.rules.use_similarity(Embeddings(self.ai, topic_rules[0].similarity))
        critical = [rule.name for rule in self.config.rules if rule.critical]
        if self.config.ai.triage:
            self.rules.triage = Triage(self.config.ai, self.ai, critical)
        return Summarizer(self.ai, critical)

    def run_once(self) -> int:
        """Poll every source once, attempt every due delivery once. Exit status 0 or 1; a store
        that cannot be used raises :class:`~mrt_engine.store.db.StoreError` (exit status 2)."""
        self.open()
        store = self.store
        assert store is not None
        try:
            outcomes = self.poll_all()
            if store.damage is not None:  # every poll said so already; deliveries would too
                raise store.damage
            report = self.deliver_once()
        except Exception as exc:
            fault = store.fault(exc)
            if fault is None:
                raise
            raise fault from None
        finally:
            self.close()
        failed_sources = [o for o in outcomes if o.failed]
        for o in failed_sources:
            with log_context(source=o.source_key):
                log.error("source %s: %s", o.source_key, o.error)
        log.info(
            "once: %s polled, %d failed; %s, %d sent, %d failed",
            plural(len(outcomes), "source"),
            len(failed_sources),
            plural(report.attempted, "delivery attempt"),
            report.sent,
            report.failed,
        )
        return 1 if failed_sources or report.failed else 0

    def poll_all(self) -> list[PollOutcome]:
        """Poll every source once, concurrently: each host in its own lane (see :meth:`start`)."""
        lanes = self.poll_lanes()
        pools = {
            host: ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"poll-{host}")
            for host, size in lanes.items()
        }
        try:
            futures = [
                pools[host_key(source.api_base)].submit(self.poll_source, source)
                for source in self.sources
            ]
            return [future.result() for future in futures]
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True)

    def poll_lanes(self) -> dict[str, int]:
        """Poll workers per upstream host (``host:port``): the host's request concurrency
        (``http.hosts`` or the platform's default), at most ``scheduler.poll_workers``."""
        lanes: dict[str, int] = {}
        cap = self.config.scheduler.poll_workers
        for source in self.sources:
            size = min(self.http.host_policy(source.api_base).max_concurrency or 1, cap)
            lanes[host_key(source.api_base)] = size
        return lanes

    def deliver_once(self) -> DeliveryPass:
        assert self.workers is not None
        return self.workers.deliver_due_once()

    def poll_source(self, source: Source, force: bool = False) -> PollOutcome:
        """One poll of ``source``; never two at once for one source."""
        assert self.pipeline is not None
        with log_context(source=source.key):  # every line about this poll names its source
            outcome = self._poll_source(source, force)
        if self.staleness is not None:
            self.staleness.saw(source.key, outcome.status)
        return outcome

    def _poll_source(self, source: Source, force: bool) -> PollOutcome:
        lock = self._source_locks[source.key]
        if not lock.acquire(blocking=False):
            return PollOutcome(source.key, "busy", error="a poll of this source is running")
        with self._active_lock:
            self._active_polls += 1
        try:
            if self.stop_event.is_set():
                return PollOutcome(source.key, "discarded", error="engine stopping")
            if self.held is not None and source.key not in self.held:
                return PollOutcome(source.key, "elsewhere", error="another engine polls it")
            due = self._not_before.get(source.key)
            if due is not None and not force:
                if self.clock() < due:
                    return PollOutcome(source.key, "not_due", error="polled by another engine")
                self._not_before.pop(source.key, None)
            outcome = self.pipeline.poll(source, force=force)
            if outcome.alerts_created and self.workers is not None:
                self.workers.notify()
            return outcome
        finally:
            lock.release()
            with self._active_lock:
                self._active_polls -= 1
                self._active_lock.notify_all()

    def start(self) -> None:
        """Run in the background: the scheduler polls, the workers deliver.

        Each upstream host gets its own APScheduler executor (a "lane") with as many poll
        workers as the host takes requests at once (:meth:`poll_lanes`). A poll of a slow host
        can then only hold a worker of its own host: the host's further polls wait for its
        lane, while every other host's polls run on their own workers, on schedule. (With one
        shared pool, five repositories on a trickling host held every worker and no other
        source was polled.) More workers for one host would mostly wait for its request slots.
        A lane runs its due polls on one thread while they are quick and spreads them over its
        workers only when one is slow (:mod:`mrt_engine.poll_lane`).
        """
        if self.store is None:
            self.open()
        assert self.workers is not None
        executors: dict[str, Any] = {"default": SchedulerPool(1)}  # the control job
        for host, size in self.poll_lanes().items():
            executors[_lane(host)] = PollLane(size, name=f"poll-{host}")
        scheduler = BackgroundScheduler(executors=executors, timezone="UTC")
        now = self.clock()
        phase = PollTimes.phase()  # one for all, so polls on the same ticks start together
        count = len(self.sources)
        for i, source in enumerate(self.sources):
            # Spread the first polls a little so a restart does not burst every host, and within
            # one tick: each source's later polls are due an interval after its first, so first
            # polls spread wider than a tick put the later ones on as many ticks (20 sources 50
            # ms apart, polled every second: every one of its five ticks), each tick a wake-up
            # of the scheduler and of the poll workers. (No ticks: 50 ms apart, as before.)
            tick = self._tick(source.interval)
            step = min(FIRST_POLL_STEP_SECONDS, tick / count) if tick else FIRST_POLL_STEP_SECONDS
            first = now + timedelta(seconds=step * i)
            times = PollTimes(source.interval, first, tick, phase)
            scheduler.add_job(
                self.poll_source,
                times,
                args=[source],
                id=source.key,
                name=f"poll {source.key}",
                executor=_lane(host_key(source.api_base)),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(int(source.interval), 1),
                next_run_time=times.first_run(),
            )
        # On the ticks of the sources polled every second, if any: one wake-up for both (and
        # from the scheduler's time, as APScheduler's interval was, not the engine's clock).
        control = PollTimes(
            CONTROL_INTERVAL_SECONDS,
            datetime.now(UTC),
            self._tick(CONTROL_INTERVAL_SECONDS),
            phase,
        )
        scheduler.add_job(
            self._control,
            control,
            id="control",
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            self.flush_idle_polls,
            IntervalTrigger(seconds=self.config.scheduler.idle_flush_seconds, timezone="UTC"),
            id="flush idle polls",
            max_instances=1,
            coalesce=True,
        )
        if self.store is not None and self.store.shared:
            scheduler.add_job(
                self.renew_leases,
                IntervalTrigger(seconds=self.lease_seconds / 3, timezone="UTC"),
                id="leases",
                max_instances=1,
                coalesce=True,
            )
        self.scheduler = scheduler
        scheduler.start()
        self.workers.start()
        if self.config.retention.enabled:
            self._retention = threading.Thread(
                target=self._prune_every_interval, name="retention", daemon=True
            )
            self._retention.start()
        log.info("engine running: %s scheduled", plural(len(self.sources), "source"))

    def _tick(self, interval: float) -> float:
        """The tick of polls every ``interval`` seconds (:mod:`mrt_engine.poll_times`)."""
        jitter = self.config.scheduler.jitter_seconds
        if jitter is None:
            jitter = min(interval * 0.1, 30.0)
        return tick_for(interval, jitter)

    def _control(self) -> None:
        """Pick up operator requests written to the store (poll now), from any process, and
        wake the delivery workers when there may be work for them (they sleep until then)."""
        store = self.store
        if store is None or self.scheduler is None or self.stop_event.is_set():
            return
        try:
            self._take_poll_requests(store)
        except Exception as exc:
            fault = store.fault(exc)
            if fault is None:
                log.exception("control: cannot read poll requests")
            else:  # one line: the daemon loop stops the engine if the file is damaged
                log.error("control: cannot read poll requests: %s", fault)
        self.check_stale()
        if self.workers is not None:  # a resend from elsewhere, a retry now due
            self.workers.look()

    def check_stale(self) -> None:
        """Commit the stale / fresh-again alerts now due (:mod:`mrt_engine.staleness`); a
        store fault is one log line, and what it prevented is tried at the next check."""
        store, staleness = self.store, self.staleness
        if store is None or staleness is None or self.stop_event.is_set():
            return
        try:
            alerts = staleness.check(self.held)
        except Exception as exc:
            fault = store.fault(exc)
            if fault is None:
                log.exception("control: cannot record stale sources")
            else:
                log.error("control: cannot record stale sources: %s", fault)
            return
        if alerts and self.workers is not None:
            self.workers.notify()

    def flush_idle_polls(self) -> None:
        """Write the times and figures of the polls that changed nothing (see
        :mod:`mrt_engine.idle_polls`); a store fault is one log line, and they are kept for the
        next flush."""
        store, pipeline = self.store, self.pipeline
        if store is None or pipeline is None:
            return
        try:
            pipeline.idle.flush(store)
        except Exception as exc:
            fault = store.fault(exc)
            if fault is None:
                log.exception("could not write the times of idle polls")
            else:
                log.error("could not write the times of idle polls: %s", fault)

    def _take_poll_requests(self, store: Store) -> None:
        assert self.scheduler is not None
        # A request is a commit: while none was made, this reads nothing from the store.
        requested = self._requests.get("poll requests", _poll_requests)
        by_key = {s.key: s for s in self.sources}
        for key in requested:
            source = by_key.get(key)
            if source is None:
                continue
            with store.write():
                SourceStateRow.update(poll_requested_at=None).where(
                    SourceStateRow.source_key == key
                ).execute()
            self.scheduler.add_job(
                self.poll_source,
                args=[source, True],
                id=f"{source.key}:now",
                replace_existing=True,
                executor=_lane(host_key(source.api_base)),
            )

    def _prune_every_interval(self) -> None:
        """Prune the store soon after start, then every ``retention.interval_seconds``, in
        small batches that let polls commit between them; a stop ends it between two."""
        interval = self.config.retention.interval_seconds
        wait = min(interval, FIRST_PRUNE_AFTER_SECONDS)
        while not self.stop_event.wait(wait):
            wait = interval
            store = self.store
            if store is None:
                return
            try:
                # Engines sharing a store take turns: one prunes, the others skip this round.
                with store.only_one("retention") as mine:
                    if not mine:
                        log.info("retention: another engine is pruning the store")
                        continue
                    report = prune(
                        store,
                        RetentionPolicy.of(self.config.retention),
                        self.clock(),
                        stop=self.stop_event,
                    )
            except Exception as exc:
                fault = store.fault(exc)
                if fault is None:
                    log.exception("retention: the prune failed (the next one tries again)")
                else:  # one line: the daemon loop stops the engine if the file is damaged
                    log.error("retention: the prune failed (the next one tries again): %s", fault)
                continue
            self.last_prune = report
            if report.rows:
                log.info(
                    "retention: %s in %s (the longest held the store %.0f ms)%s",
                    ", ".join(f"{p.action} {p.rows:,} {p.what}" for p in report.parts if p.rows),
                    plural(report.batches, "batch", "batches"),
                    report.longest_batch_ms,
                    "; stopped by the shutdown" if report.stopped else "",
                )

    def stop(self) -> None:
        """Stop cleanly: finish the transaction in flight, release leases, close. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        budget = self.config.scheduler.shutdown_timeout_seconds
        deadline = time.monotonic() + budget
        log.info("engine stopping")
        self.stop_event.set()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        # Requests waiting on a slow upstream are cut at once; their polls see the stop and
        # discard what they fetched. Polls in their commit finish it.
        self.http.abort()
        with self._active_lock:
            self._active_lock.wait_for(
                lambda: self._active_polls == 0, timeout=max(deadline - time.monotonic() - 0.5, 0.2)
            )
        if self.workers is not None:
            self.workers.join(max(deadline - time.monotonic() - 0.3, 0.1))
        if self._retention is not None:  # it stops between two batches
            self._retention.join(max(deadline - time.monotonic() - 0.2, 0.1))
        self.close()
        log.info("engine stopped")

    def close(self) -> None:
        self.flush_idle_polls()
        if self.outbox is not None and self.store is not None:
            try:
                self.outbox.release()
            except Exception as exc:
                fault = self.store.fault(exc)
                if fault is None:
                    log.exception("could not release delivery leases (the next engine will)")
                else:
                    log.error("could not release delivery leases (the next engine will): %s", fault)
        if self.store is not None:
            try:
                engines.stopped(self.store, self.owner, self.clock())
            except Exception as exc:
                fault = self.store.fault(exc)
                if fault is None:
                    log.exception("could not give back the engine's sources (they run out)")
                else:
                    log.error("could not give back the engine's sources (they run out): %s", fault)
        self.http.close()
        if self.ai is not None:
            self.ai.close()
        for channel in self.channels.values():
            channel.close()
        if self.pipeline is not None:
            self.pipeline.close()
        if self.workers is not None:
            self.workers.close()
        self._requests.close()
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.lock is not None:
            self.lock.release()

    def run_forever(self) -> int:
        """Daemon mode: run until SIGTERM or SIGINT, then stop cleanly. Exit status 0.

        A damaged store file stops the engine: one error line, exit status 2. An
        operator expects a daemon either to work or to stop loudly: every poll would fail on
        that file (and its failure could not even be recorded), no alert could be committed or
        sent, and no retry repairs a file; a service manager shows a stopped unit and its last
        line, where a running one would only log the same error every interval. Faults that can
        pass (a locked or full disk) are recorded per poll instead, or logged in one line each
        when even that fails, and the engine goes on.
        """
        systemd = SystemdNotifier()  # readiness and watchdog for a Type=notify unit
        self._install_signal_handlers()
        systemd.status("opening the store")
        self.start()
        systemd.ready(self.status_line())
        store = self.store
        try:
            while not self.stop_event.wait(systemd.wait_seconds(1.0)):
                if store is not None and store.damage is not None:
                    log.error("engine stopping: %s", store.damage)
                    break
                systemd.keep_alive()
                systemd.status(self.status_line())
        finally:
            systemd.stopping()
            self.stop()
        return 2 if store is not None and store.damage is not None else 0

    def status_line(self) -> str:
        """What the engine does, in one line (``systemctl status`` shows it)."""
        line = f"polling {plural(len(self.sources), 'source')}"
        stale = sorted(self.staleness.stale) if self.staleness is not None else []
        if stale:
            line += f"; stale: {', '.join(stale[:3])}{' …' if len(stale) > 3 else ''}"
        return line

    def _install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            if self.stop_event.is_set():
                log.warning("already stopping")
                return
            log.info("received %s", signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
