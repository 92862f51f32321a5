"""Benchmark: the console, attached without an engine, over a year-like store of 1,000,000 events.

The store is written through the pipeline's own write path (``year_store.build``: events with
raw JSON and bodies, rule hits, alerts, an aged outbox in every status, poll metrics), or is a
copy of one already built (``--store``; the original is never opened: opening migrates). A few
events with a word no other title has are committed the same way, for the rare-word search.

The real console (``mrt-tui --attach --db``) then runs headless at 120x40 in this process, keys
are pressed with ``pilot.press``, and a key's time runs from the press until the screen has been
painted with its result (the app's ``_display`` of a frame that shows it). Measured:

* first paint: from starting the app until a frame shows the Events table's first window;
* page down (one press every 200 ms, an operator's pace): inside the window, and across to the
  next older window (a store read, unless it was prefetched); also the UI thread's CPU time per
  press, which a machine busy with other work does not inflate;
* a rare-word search: ``/``, the word, enter, until a frame shows its answer;
* idle CPU of each view over 10 s (this process's CPU time: the whole console), visited in turn
  (Events, Outbox, Trace, Rules, Sources, Silences, Health, Incidents), then Events again after
  all of them, and the Events view with the rare-word filter still applied; with the store
  statements each window ran;
* RSS now and at its peak.

Targets: first paint < 500 ms, page down p95 < 50 ms, idle <= 1% CPU, RSS < 150 MB. Prints JSON.

    python tests/perf/bench_console.py --store /work/perf/year-1m.sqlite3  # copied, not opened
    python tests/perf/bench_console.py --events 1000000                    # builds one
    ... --keep DIR    keeps the working copy in DIR (3 GB) and reuses it on the next run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

RARE_WORD = "zanzibar"  # in no synthetic title; the bench commits a few events that have it
RARE_EVENTS = 3
IDLE_SECONDS = 10.0
SIZE = (120, 40)


# ---------------------------------------------------------------------- the store
def prepare(path: Path) -> dict:
    """Open (and so migrate) the store, then commit the rare-word events as a poll would.
    Runs in a child process, so none of its memory counts as the console's."""
    from bench_pipeline import twenty_rules
    from year_store import CHANNELS, REPOS

    from mrt_engine.batch import commit_events
    from mrt_engine.events import TrackerEvent
    from mrt_engine.rules import RuleSet
    from mrt_engine.store.db import open_store
    from mrt_engine.store.models import Event

    t0 = time.perf_counter()
    store = open_store(path)
    migrated = time.perf_counter() - t0
    try:
        with store.read():
            newest = Event.select().order_by(Event.id.desc()).get()
        now = newest.observed_at + timedelta(minutes=1)
        events = [
            TrackerEvent(
                source="github",
                source_key=f"github:{REPOS[0]}:issues",
                resource_type="repo_issue",
                resource_id=REPOS[0],
                event_type="issue_opened",
                event_id=f"rare-{n}",
                title=f"[Bug] {RARE_WORD.capitalize()} tokenizer drops the last byte ({n})",
                summary="seen once in a year",
                url=f"https://github.com/{REPOS[0]}/issues/rare-{n}",
                author="alice",
                labels=("bug",),
                occurred_at=now,
                observed_at=now,
                raw={"number": n},
            )
            for n in range(RARE_EVENTS)
        ]
        with store.write():
            commit_events(store, events, RuleSet.compile(twenty_rules(), list(CHANNELS)), now)
        with store.read():
            counts = {
                table: store.db.execute_sql(f"SELECT MAX(id) FROM {table}").fetchone()[0]
                for table in ("event", "rule_hit", "delivery")
            }
    finally:
        store.close()
    for backup in path.parent.glob(f"{path.name}.v*.bak"):
        backup.unlink()  # the copy kept before a schema upgrade: 3 GB nobody needs here
    return {"open_and_migrate_s": round(migrated, 2), "newest_ids": counts}


