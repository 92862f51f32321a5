"""What each ``mrt-engine`` subcommand does: open the config or store, call the engine or an
operation, print the result (text or ``--json``). Parsing lives in :mod:`mrt_engine.cli`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mrt_engine import timeutil
from mrt_engine.delivery import STATUSES
from mrt_engine.wording import plural, size

# Each command imports what it needs (the config's pydantic models, the store's peewee, httpx):
# `mrt-engine --help` and argument errors import none of them (tests/test_startup.py).
if TYPE_CHECKING:
    from mrt_engine.config import Config
    from mrt_engine.store import queries
    from mrt_engine.store.db import Store

log = logging.getLogger("mrt_engine")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments: exit 2."""


def _fmt_time(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "-"
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    if now is not None:
        text += f" ({timeutil.humanize_age(value, now)})"
    return text


def _print_json(data: Any) -> None:
    from mrt_engine.store import queries

    print(json.dumps(queries.to_plain(data), indent=2, ensure_ascii=False))


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return timeutil.parse_when(value)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}") from None


# ---------------------------------------------------------------------- config and store
def _config(args: argparse.Namespace) -> Config:
    from mrt_engine.config import load_config

    path = args.config or os.environ.get("MRT_CONFIG")
    if not path:
        raise UsageError("no config given: use --config FILE (or set MRT_CONFIG)")
    return load_config(path)


def _store_path(args: argparse.Namespace) -> Any:
    """``--db`` (a SQLite path or a store URL), or where the config's ``state`` puts the store.
    A ``--db postgresql://`` URL takes its password from the config's ``state.password_env``
    when a config is given, else from libpq's own ``PGPASSWORD`` or ``~/.pgpass``."""
    if getattr(args, "db", None):
        if "://" in args.db and (args.config or os.environ.get("MRT_CONFIG")):
            from mrt_engine.store.location import parse_location

            return parse_location(args.db, password_env=_config(args).state.password_env)
        return args.db
    return _config(args).store_location


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[Store]:
    """The store of ``--db`` or of the config, closed again when the command is done. A store
    that fails under the command (a damaged file, a full disk) is one StoreError: exit 2."""
    from mrt_engine.store.db import open_store

    store = open_store(_store_path(args), create=False)
    try:
        yield store
    except Exception as exc:
        fault = store.fault(exc)
        if fault is None:
            raise
        raise fault from None
    finally:
        store.close()


# ---------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from mrt_engine.engine import Engine
    from mrt_engine.logs import setup_logging

    config = _config(args)
    setup_logging(args.log_format or config.log.format, args.log_level or config.log.level)
    engine = Engine(config)
    if args.once:
        return engine.run_once()
    exporter = _exporter(config, args.metrics_port, engine)
    try:
        return engine.run_forever()
    finally:
        if exporter is not None:
            exporter.close()


def _exporter(config: Any, port: int | None, engine: Any) -> Any:
    """The Prometheus exporter ``run`` was asked for, listening before the engine starts (a
    port it cannot have is one line and exit 2); it reads the engine's store once open."""
    from mrt_engine import prometheus

    where = prometheus.configured(config, port)
    return prometheus.listen(*where, lambda: engine.store) if where else None


