"""Retention on a year-like store: what the first prune removes, how long each batch holds the
write lock, how long a poll waits for it meanwhile, and what stats and vacuum cost.

    cp --reflink=auto /work/perf/year-1m.sqlite3 /tmp/copy.sqlite3
    python tests/perf/bench_retention.py --store /tmp/copy.sqlite3 --now 2026-12-01

Works on a copy only: it prunes and vacuums the file (and opening it migrates it). A "poll"
thread commits a small write every 50 ms while the prune runs, as the engine's polls do; its
waits are the figure that matters (the prune must never stall a poll for long).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from mrt_engine.store.db import open_store
from mrt_engine.store.retention import RetentionPolicy, prune
from mrt_engine.store.space import store_stats, vacuum
from mrt_engine.timeutil import parse_when, to_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="a COPY of a store")
    parser.add_argument("--now", default="2026-12-01", help="the prune's clock")
    parser.add_argument("--batch-rows", type=int, default=RetentionPolicy.batch_rows)
    parser.add_argument("--pause", type=float, default=RetentionPolicy.pause_seconds)
    parser.add_argument("--no-vacuum", action="store_true")
    args = parser.parse_args()
    now = parse_when(args.now)
    figures: dict = {"store": str(args.store), "batch_rows": args.batch_rows}
    t0 = time.perf_counter()
    store = open_store(args.store, create=False)
    figures["open_seconds"] = round(time.perf_counter() - t0, 2)
    try:
        t0 = time.perf_counter()
        before = store_stats(store)
        figures["stats_seconds"] = round(time.perf_counter() - t0, 2)
        figures["before"] = _sizes(before)
        policy = RetentionPolicy(batch_rows=args.batch_rows, pause_seconds=args.pause)
        t0 = time.perf_counter()
        dry = prune(store, policy, now, dry_run=True)
        figures["dry_run_seconds"] = round(time.perf_counter() - t0, 2)
        figures["dry_run_rows"] = {p.table: p.rows for p in dry.parts}

        waits: list[float] = []
        done = threading.Event()

        def poll() -> None:  # a small commit every 50 ms, as polls make
            while not done.wait(0.05):
                asked = time.perf_counter()
                with store.write():
                    store.db.execute_sql(
                        "INSERT INTO poll_metric (source_key, started_at, finished_at,"
                        " duration_ms, outcome) VALUES ('bench:poll', ?, ?, 1, 'not_modified')",
                        (to_store(now), to_store(now)),
                    )
                waits.append(time.perf_counter() - asked)

        held: list[float] = []  # how long each of the prune's batches held the write lock
        plain_write = store.write
        pruner = threading.current_thread()

        @contextmanager
        def timed_write():
            transaction = plain_write()
            transaction.__enter__()
            began = time.perf_counter()
            try:
                yield
            except BaseException:
                if not transaction.__exit__(*sys.exc_info()):
                    raise
            else:
                transaction.__exit__(None, None, None)
            if threading.current_thread() is pruner:
                held.append(time.perf_counter() - began)

        store.write = timed_write
        poller = threading.Thread(target=poll)
        poller.start()
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        report = prune(store, policy, now)
        figures["prune_seconds"] = round(time.perf_counter() - t0, 1)
        figures["prune_cpu_seconds"] = round(time.process_time() - cpu0, 1)
        done.set()
        poller.join()
        store.write = plain_write
        figures["pruned_rows"] = {p.table: p.rows for p in report.parts}
        figures["batch_held_ms"] = _spread(held)
        figures["batches"] = report.batches
        figures["longest_batch_ms"] = round(report.longest_batch_ms, 1)
        figures["poll_commit_ms"] = _spread(waits)
        t0 = time.perf_counter()
        again = prune(store, policy, now)
        figures["second_prune_seconds"] = round(time.perf_counter() - t0, 2)
        figures["second_prune_rows"] = again.rows
        figures["after_prune"] = _sizes(store_stats(store))
        if not args.no_vacuum:
            t0 = time.perf_counter()
            was, now_bytes = vacuum(store)
            figures["vacuum_seconds"] = round(time.perf_counter() - t0, 1)
            figures["vacuum_bytes"] = [was, now_bytes]
    finally:
        store.close()
    print(json.dumps(figures, indent=2))


def _spread(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {
        "count": len(ordered),
        "p50": round(statistics.median(ordered) * 1000, 1),
        "p95": round(ordered[int(len(ordered) * 0.95)] * 1000, 1),
        "p99": round(ordered[int(len(ordered) * 0.99)] * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
        "over_50": sum(1 for s in ordered if s > 0.05),
    }


def _sizes(stats) -> dict:
    return {
        "file_bytes": stats.file.bytes,
        "free_bytes": stats.file.free_bytes,
        "tables": {t.table: [t.rows, t.bytes, t.index_bytes] for t in stats.tables if t.rows},
    }


if __name__ == "__main__":
    main()