def store_for(args: argparse.Namespace, folder: Path) -> tuple[Path, dict]:
    path = folder / "year.sqlite3"
    figures: dict = {}
    if path.exists():  # kept by an earlier run (--keep): prepare() again is a no-op on it
        figures["reused"] = str(path)
    elif args.store:
        source = Path(args.store)
        subprocess.run(["cp", "--reflink=auto", str(source), str(path)], check=True)
        figures["copied_from"] = str(source)
    else:
        t0 = time.perf_counter()
        build = [sys.executable, str(HERE / "year_store.py"), "--events", str(args.events)]
        subprocess.run(
            [*build, "--out", str(path)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        figures["build_s"] = round(time.perf_counter() - t0, 1)
    child = subprocess.run(
        [sys.executable, __file__, "--prepare", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures.update(json.loads(child.stdout))
    figures["bytes"] = path.stat().st_size
    return path, figures


# ---------------------------------------------------------------------- the console
def rss_mb() -> dict:
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"now": fields.get("VmRSS"), "peak": fields.get("VmHWM")}


def timed_app_class():
    import mrt_tui.app
    from mrt_tui.app import MrtApp

    class TimedApp(MrtApp):
        """The console, telling when a frame has been painted that shows what is awaited."""

        CSS_PATH = Path(mrt_tui.app.__file__).parent / MrtApp.CSS_PATH  # not next to this file

        awaited: tuple[Callable[[], bool], asyncio.Future] | None = None

        def expect(self, shown: Callable[[], bool]) -> asyncio.Future:
            future = asyncio.get_running_loop().create_future()
            self.awaited = (shown, future)
            return future

        def _display(self, screen, renderable) -> None:
            super()._display(screen, renderable)
            # A frame was composed (headless: composed, not written to a terminal).
            if renderable is not None and not self._batch_count and self.awaited is not None:
                shown, future = self.awaited
                if not future.done() and shown():
                    future.set_result((time.perf_counter(), time.thread_time()))
                    self.awaited = None

    return TimedApp


async def press_and_time(
    app, pilot, keys: tuple[str, ...], shown, timeout: float = 30
) -> tuple[float, float]:
    """Seconds from pressing ``keys`` until a painted frame shows ``shown()``: wall-clock, and
    the CPU time the UI thread spent meanwhile (what a busy machine does not inflate)."""
    painted = app.expect(shown)
    t0, cpu0 = time.perf_counter(), time.thread_time()
    await pilot.press(*keys)
    wall, cpu = await asyncio.wait_for(painted, timeout)
    return wall - t0, cpu - cpu0


def status_text(app) -> str:
    return str(app.screen.query_one("#status").render())


async def idle(app, statements: list[str]) -> dict:
    """CPU of this process (the console: UI thread, workers) while nobody touches it."""
    await asyncio.sleep(2.0)  # the view's own reads after the switch finish
    statements.clear()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(IDLE_SECONDS)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "cpu_percent": round(100 * cpu / wall, 2),
        "store_statements": len(statements),
    }


async def measure(session, pages: int) -> dict:
    from mrt_tui.screens.events import EventsScreen

    TimedApp = timed_app_class()
    statements: list[str] = []  # Peewee logs every statement it runs at DEBUG, any thread

    class Record(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            statements.append(str(record.msg))

    peewee_log = logging.getLogger("peewee")
    peewee_log.addHandler(Record(logging.DEBUG))
    peewee_log.setLevel(logging.DEBUG)
    peewee_log.propagate = False
    app = TimedApp(session, theme="mrt-dark", remember=False)
    out: dict = {}
    first = app.expect(lambda: isinstance(app.screen, EventsScreen) and app.screen.table.row_count)
    started = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        painted, _cpu = await asyncio.wait_for(first, 60)
        out["first_paint_ms"] = round((painted - started) * 1000, 1)
        out["idle"] = {"events": await idle(app, statements)}

        table = app.screen.table
        inside, across, cpu = [], [], []
        for _ in range(pages):
            keys, row = table.keys[:1], table.cursor_row

            def moved(keys=keys, row=row) -> bool:
                return table.keys[:1] != keys or table.cursor_row != row

            seconds, ui_cpu = await press_and_time(app, pilot, ("pagedown",), moved)
            (across if table.keys[:1] != keys else inside).append(seconds)
            cpu.append(ui_cpu)
            await asyncio.sleep(0.2)
        out["page_down"] = summary(inside + across)
        out["page_down_in_window"] = summary(inside)
        out["page_down_next_window"] = summary(across)
        out["page_down_ui_thread_cpu"] = summary(cpu)
        await pilot.press("f", "f")  # follow off and on again: back to the newest window

        views = (
            ("2", "Outbox"),
            ("enter", "Trace"),
            ("4", "Rules"),
            ("5", "Sources"),
            ("6", "Silences"),
            ("7", "Health"),
            ("8", "Incidents"),
        )
        for key, title in views:

            def shown(title=title) -> bool:
                # (A view that may have no rows on this store, or no table: its title painted.)
                screen = app.screen
                table = getattr(screen, "table", None)
                rows = table is None or title in ("Silences", "Incidents") or table.row_count
                return title == screen.TITLE and bool(rows)

            seconds, _cpu = await press_and_time(app, pilot, (key,), shown)
            view = title.lower()
            out.setdefault("switch_ms", {})[view] = round(seconds * 1000, 1)
            out["idle"][view] = await idle(app, statements)
        await pilot.press("1")
        out["idle"]["events_after_all_views"] = await idle(app, statements)

        await pilot.press("slash", *RARE_WORD)
        seconds, _cpu = await press_and_time(
            app, pilot, ("enter",), lambda: f"filter: {RARE_WORD}" in status_text(app), 120
        )
        out["rare_word_search"] = {
            "word": RARE_WORD,
            "ms": round(seconds * 1000, 1),
            "rows": app.screen.table.row_count,
        }
        out["idle"]["events_filtered"] = await idle(app, statements)
        out["rss_mb"] = rss_mb()
    return out


def summary(values: list[float]) -> dict:
    if not values:
        return {}
    values = sorted(values)
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values) * 1000, 1),
        "p95_ms": round(values[math.ceil(len(values) * 0.95) - 1] * 1000, 1),  # nearest rank
        "max_ms": round(values[-1] * 1000, 1),
    }


def main() -> None:
    global IDLE_SECONDS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="build a store of N events")
    parser.add_argument("--store", help="copy this built store instead (it is not opened)")
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument(
        "--keep", help="keep the working copy in this folder (and reuse it if it is there)"
    )
    parser.add_argument("--idle", type=float, default=10.0, help="seconds per idle figure")
    parser.add_argument("--prepare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    IDLE_SECONDS = args.idle
    if args.prepare:
        json.dump(prepare(Path(args.prepare)), sys.stdout)
        return
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-console-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path, store_figures = store_for(args, folder)
        os.environ["MRT_TUI_SETTINGS"] = str(folder / "tui.json")
        from mrt_tui.session import attached

        session = attached(db=path)  # mrt-tui --attach --db PATH: no engine in this process
        try:
            result = asyncio.run(measure(session, args.pages))
        finally:
            session.close()
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    idle_worst = max(v["cpu_percent"] for v in result["idle"].values())
    out = {
        "benchmark": "console_attached_year_store",
        "store": store_figures,
        **result,
        "idle_cpu_percent_worst": idle_worst,
        "targets": {
            "first_paint_ms": 500,
            "page_down_p95_ms": 50,
            "idle_cpu_percent": 1,
            "rss_mb": 150,
        },
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