def cmd_check(args: argparse.Namespace) -> int:
    from mrt_engine.components import build_components
    from mrt_engine.store.db import StoreError, check_location

    config = _config(args)
    components = build_components(config, os.environ)
    for channel in components.channels.values():
        channel.close()
    # What `run` would meet opening its store, without creating the database.
    location = config.store_location
    problems = check_location(location)
    if problems:
        key = "state.sqlite_path" if location.is_sqlite else "state.url"
        raise StoreError("; ".join(f"{key}: {p}" for p in problems))
    for warning in components.warnings:
        print(f"warning: {warning}")
    print(f"config OK: {config.path}")
    print(f"  store    {location}")
    for source in components.sources:
        print(f"  source   {source.key}  every {source.interval:g}s  ({source.api_base})")
    for name, channel in components.channels.items():
        print(f"  channel  {name}: {channel.describe()}")
    for rule in components.rules.rules:
        print(
            f"  rule     {rule.name}: {rule.action}, priority {rule.priority}, channels {', '.join(rule.channels) or '-'}"
        )
    return EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:
    """The figures of every source and channel since ``--since`` (mrt_engine/metrics.py)."""
    from mrt_engine import metrics

    since = None if args.since == "all" else _when(args.since, "--since")
    with _store(args) as store:
        found = metrics.figures(store, since, timeutil.utcnow())
    if args.json:
        _print_json(found.to_json())
    else:
        print(metrics.render_table(found))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from mrt_engine.store import queries

    with _store(args) as store:
        states = queries.source_states()
        counts = queries.outbox_counts()
        now = timeutil.utcnow()
        running = _engines(args, store, now)
        if args.json:
            report = {"store": str(store), "sources": states, "outbox": counts}
            if running is not None:
                report["engines"] = running
            _print_json(report)
            return EXIT_OK
        print(f"store {store}")
        if running is not None:
            live = [e for e in running if e.live]
            print(f"\nengines sharing the store: {len(live)} live")
            for e in running:
                state = "live" if e.live else ("stopped" if e.stopped_at else "gone")
                print(
                    f"  {e.id}  [{state}]  pid {e.pid} on {e.host}, v{e.version},"
                    f" started {_fmt_time(e.started_at, now)}, heartbeat {_fmt_time(e.heartbeat_at, now)}"
                )
                if e.live:
                    print(
                        f"      polls {plural(len(e.sources), 'source')}: {', '.join(e.sources) or '-'}"
                    )
        # A running engine writes the times of polls that found nothing new once a minute
        # (scheduler.idle_flush_seconds): a "last poll" up to that old is current.
        print("\nsources (polls that found nothing new are recorded once a minute):")
        if not states:
            print("  (none polled yet)")
        for s in states:
            health = "paused" if s.paused else ("FAILING" if s.consecutive_failures else "ok")
            print(f"  {s.source_key}  [{health}]")
            print(
                f"      cursor {queries.describe_cursor(s.cursor)}  baseline {'done' if s.baseline_done else 'pending'}"
            )
            print(
                f"      last poll {_fmt_time(s.last_poll_at, now)}  last success {_fmt_time(s.last_success_at, now)}"
            )
            if s.rate_limit_remaining is not None:
                print(
                    f"      rate limit remaining {s.rate_limit_remaining}, resets {_fmt_time(s.rate_limit_reset_at)}"
                )
            if s.consecutive_failures:
                print(
                    f"      {plural(s.consecutive_failures, 'failure')} in a row; backoff until {_fmt_time(s.backoff_until)}"
                )
            if s.last_error:
                print(f"      last error ({_fmt_time(s.last_error_at, now)}): {s.last_error}")
            if s.quarantine_latest is not None:
                q = s.quarantine_latest
                print(
                    f"      {plural(s.quarantined, 'item')} quarantined; latest {q.item_key}"
                    f" (seen {_fmt_time(q.last_seen_at, now)}, {q.times}x, trace quarantine:{q.id}):"
                    f" {q.error}"
                )
        print("\noutbox:")
        for channel, by_status in counts.items():
            label = "all channels" if channel == "*" else channel
            print(f"  {label:<14} " + "  ".join(f"{k} {v}" for k, v in by_status.items()))
        return EXIT_OK


def _engines(args: argparse.Namespace, store: Store, now: Any) -> list | None:
    """The engines of a shared store (live first, then the last stopped or gone ones), or None
    on a store of one engine (its lock file says whether it runs)."""
    if not store.shared:
        return None
    from mrt_engine.store import engines

    lease = 30.0
    if args.config or os.environ.get("MRT_CONFIG"):
        lease = _config(args).scheduler.engine_lease_seconds
    found = engines.engines(store, now, lease)
    return [e for e in found if e.live] + [e for e in found if not e.live][:10]


