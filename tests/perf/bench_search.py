"""Benchmark: the Events filter on a big store, through its indexes, against the old full scan.

Takes a *copy* of a schema-2 store (``year_store.py`` builds one; opening a store migrates it,
so never pass a shared original) and:

1. upgrades it to the current schema (migration 3 fills the search index and builds the field
   indexes), timed; no backup is made here, ``open_store`` would add a copy of the file;
2. writes a few marker events through ``prepare_batch``/``write_batch`` (rare words, Chinese),
   timed per event with and without the search index's share (the FTS insert);
3. runs each filter of ``QUERIES`` through :func:`mrt_engine.store.feed.event_rows`: the first
   window (newest), the next older window and a newer one, CPU and wall time (best of
   ``--repeat``), rows found; and the same filter the old way (one SQL statement reading the
   table newest first: ``instr(lower(title))`` and the field expressions) on ``--before`` (a
   schema-2 copy, opened read-only) when given.

    python tests/perf/bench_search.py --store COPY.sqlite3 [--before SCHEMA2.sqlite3]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mrt_engine.batch import prepare_batch, write_batch
from mrt_engine.events import TrackerEvent
from mrt_engine.rules import RuleSet
from mrt_engine.store import feed, migrations, search
from mrt_engine.store.db import open_store

QUERIES = [
    "whalesong",  # a rare word: 5 events in a million
    "鲸鱼模型",  # a rare Chinese word: 3 events
    "鲸鱼",  # two characters: the trigrams starting with them
    "e",  # one common character
    "kimi-k2 token stack",  # three common words, rarely together
    "bug",  # a common word
    "DeepSeek-V3",  # a common word
    "source:github:pytorch/pytorch:issues",
    "source:github",
    "type:pr_opened",
    "type:pr_*",
    "matched:yes",
    "matched:no",  # rare in this store (20 broad rules), and no index can list it
    "whalesong matched:no",
    "bug type:pr_opened source:github:pytorch/pytorch:pulls",
    "bug type:issue_opened source:github:pytorch/pytorch:pulls",  # common, never together
]

MARKERS = [
    "whalesong: a rare word in a year of events",
    "WhaleSong again, another case",
    "鲸鱼模型 发布 (whalesong)",
    "鲸鱼模型 v2 whalesong",
    "新的鲸鱼模型 WHALESONG",
]


def _old_sql(flt: feed.EventFilter) -> tuple[str, list]:
    """The filter as it was read before the search index: one statement, newest first."""
    where, params = [], []
    for word in flt.text.split():
        where.append("instr(lower(title), ?) > 0")
        params.append(word.lower())
    if flt.source:
        v = flt.source
        if "*" in v or "?" in v:
            where.append("glob(?, source_key)")
            params.append(v.replace("[", "[[]"))
        else:
            where.append("(source = ? OR substr(source_key, 1, ?) = ?)")
            params += [v, len(v), v]
    if flt.event_type:
        v = flt.event_type
        if "*" in v or "?" in v:
            where.append("glob(?, event_type)")
            params.append(v.replace("[", "[[]"))
        else:
            where.append("event_type = ?")
            params.append(v)
    if flt.matched is not None:
        hit = "EXISTS (SELECT 1 FROM rule_hit WHERE rule_hit.event_id = event.id)"
        where.append(hit if flt.matched else f"NOT {hit}")
    sql = f"SELECT id FROM event WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT 200"
    return sql, params


def _ids(store, flt: feed.EventFilter) -> list[int]:
    """The search alone (no rows, rules or alerts read for the ids it found)."""
    with store.read():
        return search.matching_ids(flt, store.db.execute_sql, limit=feed.PAGE)


def _best(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall and CPU seconds of ``repeat`` calls, and the last result."""
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - w)
        cpu = min(cpu, time.process_time() - c)
    return wall, cpu, result


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def upgrade(path: Path) -> dict:
    conn = sqlite3.connect(path, isolation_level=None)
    found = migrations.check_version(conn, path)
    wall, cpu = time.perf_counter(), time.process_time()
    migrations.migrate(conn, None)  # None: no backup copy
    out = {
        "from_version": found,
        "to_version": migrations.LATEST,
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
    }
    conn.close()
    return out


def write_markers(store) -> dict:
    """Marker events through the write path; per-event cost of write_batch with its index."""
    now = datetime.now(UTC)
    events = [
        TrackerEvent(
            source="github",
            source_key="github:marker/marker:issues",
            resource_type="repo_issue",
            resource_id="marker/marker",
            event_type="issue_opened",
            event_id=f"marker-{n}-{now.timestamp()}",
            title=title,
            observed_at=now - timedelta(seconds=len(MARKERS) - n),
        )
        for n, title in enumerate(MARKERS)
    ]
    batch = prepare_batch(events, RuleSet.compile([], []), now)
    w = time.perf_counter()
    with store.write():
        written = write_batch(store, batch).new
    return {"events": written, "write_ms": _ms(time.perf_counter() - w)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="a copy: it is migrated")
    parser.add_argument("--before", type=Path, help="a schema-2 copy, read-only, for the old way")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    out: dict = {"benchmark": "events_search", "store": str(args.store)}
    out["upgrade"] = upgrade(args.store)
    out["bytes"] = args.store.stat().st_size
    store = open_store(args.store)
    old = None
    if args.before:
        old = sqlite3.connect(f"{args.before.resolve().as_uri()}?mode=ro", uri=True)
    try:
        out["events"] = store.db.execute_sql("SELECT max(id) FROM event").fetchone()[0]
        out["markers"] = write_markers(store)
        results = {}
        for query in QUERIES:
            flt = feed.EventFilter.parse(query)
            wall, cpu, rows = _best(lambda flt=flt: feed.event_rows(flt), args.repeat)
            entry = {
                "rows": len(rows),
                "first_window_ms": _ms(wall),
                "first_window_cpu_ms": _ms(cpu),
            }
            wall, cpu, _ = _best(lambda flt=flt: _ids(store, flt), args.repeat)
            entry.update(first_ids_ms=_ms(wall), first_ids_cpu_ms=_ms(cpu))
            if rows:
                below = rows[-1].id
                wall, cpu, older = _best(
                    lambda flt=flt, b=below: feed.event_rows(flt, before_id=b), args.repeat
                )
                entry.update(older_rows=len(older), older_window_ms=_ms(wall))
                above = older[0].id if older else rows[0].id
                wall, cpu, newer = _best(
                    lambda flt=flt, a=above: feed.event_rows(flt, after_id=a), args.repeat
                )
                entry.update(newer_rows=len(newer), newer_window_ms=_ms(wall))
            if old is not None:
                sql, params = _old_sql(flt)
                wall, cpu, found = _best(
                    lambda s=sql, p=params: old.execute(s, p).fetchall(), min(args.repeat, 2)
                )
                entry.update(old_scan_rows=len(found), old_scan_ms=_ms(wall))
            results[query] = entry
            print(query, entry, file=sys.stderr)
        out["queries"] = results
    finally:
        store.close()
        if old is not None:
            old.close()
    out.update(python=platform.python_version(), sqlite=sqlite3.sqlite_version, cpus=os.cpu_count())
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
