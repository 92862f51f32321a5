"""Benchmark: the console over a store of 1,000,000 events.

Fills a store (plain ``executemany``, as fast as possible, with 10% of events hit by a rule and
alerted), then runs the real console headless at 120x40 and measures:

* first paint: from starting the app until the Events table shows its first window;
* page down inside the window (the table alone) and across windows (a store read of the next
  80 rows by id), each from the key press until the table holds the result, one press every
  200 ms (a held key would also measure the painting of the pages in between);
* a filtered read (a word that is rare, so SQLite scans far) for reference.

Targets: first paint < 1 s, page down < 50 ms. Prints JSON.

    python tests/perf/bench_console.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from textual import events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console_data import NOW, WEBHOOK_ENV, write_config

from mrt_engine.config import load_config
from mrt_engine.engine import Engine
from mrt_engine.store import feed, migrations
from mrt_engine.timeutil import to_store
from mrt_tui.app import MrtApp
from mrt_tui.session import ConsoleSession


def fill(db: Path, n: int) -> float:
    start = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    migrations.migrate(conn)
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute("PRAGMA synchronous = off")
    when = to_store(NOW)
    batch = 50_000
    for lo in range(1, n + 1, batch):
        ids = range(lo, min(lo + batch, n + 1))
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO event (id, fingerprint, source, source_key, resource_type, resource_id,"
            " event_type, event_id, title, summary, url, author, labels, occurred_at, observed_at,"
            " raw, baseline) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                (
                    i,
                    f"{i:064x}",
                    "github",
                    "github:vllm-project/vllm:issues",
                    "repo_issue",
                    "vllm-project/vllm",
                    "issue_opened",
                    str(i),
                    f"[Bug] {'DeepSeek' if i % 10 == 0 else 'Llama'} issue number {i}",
                    "body",
                    f"https://github.com/vllm-project/vllm/issues/{i}",
                    "alice",
                    "[]",
                    when,
                    when,
                    None,
                    0,
                )
                for i in ids
            ),
        )
        hit_ids = [i for i in ids if i % 10 == 0]
        conn.executemany(
            "INSERT INTO rule_hit (event_id, rule, action, priority, reason, suppressed, origin,"
            " evaluated_at) VALUES (?,?,?,?,?,?,?,?)",
            (
                (i, "deepseek", "notify", 10, 'keyword "DeepSeek" in title', 0, "poll", when)
                for i in hit_ids
            ),
        )
        conn.executemany(
            "INSERT INTO alert (id, event_id, rules, priority, tags, origin, created_at) VALUES (?,?,?,?,?,?,?)",
            ((i, i, '["deepseek"]', 10, "[]", "poll", when) for i in hit_ids),
        )
        conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - start


async def measure(session: ConsoleSession, pages: int) -> dict:
    app = MrtApp(session, theme="mrt-dark", remember=False)
    started = time.perf_counter()
    async with app.run_test(size=(120, 40)):
        while not (app.screen.__class__.__name__ == "EventsScreen" and app.screen.table.row_count):
            await asyncio.sleep(0.002)
        first_paint = time.perf_counter() - started
        await asyncio.sleep(0.5)  # let start-up finish (other views mount, the first refresh)
        table = app.screen.table
        inside, across = [], []
        for _ in range(pages):
            before_keys, before_row = table.keys[:1], table.cursor_row
            t0 = time.perf_counter()
            # The key as the terminal delivers it (pilot.press also waits for the app to idle).
            app.post_message(events.Key("pagedown", None))
            while table.keys[:1] == before_keys and table.cursor_row == before_row:
                await asyncio.sleep(0.001)
            elapsed = time.perf_counter() - t0
            (across if table.keys[:1] != before_keys else inside).append(elapsed)
            await asyncio.sleep(0.2)  # an operator's pace: the screen has painted the last page
    return {"first_paint_s": first_paint, "inside": inside, "across": across}


def summary(values: list[float]) -> dict:
    if not values:
        return {}
    values = sorted(values)
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values) * 1000, 1),
        "p95_ms": round(values[int(len(values) * 0.95) - 1 if len(values) > 1 else 0] * 1000, 1),
        "max_ms": round(values[-1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["MRT_TUI_SETTINGS"] = str(Path(folder) / "tui.json")
        config_path = write_config(Path(folder))
        config = load_config(config_path)
        fill_s = fill(config.db_path, args.events)
        engine = Engine(config, environ={WEBHOOK_ENV: "http://127.0.0.1:9/x"}, clock=lambda: NOW)
        engine.open()
        session = ConsoleSession(
            engine.store, mode="embedded", engine=engine, config=config, clock=lambda: NOW
        )
        try:
            result = asyncio.run(measure(session, args.pages))
            with session.store.read():
                t0 = time.perf_counter()
                rows = feed.event_rows(feed.EventFilter.parse("deepseek matched:yes"))
                filtered_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                feed.event_rows(feed.EventFilter.parse("number 4242"))
                rare_s = time.perf_counter() - t0
        finally:
            session.close()
    inside, across = summary(result["inside"]), summary(result["across"])
    out = {
        "benchmark": "console_1m_events",
        "events": args.events,
        "fill_seconds": round(fill_s, 1),
        "first_paint_ms": round(result["first_paint_s"] * 1000, 1),
        "page_down_in_window": inside,
        "page_down_next_window": across,
        "filtered_window_ms": round(filtered_s * 1000, 1),
        "filtered_rows": len(rows),
        "rare_word_full_scan_ms": round(rare_s * 1000, 1),
        "targets": {"first_paint_ms": 1000, "page_down_ms": 50},
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
    }
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