def cmd_outbox(args: argparse.Namespace) -> int:
    if args.status and args.status not in STATUSES:
        raise UsageError(f"--status: expected one of {', '.join(STATUSES)}, got {args.status!r}")
    from mrt_engine.store import queries

    with _store(args):
        rows = queries.deliveries(args.status, args.channel, args.limit)
        if args.json:
            _print_json(rows)
            return EXIT_OK
        if not rows:
            print("no deliveries")
        for d in rows:
            print(
                f"{d.id:>6}  {d.status:<8} {d.channel:<8} attempts {d.attempts:<3} "
                f"next {_fmt_time(d.next_attempt_at) if d.status in ('pending', 'retrying') else '-':<19}  "
                f"{d.event_type:<14} {d.title[:60]}"
                + (f"  [{d.bundle_note}]" if d.bundle_note else "")
            )
            if d.last_error:
                print(f"        last error: {d.last_error}")
        return EXIT_OK


def cmd_trace(args: argparse.Namespace) -> int:
    from mrt_engine.store import queries

    with _store(args):
        traces = queries.trace(args.ref)
        held = queries.quarantined(args.ref)
        if args.json:
            _print_json([*traces, *({"quarantined": q} for q in held)])
            return EXIT_OK if traces or held else EXIT_FAILED
        if not traces and not held:
            print(
                f"no event matches {args.ref!r} (give a fingerprint or a prefix of it, a URL, event:ID, delivery:ID or quarantine:ID)"
            )
            return EXIT_FAILED
        for t in traces:
            _print_trace(t)
        for q in held:
            _print_quarantined(q)
        return EXIT_OK


def _print_quarantined(q: queries.QuarantineView) -> None:
    print(f"quarantined item {q.id}  {q.item_key} in {q.source_key}")
    print("  not turned into events: the rest of its answer went on without it")
    print(f"  error     {q.error}")
    print(f"  url       {q.url or '-'}")
    print(
        f"  seen      {q.times}x, first {_fmt_time(q.first_seen_at)}, last {_fmt_time(q.last_seen_at)}"
    )
    print(f"  as sent   {q.excerpt or '-'}")
    print()


def _print_trace(t: queries.Trace) -> None:
    e = t.event
    print(f"event {e.id}  {e.fingerprint}")
    print(
        f"  {e.event_type} in {e.source_key}{'  (baseline: recorded, never alerted)' if e.baseline else ''}"
    )
    print(f"  title     {e.title}")
    print(f"  url       {e.url}")
    print(f"  author    {e.author or '-'}   labels {', '.join(e.labels) or '-'}")
    print(f"  occurred  {_fmt_time(e.occurred_at)}   observed {_fmt_time(e.observed_at)}")
    if not t.hits:
        print("  rule hits: none")
    for h in t.hits:
        note = "  [suppressed]" if h.suppressed else ""
        print(f"  hit  {h.rule} ({h.action}, priority {h.priority}, {h.origin}): {h.reason}{note}")
    if t.alert is None:
        print("  alert: none")
        print()
        return
    a = t.alert
    print(
        f"  alert {a.id}  rules {', '.join(a.rules) or '(manual)'}  priority {a.priority}  origin {a.origin}  at {_fmt_time(a.created_at)}"
    )
    for dt in t.deliveries:
        d = dt.delivery
        print(
            f"    delivery {d.id} -> {d.channel}: {d.status}, {plural(d.attempts, 'attempt')}, sent {_fmt_time(d.sent_at)}"
        )
        if d.attempts and not dt.attempts:
            print(
                "      attempts not kept: the delivery was sent longer ago than"
                " retention.sent_attempts_days"
            )
        for at in dt.attempts:
            answer = f"HTTP {at.http_status}" if at.http_status else ""
            parts = [p for p in (answer, at.reply, at.error) if p]
            took = f"{at.duration_ms} ms" if at.duration_ms is not None else "-"
            print(
                f"      attempt {at.id} {_fmt_time(at.started_at)} {at.outcome:<11} {took:>8}  {' | '.join(parts)}"
            )
    print()


