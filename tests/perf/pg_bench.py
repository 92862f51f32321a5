"""bench_pipeline.py on PostgreSQL (``--db postgresql://…`` or ``--db auto``): two figures.

**Ingest.** The pipeline side is bench_pipeline's own: ``Pipeline.poll`` of ``GitHubIssues``
sources over the mock GitHub API, the store a new PostgreSQL database. The baseline then writes
the very rows each poll committed (read back, poll by poll) into another new database of the
same schema, one transaction a poll, one psycopg 3 ``executemany`` a table (psycopg runs it in
pipeline mode: no round trip a row): events, search rows, rule hits, alerts, deliveries, the
``source_state`` update and the ``poll_metric`` row. ``ratio`` = baseline seconds / pipeline
seconds (wall clock: the server's work is in both). A second baseline writes the same rows
with ``COPY`` instead (``copy_*``), the fastest a client can load them.

With several poll workers, polls of different sources commit concurrently and their ids (from
the tables' sequences) may interleave, so each poll's events are found per source: a source's
polls are sequential, its events in id order split by its metrics' ``events_new``. A run whose
poll failed (a deadlock between concurrent commits, say) is reported with ``failed`` and the
reason, and the other runs go on.

**Outbox drain.** N pending deliveries (one alert each, one channel) in a new database; then
1 and then 2 ``mrt-engine run`` processes (each with ``delivery.workers`` threads) drain them
into a local WeLink simulator that answers after ``--drain-latency-ms`` (a remote webhook's
round trip). The rate is taken from the deliveries' ``sent_at`` (first to last), so process
start-up is not in it; every delivery must be sent exactly once (the simulator refuses a reused
message uuid, and no attempt may be repeated).

The databases are created with ``CREATE DATABASE`` (the URL's user needs CREATEDB) and dropped
after; ``--db auto`` starts a throwaway cluster (tests/pg_cluster.py) and removes it after.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: pg_cluster

import bench_pipeline
import pg_cluster

from mrt_engine.simulators.github import GitHubSimulator
from mrt_engine.simulators.welink import WeLinkSimulator
from mrt_engine.store import postgres
from mrt_engine.store.db import open_store
from mrt_engine.store.location import StoreLocation, parse_location
from mrt_engine.store.search import indexed_text
from mrt_engine.timeutil import from_store, to_store, utcnow

TABLES = ("event", "event_search", "rule_hit", "alert", "delivery")


# ---------------------------------------------------------------------- databases
class Server:
    """Where the benchmark makes its databases: a throwaway cluster or a given server."""

    def __init__(self, db: str, password_env: str | None) -> None:
        self.cluster = None
        if db == "auto":
            self.cluster = pg_cluster.start()
            os.environ[pg_cluster.PASSWORD_ENV] = pg_cluster.PASSWORD
            self.base = parse_location(
                f"postgresql://{pg_cluster.USER}@{self.cluster.host}:{self.cluster.port}/postgres",
                password_env=pg_cluster.PASSWORD_ENV,
            )
        else:
            self.base = parse_location(db, password_env=password_env)
        self._made: list[StoreLocation] = []

    def admin(self):
        return postgres.connect_raw(self.base)

    def new_database(self, name: str) -> StoreLocation:
        dbname = f"mrt_bench_{os.getpid()}_{len(self._made)}_{name}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        location = StoreLocation(
            self.base.backend,
            params={**self.base.params, "dbname": dbname},
            password_env=self.base.password_env,
        )
        self._made.append(location)
        return location

    def url(self, location: StoreLocation) -> str:
        p = location.params
        host = p.get("host", "localhost")
        port = f":{p['port']}" if "port" in p else ""
        user = f"{p['user']}@" if "user" in p else ""
        return f"postgresql://{user}{host}{port}/{p['dbname']}"

    def settings(self) -> dict[str, str]:
        with self.admin() as conn:
            return {
                name: conn.execute(f"SHOW {name}").fetchone()[0]
                for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
            }

    def close(self) -> None:
        with contextlib.suppress(Exception), self.admin() as conn:
            for location in self._made:
                conn.execute(f'DROP DATABASE IF EXISTS "{location.params["dbname"]}" WITH (FORCE)')
        if self.cluster is not None:
            pg_cluster.stop(self.cluster)


def _rows(conn, table: str, key: str = "id") -> tuple[list[str], list[tuple]]:
    cursor = conn.execute(f"SELECT * FROM {table} ORDER BY {key}")
    return [d.name for d in cursor.description], cursor.fetchall()


def counts(location: StoreLocation) -> dict[str, int]:
    with postgres.connect_raw(location) as conn:
        return {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("event", "rule_hit", "alert", "delivery", "poll_metric")
        }


# ---------------------------------------------------------------------- ingest
def committed_polls(location: StoreLocation) -> tuple[list[dict], dict[str, dict]]:
    """What each poll committed, in commit order (the metrics' ids), read back from the store;
    and the source_state rows by key."""
    with postgres.connect_raw(location) as conn:
        metric_columns, metrics = _rows(conn, "poll_metric")
        event_columns, events = _rows(conn, "event")
        _, search_rows = _rows(conn, "event_search", "rowid")
        _, hit_rows = _rows(conn, "rule_hit")
        _, alert_rows = _rows(conn, "alert")
        _, delivery_rows = _rows(conn, "delivery")
        state_columns, states = _rows(conn, "source_state", "source_key")
    key_at, new_at = metric_columns.index("source_key"), metric_columns.index("events_new")
    event_key = event_columns.index("source_key")
    by_source: dict[str, list[tuple]] = defaultdict(list)
    for row in events:
        by_source[row[event_key]].append(row)
    search = {row[0]: row for row in search_rows}
    hits: dict[int, list[tuple]] = defaultdict(list)
    for row in hit_rows:
        hits[row[1]].append(row)
    alerts = {row[1]: row for row in alert_rows}
    deliveries: dict[int, list[tuple]] = defaultdict(list)
    for row in delivery_rows:
        deliveries[row[1]].append(row)
    taken: dict[str, int] = defaultdict(int)
    polls = []
    for metric in metrics:
        key = metric[key_at]
        mine = by_source[key][taken[key] : taken[key] + metric[new_at]]
        taken[key] += metric[new_at]
        mine_alerts = [alerts[e[0]] for e in mine if e[0] in alerts]
        polls.append(
            {
                "event": mine,
                "event_search": [search[e[0]] for e in mine],
                "rule_hit": [h for e in mine for h in hits[e[0]]],
                "alert": mine_alerts,
                "delivery": [d for a in mine_alerts for d in deliveries[a[0]]],
                "metric": metric,
            }
        )
    assert sum(taken.values()) == len(events), (sum(taken.values()), len(events))
    state = {row[0]: dict(zip(state_columns, row, strict=True)) for row in states}
    return polls, state


def run_baseline(source: StoreLocation, target: StoreLocation, how: str) -> dict[str, Any]:
    """The rows of every poll of ``source`` into ``target`` (a new database), one transaction a
    poll: ``executemany`` a table, or ``copy``."""
    polls, state = committed_polls(source)
    open_store(target).close()  # the schema
    conn = postgres.connect_raw(target)
    for key, row in state.items():
        conn.execute(
            "INSERT INTO source_state (source_key, platform, updated_at, next_poll_at)"
            " VALUES (%s, %s, %s, %s)",
            (key, row["platform"], row["updated_at"], row["updated_at"]),
        )
    versions = dict.fromkeys(state, 0)
    statements = {}
    columns = {}
    for poll in polls:
        for name in TABLES:
            if poll[name] and name not in statements:
                width = len(poll[name][0])
                statements[name] = f"INSERT INTO {name} VALUES ({','.join(['%s'] * width)})"
        metric_sql = f"INSERT INTO poll_metric VALUES ({','.join(['%s'] * len(poll['metric']))})"
    for name in TABLES:
        cursor = conn.execute(f"SELECT * FROM {name} LIMIT 0")
        columns[name] = ", ".join(d.name for d in cursor.description)
    state_update = bench_pipeline._STATE_UPDATE.replace("?", "%s")
    work = []
    for poll in polls:
        metric = poll["metric"]
        key = metric[1]
        row = state[key]
        update = (
            row["cursor"],
            row["etag"],
            row["last_modified"],
            row["validated_url"],
            row["baseline_at"],
            metric[2],
            metric[3],
            row["next_poll_at"],
            row["rate_limit_remaining"],
            row["rate_limit_reset_at"],
            metric[3],
            key,
            versions[key],
        )
        versions[key] += 1
        work.append((poll, update, metric))
    cpu, start = time.process_time(), time.perf_counter()
    with conn.cursor() as cursor:
        for poll, update, metric in work:
            with conn.transaction():
                for name in TABLES:
                    if not poll[name]:
                        continue
                    if how == "copy":
                        with cursor.copy(f"COPY {name} ({columns[name]}) FROM STDIN") as copy:
                            for values in poll[name]:
                                copy.write_row(values)
                    else:
                        cursor.executemany(statements[name], poll[name])
                cursor.executemany(state_update, [update])
                cursor.executemany(metric_sql, [metric])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    conn.close()
    return {"seconds": elapsed, "cpu": cpu}


def ingest(server: Server, items: list[dict], args: Any) -> list[dict[str, Any]]:
    runs = []
    for workers in (int(w) for w in args.workers.split(",")):
        ours = server.new_database(f"pipeline{workers}")
        try:
            pipeline = bench_pipeline.run_pipeline(
                ours, items, args.page, args.pages_per_poll, workers
            )
        except SystemExit as exc:  # a poll failed: said in the figures, the other runs go on
            runs.append({"workers": workers, "failed": str(exc).splitlines()[0][:300]})
            continue
        rows = counts(ours)
        executemany = run_baseline(ours, server.new_database(f"many{workers}"), "executemany")
        copied = server.new_database(f"copy{workers}")
        copy = run_baseline(ours, copied, "copy")
        assert counts(copied) == rows, (rows, counts(copied))
        stored = rows["event"]
        runs.append(
            {
                "workers": workers,
                "polls": pipeline["polls"],
                "events": stored,
                "rule_hits": rows["rule_hit"],
                "alerts": rows["alert"],
                "deliveries": rows["delivery"],
                "pipeline_seconds": round(pipeline["seconds"], 3),
                "pipeline_cpu_seconds": round(pipeline["cpu"], 3),
                "pipeline_events_per_s": round(stored / pipeline["seconds"]),
                "pipeline_ms_per_poll": round(pipeline["seconds"] * 1000 / pipeline["polls"], 2),
                "executemany_seconds": round(executemany["seconds"], 3),
                "executemany_cpu_seconds": round(executemany["cpu"], 3),
                "executemany_events_per_s": round(stored / executemany["seconds"]),
                "copy_seconds": round(copy["seconds"], 3),
                "copy_events_per_s": round(stored / copy["seconds"]),
                "ratio": round(executemany["seconds"] / pipeline["seconds"], 3),
                "copy_ratio": round(copy["seconds"] / pipeline["seconds"], 3),
            }
        )
    return runs


# ---------------------------------------------------------------------- outbox drain
class SlowWeLink(WeLinkSimulator):
    """WeLink answering after ``latency`` seconds, as a webhook across a network does."""

    def __init__(self, latency: float, **kwargs: Any) -> None:
        self.latency = latency
        super().__init__(**kwargs)
        # The simulator writes an answer's head and body apart: with Nagle's algorithm on, the
        # body waits for the client's delayed ACK (~40 ms on Linux), a wait no real server adds.
        self.server.RequestHandlerClass.disable_nagle_algorithm = True

    def _send(self, request, match):
        time.sleep(self.latency)
        return super()._send(request, match)


def pending_deliveries(location: StoreLocation, n: int) -> None:
    """``n`` alerts with one pending WeLink delivery each, due now."""
    open_store(location).close()
    now = to_store(utcnow() - timedelta(seconds=1))
    with postgres.connect_raw(location) as conn, conn.transaction(), conn.cursor() as cur:
        with cur.copy(
            "COPY event (id, fingerprint, source, source_key, resource_type, resource_id,"
            " event_type, event_id, title, url, author, occurred_at, observed_at) FROM STDIN"
        ) as copy:
            for i in range(1, n + 1):
                copy.write_row(
                    (
                        i,
                        f"{i:064x}",
                        "github",
                        "github:bench/drain:issues",
                        "issue",
                        str(i),
                        "issue_opened",
                        str(i),
                        f"DeepSeek drain {i}",
                        f"https://github.com/bench/drain/issues/{i}",
                        "alice",
                        now,
                        now,
                    )
                )
        with cur.copy("COPY event_search (rowid, title) FROM STDIN") as copy:
            for i in range(1, n + 1):
                copy.write_row((i, indexed_text(f"DeepSeek drain {i}")))
        with cur.copy("COPY alert (id, event_id, rules, created_at) FROM STDIN") as copy:
            for i in range(1, n + 1):
                copy.write_row((i, i, '["deepseek"]', now))
        with cur.copy(
            "COPY delivery (alert_id, channel, next_attempt_at, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(1, n + 1):
                copy.write_row((i, "welink", now, now, now))
        for table in ("event", "alert"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n + 1}, false)")


def drain(server: Server, engines: int, n: int, latency: float, folder: Path) -> dict[str, Any]:
    """``engines`` engine processes draining ``n`` pending deliveries; deliveries per second."""
    location = server.new_database(f"drain{engines}")
    pending_deliveries(location, n)
    welink = SlowWeLink(latency, token="bench-token").start()
    github = GitHubSimulator(token="bench-gh").start()
    github.repo("bench/drain")
    config = {
        "sources": {
            "github": {
                "repos": ["bench/drain"],
                "token_env": "GH",
                "api_base": github.url,
                "monitor": {"pulls": False},
                "poll_interval_seconds": 3600,
            }
        },
        "notify": {"welink": {"webhook_env": "WL"}},
        "http": {"hosts": {"127.0.0.1": {"min_interval_seconds": 0}}},
        "state": {"url": server.url(location), "password_env": location.password_env},
        "log": {"level": "warning"},
    }
    path = folder / f"drain-{engines}.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "WL": welink.webhook_url, "GH": "bench-gh"}
    processes = []
    try:
        started = time.perf_counter()
        for i in range(engines):
            log = (folder / f"drain-{engines}-{i}.log").open("w")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "mrt_engine", "run", "--config", str(path)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
        with postgres.connect_raw(location) as conn:
            sent = 0
            deadline = time.monotonic() + max(120.0, n * latency * 2)
            while sent < n and time.monotonic() < deadline:
                time.sleep(0.2)
                sent = conn.execute(
                    "SELECT COUNT(*) FROM delivery WHERE status = 'sent'"
                ).fetchone()[0]
                if any(p.poll() is not None for p in processes):
                    raise SystemExit(f"an engine exited early: see {folder}")
            wall = time.perf_counter() - started
            times = sorted(
                from_store(t)
                for (t,) in conn.execute("SELECT sent_at FROM delivery WHERE sent_at IS NOT NULL")
            )
            attempts = conn.execute("SELECT COUNT(*) FROM attempt").fetchone()[0]
            by = dict(
                conn.execute(
                    "SELECT split_part(worker, '/', 1), COUNT(*) FROM attempt GROUP BY 1"
                ).fetchall()
            )
    finally:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes:
            p.wait(60)
        received = welink.texts()
        welink.stop()
        github.stop()
    if len(times) < n:
        raise SystemExit(f"only {len(times)} of {n} deliveries were sent in time: see {folder}")
    span = (times[-1] - times[0]).total_seconds()
    tenth = (times[int(n * 0.9) - 1] - times[int(n * 0.1)]).total_seconds()
    return {
        "engines": engines,
        "deliveries": n,
        "deliveries_per_s": round((n - 1) / span, 1) if span else None,
        "middle_80pct_per_s": round((int(n * 0.9) - 1 - int(n * 0.1)) / tenth, 1)
        if tenth
        else None,
        "seconds_first_to_last": round(span, 2),
        "wall_seconds_with_startup": round(wall, 2),
        "attempts": attempts,
        "sent_per_engine": sorted(by.values(), reverse=True),
        "received": len(received),
        "duplicates": len(received) - len(set(received)),
    }


# ---------------------------------------------------------------------- the run
@contextlib.contextmanager
def server_for(args: Any) -> Iterator[Server]:
    server = Server(args.db, args.password_env)
    try:
        yield server
    finally:
        server.close()


def main(args: Any) -> dict[str, Any]:
    """Both benchmarks against PostgreSQL; the result as a dict for bench_pipeline to print."""
    items = bench_pipeline.synthetic_items(args.events, args.mix)
    result: dict[str, Any] = {
        "benchmark": "poll_pipeline_vs_executemany_postgresql",
        "path": "Pipeline.poll, GitHubIssues, HttpClient over httpx.MockTransport",
        "issues": args.events,
        "mix": args.mix,
        "page_size": args.page,
        "pages_per_poll": args.pages_per_poll,
        "rules": 20,
        "target_ratio": 0.5,
    }
    with server_for(args) as server, tempfile.TemporaryDirectory() as folder:
        result["server"] = server.settings()
        if args.events:
            result["runs"] = ingest(server, items, args)
        if args.drain_deliveries:
            result["outbox_drain"] = {
                "welink_latency_ms": args.drain_latency_ms,
                "delivery_workers_per_engine": 2,
                "runs": [
                    drain(
                        server,
                        int(k),
                        args.drain_deliveries,
                        args.drain_latency_ms / 1000,
                        Path(folder),
                    )
                    for k in args.drain_engines.split(",")
                ],
            }
    import platform

    import psycopg

    result.update(
        {
            "python": platform.python_version(),
            "psycopg": psycopg.__version__,
            "libpq": psycopg.pq.version(),
            "cpus": os.cpu_count(),
        }
    )
    return result