def cmd_preview(args: argparse.Namespace) -> int:
    """``preview --channel C REF``: the message (or payload) channel C would send for one event,
    rendered with the config's settings for C; nothing is sent and the store is only read."""
    from mrt_engine import notify
    from mrt_engine.config import ConfigError
    from mrt_engine.delivery.preview import PreviewError, outgoing_for
    from mrt_engine.secrets import SecretResolver

    config = _config(args)
    sections = config.channel_sections()
    settings = sections.get(args.channel)
    if settings is None:
        known = ", ".join(sorted(sections)) or "none configured"
        raise UsageError(f"--channel: {args.channel!r} is not configured under notify ({known})")
    # Built as `run` builds it (its secrets too: a webhook URL decides nothing shown, but a
    # channel that cannot be built could not send this either).
    resolver = SecretResolver(os.environ)
    context = notify.ChannelContext(resolver, config.delivery.request_timeout_seconds)
    channel = notify.kinds()[args.channel].build(settings, context)
    if resolver.errors or channel is None:
        raise ConfigError(
            resolver.errors or [f"notify.{args.channel}: cannot be built"], config.path
        )
    try:
        with _store(args) as store:
            try:
                outgoing = outgoing_for(store, args.channel, args.ref)
            except PreviewError as exc:
                raise UsageError(str(exc)) from None
            if config.ai.enabled:
                outgoing, note = _summarized(config, store, channel, outgoing, args.ai)
                if note:
                    print(note, file=sys.stderr)
        print(channel.preview(outgoing))  # what send() would transmit; nothing is sent
    finally:
        channel.close()
    return EXIT_OK


def _summarized(config: Any, store: Any, channel: Any, outgoing: Any, ask: bool):
    """``outgoing`` with the summary a send would give it (the optional AI's, or the
    extractive one), and a line saying which. Without ``ask`` only an answer the model already
    wrote is used: no request, nothing written."""
    from mrt_engine.ai.client import AiClient
    from mrt_engine.ai.summary import Summarizer

    critical = [rule.name for rule in config.rules if rule.critical]
    client = AiClient(config.ai, store, user_agent=config.http.user_agent)
    try:
        summarize = Summarizer(client, critical, ask=ask)
        before = outgoing.context
        context = summarize(before, getattr(channel.settings, "locale", "en"))
    finally:
        client.close()
    if context is before:  # a bundle, or an event without text: nothing to summarise
        return outgoing, ""
    if context.summary_by == "ai":
        how = "asked now" if ask else "written before"
        note = f"summary: by the AI ({config.ai.model}, {how})"
    elif summarize.urgent(context):
        note = "summary: extractive (a protected alert or a critical rule's hit never waits)"
    elif ask or not config.ai.model:
        note = "summary: extractive (the AI gave none: a send would fall back the same way)"
    else:
        note = (
            "summary: extractive (the model has not written one for this text yet; a send asks"
            f" it, waiting up to {config.ai.summary_timeout_seconds:g}s; --ai asks it now)"
        )
    return dataclasses.replace(outgoing, context=context), note


def cmd_resend(args: argparse.Namespace) -> int:
    from mrt_engine import operations

    actor = operations.actor_name("cli")
    if args.dead == (args.delivery_id is not None):
        raise UsageError("give a DELIVERY_ID or --dead (with an optional --channel)")
    with _store(args) as store:
        if args.dead:
            result = operations.requeue_dead(store, channel=args.channel, actor=actor)
        else:
            result = operations.resend_delivery(store, args.delivery_id, actor=actor)
        print(result.message)
        return EXIT_OK


def cmd_rules_suggest(args: argparse.Namespace) -> int:
    """``rules suggest``: candidate keywords per notify rule, from its stored hits."""
    from mrt_engine.ai.suggest import suggest

    config = _config(args)
    rules = {r.name: r.keywords for r in config.rules if r.action == "notify"}
    if config.watch_keywords:
        rules["watch_keywords"] = list(config.watch_keywords)
    for name in args.rule or ():
        if name not in rules:
            raise UsageError(f"--rule: no notify rule named {name!r} in the config")
    if args.rule:
        rules = {name: rules[name] for name in args.rule}
    with _store(args) as store:
        found = suggest(store, rules, args.limit)
    if args.json:
        _print_json(found)
        return EXIT_OK
    for name, suggestions in found.items():
        if not suggestions:
            print(f"{name}: nothing to suggest (too few past hits)")
            continue
        words = ", ".join(f'"{s.keyword}" ({s.hits} of {s.of})' for s in suggestions)
        print(f"{name}: {words}")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from mrt_engine import operations
    from mrt_engine.ai.similarity import fit_topics
    from mrt_engine.components import compile_rules
    from mrt_engine.incidents import replay_settings

    config = _config(args)
    since = _when(args.since, "--since")
    until = _when(args.until, "--until")
    if args.channel and args.channel not in config.channel_sections():
        raise UsageError(f"--channel: {args.channel!r} is not configured under notify")
    rules = compile_rules(config)
    with _store(args) as store:
        fit_topics(rules, store)  # topic rules judged as the engine judges them
        plan = operations.replay(
            store,
            rules,
            since=since,  # type: ignore[arg-type]
            until=until,
            source=args.source,
            channel=args.channel,
            dry_run=args.dry_run,
            actor=operations.actor_name("cli"),
            **replay_settings(config),
        )
        if args.json:
            _print_json(plan)
            return EXIT_OK
        verb = "would enqueue" if plan.dry_run else "enqueued"
        print(
            f"scanned {plural(plan.scanned, 'event')}, {plan.matched} match the current rules; "
            f"{verb} {plural(plan.deliveries, 'delivery', 'deliveries')} "
            f"for {plural(len(plan.items), 'event')} never sent there"
        )
        for item in plan.items[:50]:
            print(
                f"  event {item.event_id} {item.event_type:<14} -> {', '.join(item.channels):<12} {item.title[:70]}"
            )
        if len(plan.items) > 50:
            print(f"  ... and {len(plan.items) - 50} more")
        return EXIT_OK


def cmd_cursor(args: argparse.Namespace) -> int:
    from mrt_engine import operations
    from mrt_engine.store import queries

    with _store(args) as store:
        if args.cursor_command == "list":
            states = queries.source_states()
            if args.json:
                _print_json(
                    [
                        {
                            "source_key": s.source_key,
                            "cursor": s.cursor,
                            "baseline_done": s.baseline_done,
                        }
                        for s in states
                    ]
                )
                return EXIT_OK
            for s in states:
                print(
                    f"{s.source_key:<50} {queries.describe_cursor(s.cursor):<40} baseline {'done' if s.baseline_done else 'pending'}"
                )
            return EXIT_OK
        to = _when(args.to, "--to")
        result = operations.reset_cursor(
            store, args.key, to=to, initial=args.initial, actor=operations.actor_name("cli")
        )
        print(result.message)
        return EXIT_OK


def cmd_source(args: argparse.Namespace) -> int:
    from mrt_engine import operations

    actor = operations.actor_name("cli")
    with _store(args) as store:
        if args.source_command == "poll":
            result = operations.request_poll(store, args.key, actor=actor)
        else:
            result = operations.set_paused(
                store, args.key, args.source_command == "pause", actor=actor
            )
        print(result.message)
        return EXIT_OK


def cmd_silence(args: argparse.Namespace) -> int:
    """``silence add|list|expire`` (:mod:`mrt_engine.silences`)."""
    from mrt_engine import operations, silences
    from mrt_engine.store import queries

    actor = operations.actor_name("cli")
    if args.silence_command == "add":
        until = _when(args.until, "--until")
        starts = _when(args.starts, "--starts")
        with _store(args) as store:
            result = silences.add_silence(
                store,
                args.match,
                author=args.author or "",
                comment=args.comment or "",
                duration=args.duration,
                until=until,
                starts_at=starts,
                actor=actor,
            )
            if args.json:
                _print_json({"message": result.message, "silence": result.after})
            else:
                print(result.message)
            return EXIT_OK
    if args.silence_command == "expire":
        with _store(args) as store:
            now = timeutil.utcnow()
            found = queries.silence(args.silence_id, now)
            if found is None:
                raise operations.OperationError(f"there is no silence {args.silence_id}")
            if not args.yes and found.state != "expired":
                if not sys.stdin.isatty():
                    raise UsageError(
                        f"expire silence {args.silence_id}: add --yes to confirm"
                        " (no terminal to ask on)"
                    )
                answer = input(
                    f"expire silence {found.id} ({' '.join(found.matchers)}),"
                    f" by {found.author}: {found.comment}? [y/N] "
                )
                if answer.strip().lower() not in ("y", "yes"):
                    print("nothing changed")
                    return EXIT_OK
            print(silences.expire_silence(store, args.silence_id, actor=actor).message)
            return EXIT_OK
    with _store(args):
        now = timeutil.utcnow()
        rows = queries.silences(now, include_expired=args.all)
        if args.json:
            _print_json(rows)
            return EXIT_OK
        if not rows:
            print("no silences" if args.all else "no silences in force (--all: ended ones too)")
        for v in rows:
            if v.state == "expired":
                when = f"ended {_fmt_time(v.expired_at or v.ends_at, now)}"
            elif v.state == "pending":
                when = f"starts {_fmt_time(v.starts_at, now)}, ends {_fmt_time(v.ends_at, now)}"
            else:
                when = f"ends {_fmt_time(v.ends_at, now)}"
            print(f"{v.id:>5}  [{v.state}]  {' '.join(v.matchers)}")
            print(f"       {when}; {plural(v.silenced, 'delivery', 'deliveries')} silenced")
            print(f"       by {v.author}: {v.comment}")
        return EXIT_OK


def cmd_incidents(args: argparse.Namespace) -> int:
    """``incidents``: the latest incidents, each with its timeline (mrt_engine/incidents.py)."""
    from datetime import timedelta

    from mrt_engine.incidents import DEFAULT_WINDOW
    from mrt_engine.store.incident_queries import incidents

    window = DEFAULT_WINDOW
    if args.config or os.environ.get("MRT_CONFIG"):
        window = timedelta(days=_config(args).incidents.window_days)
    with _store(args):
        now = timeutil.utcnow()
        rows = incidents(now, window, limit=args.limit, timeline_length=args.events)
        if args.json:
            _print_json(rows)
            return EXIT_OK
        if not rows:
            print("no incidents: no alerted event has named a model family yet")
        for v in rows:
            state = "open" if v.open else "closed"
            print(
                f"{v.id:>5}  {v.name}  [{state}]  {plural(v.sources, 'source')},"
                f" {plural(v.events, 'event')}; first seen {_fmt_time(v.first_seen_at, now)}"
            )
            for entry in v.timeline:
                print(
                    f"       {entry.position:>3}. {_fmt_time(entry.seen_at)}  {entry.source}"
                    f"  {entry.event_type}  event {entry.event_id}: {entry.title}"
                )
            if v.events > len(v.timeline):
                print(f"       … and {plural(v.events - len(v.timeline), 'later event')}")
        return EXIT_OK


def _output(path: str) -> Any:
    """``path`` opened for writing, or a usage error that says why not."""
    try:
        return open(path, "w", newline="", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_export(args: argparse.Namespace) -> int:
    import csv

    from mrt_engine.store import snapshots

    with _store(args):
        try:
            rows = snapshots.snapshot(args.source)
        except snapshots.SnapshotError as exc:
            raise UsageError(str(exc)) from None
        out = _output(args.output) if args.output else sys.stdout
        try:
            if args.format == "json":
                out.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
            elif rows:
                writer = csv.DictWriter(out, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        finally:
            if out is not sys.stdout:
                out.close()
        if args.output:
            print(
                f"{plural(len(rows), 'row')} of {args.source} written to {args.output}",
                file=sys.stderr,
            )
        return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from mrt_engine.store import snapshots

    since = _when(args.since, "--since")
    with _store(args):
        found = snapshots.changes(args.source, since)
        if args.json:
            _print_json(found)
            return EXIT_OK
        print(f"{args.source} since {_fmt_time(since)}:")
        for kind, mark in (("added", "+"), ("updated", "~"), ("removed", "-")):
            print(f"  {kind}: {len(found[kind])}")
            for row in found[kind]:
                print(f"    {mark} {row['title']}  [{row['event_type']} {row['event_id']}]")
        return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    """``doctor``: one line per check (:mod:`mrt_engine.doctor`); exit 0 only if all pass."""
    from pathlib import Path

    from mrt_engine.doctor import Doctor, report

    path = args.config or os.environ.get("MRT_CONFIG")
    if not path:
        raise UsageError("no config given: use --config FILE (or set MRT_CONFIG)")
    doctor = Doctor(Path(path), os.environ, network=args.network, send_test=args.send_test)
    checks = doctor.run()
    report(checks, sys.stdout, os.environ, as_json=args.json)
    return EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED


# ---------------------------------------------------------------------- schema
def _store_location(args: argparse.Namespace) -> Any:
    """The :class:`~mrt_engine.store.location.StoreLocation` of ``--db`` or of the config."""
    from mrt_engine.store.location import StoreLocation, StoreUrlError, parse_location

    where = _store_path(args)
    if isinstance(where, StoreLocation):
        return where
    try:
        return parse_location(where)
    except StoreUrlError as exc:
        raise UsageError(f"--db: {exc}") from None


def cmd_migrate(args: argparse.Namespace) -> int:
    """``migrate --check``: the schema version and what is pending (exit 1 when something is);
    ``migrate``: apply it."""
    from mrt_engine.store import schema

    location = _store_location(args)
    if args.check:
        state = schema.inspect(location)
        if args.json:
            _print_json(
                {
                    "store": str(location),
                    "version": state.version,
                    "latest": state.latest,
                    "pending": [{"version": v, "summary": s} for v, s in state.pending],
                }
            )
            return EXIT_FAILED if state.pending else EXIT_OK
        if not state.pending:
            print(f"store {location}: schema version {state.version}, up to date")
            return EXIT_OK
        found = (
            "no schema yet (an empty database)"
            if state.version == 0
            else f"schema version {state.version}"
        )
        print(f"store {location}: {found}, this mrt-engine knows up to {state.latest}")
        print(
            f"{plural(len(state.pending), 'migration')} pending"
            " (`mrt-engine migrate` applies them; so does the next `mrt-engine run`):"
        )
        for version, summary in state.pending:
            print(f"  {version}  {summary}")
        return EXIT_FAILED
    done = schema.upgrade(location)
    if args.json:
        _print_json(
            {
                "store": str(location),
                "before": done.before.version,
                "version": done.version,
                "applied": [{"version": v, "summary": s} for v, s in done.applied],
                "backup": str(done.backup) if done.backup else None,
            }
        )
        return EXIT_OK
    if not done.applied:
        print(f"store {location}: schema version {done.version}, up to date: nothing to do")
        return EXIT_OK
    if done.before.version == 0:
        print(f"store {location}: created the schema at version {done.version}:")
    else:
        print(
            f"store {location}: migrated from schema version {done.before.version}"
            f" to {done.version}:"
        )
    for version, summary in done.applied:
        print(f"  {version}  {summary}")
    if done.backup:
        print(f"kept a copy of the store as it was: {done.backup}")
    return EXIT_OK


# ---------------------------------------------------------------------- store copy
def cmd_store_copy(args: argparse.Namespace) -> int:
    """``store copy --from URL --to URL``: the store moved (see :mod:`mrt_engine.store.copy`);
    progress on standard error, the summary on standard output."""
    from mrt_engine.store.copy import copy_store
    from mrt_engine.store.location import StoreUrlError, parse_location

    config = _config(args) if args.config or os.environ.get("MRT_CONFIG") else None
    default_env = config.state.password_env if config else None

    def location(url: str, option: str, password_env: str | None) -> Any:
        try:
            return parse_location(url, password_env=password_env or default_env)
        except StoreUrlError as exc:
            raise UsageError(f"{option}: {exc}") from None

    if args.source:
        source = location(args.source, "--from", args.from_password_env)
    else:
        source = _store_location(args)
        if args.from_password_env and source.is_postgresql:
            source = dataclasses.replace(source, password_env=args.from_password_env)
    target = location(args.target, "--to", args.to_password_env)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = copy_store(
        source,
        target,
        replace=args.replace,
        batch=args.batch,
        lease_seconds=config.scheduler.engine_lease_seconds if config else 30.0,
        progress=progress,
    )
    if args.json:
        _print_json(report)
        return EXIT_OK
    print(f"copied {report.source} -> {report.target} in {report.seconds:.1f} s")
    print(f"{'table':<16} {'source':>12} {'copied':>12} {'target':>12}")
    for t in report.tables:
        shown = "-" if t.target is None else f"{t.target:,}"
        print(f"{t.table:<16} {t.source:>12,} {t.copied:>12,} {shown:>12}")
    for name, n in report.counters.items():
        print(f"{name:<16} recounted from the copied rows: {plural(n, 'row')}")
    if report.nul_replaced:
        print(
            f"{plural(report.nul_replaced, 'row')} held U+0000 in a text, which PostgreSQL"
            " cannot store: replaced by U+FFFD"
        )
    if report.replaced:
        print("what the target held before was replaced")
    print(f"counts match: {report.rows:,} rows copied and verified")
    return EXIT_OK


# ---------------------------------------------------------------------- store upkeep
def cmd_store(args: argparse.Namespace) -> int:
    """``store prune|stats|vacuum``: retention, sizes and space (:mod:`mrt_engine.store.retention`)."""
    from mrt_engine import operations
    from mrt_engine.store import retention, space

    if args.store_command == "vacuum":
        return _vacuum(args)
    with _store(args) as store:
        if args.store_command == "stats":
            stats = space.store_stats(store)
            if args.json:
                _print_json(stats)
            else:
                _print_stats(stats)
            return EXIT_OK
        config = _config(args) if args.config or os.environ.get("MRT_CONFIG") else None
        policy = retention.RetentionPolicy.of(config.retention) if config else None
        report = retention.prune(
            store,
            policy or retention.RetentionPolicy(),
            timeutil.utcnow(),
            dry_run=args.dry_run,
            actor=operations.actor_name("cli"),
        )
        if args.json:
            _print_json(report)
        else:
            _print_prune(report)
        return EXIT_OK


def _print_prune(report: Any) -> None:
    if report.dry_run:
        print("dry run: nothing was changed")
    for p in report.parts:
        verb = f"would {p.action}" if report.dry_run else _done(p.action)
        print(f"{p.table:<12} {verb:<18} {p.rows:>11,} {p.what} from before {_fmt_time(p.before)}")
    if not report.rows:
        print("nothing to prune")
    elif not report.dry_run:
        print(
            f"{plural(report.rows, 'row')} in {plural(report.batches, 'batch', 'batches')}"
            f" (the longest held the store {report.longest_batch_ms:.0f} ms)"
        )


def _done(action: str) -> str:
    """``delete`` -> ``deleted``, ``clear raw of`` -> ``cleared raw of``."""
    verb, _, rest = action.partition(" ")
    return " ".join(filter(None, (verb.rstrip("e") + "ed", rest)))


def _print_stats(stats: Any) -> None:
    f = stats.file
    if f is None:  # PostgreSQL: the database's size; its free space is autovacuum's
        print(f"store {stats.path}: database {size(stats.database_bytes)}")
    else:
        print(
            f"store {stats.path}: {size(f.bytes)}, wal {size(f.wal_bytes)},"
            f" free {size(f.free_bytes)} (reused by new rows; pages of {f.page_size} B)"
        )
    print(f"{'table':<18} {'rows':>13} {'bytes':>10} {'index bytes':>12}")
    for t in sorted(stats.tables, key=lambda t: -(t.bytes or 0) - (t.index_bytes or 0)):
        shown = [size(b) if b is not None else "?" for b in (t.bytes, t.index_bytes)]
        print(f"{t.table:<18} {t.rows:>13,} {shown[0]:>10} {shown[1]:>12}")
    if any(t.bytes is None for t in stats.tables):
        print("(bytes per table: this SQLite was built without its dbstat table)")


def _vacuum(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mrt_engine.store import space
    from mrt_engine.store.lock import EngineLock

    where = _store_path(args)
    if not isinstance(where, str | Path):
        if where.is_postgresql:
            raise UsageError(
                "store vacuum rewrites a SQLite file; on PostgreSQL autovacuum keeps the"
                " tables compact (VACUUM FULL, run by hand, gives the space back to the disk)"
            )
        where = where.path
    lock = EngineLock(Path(where).expanduser())
    lock.acquire()  # no engine may write while the file is rewritten
    try:
        with _store(args) as store:
            before, after = space.vacuum(store)
    finally:
        lock.release()
    print(f"vacuumed {store}: {size(before)} -> {size(after)}")
    return EXIT_OK
