"""Benchmark: what an idle engine costs. 20 sources answer ``304 Not Modified`` every second.

A real ``mrt-engine run`` (its own process) polls 20 GitHub repositories (issues) of the GitHub
simulator on 127.0.0.1 every second, with a WeLink channel whose delivery workers idle-check
the outbox, into a real store on disk. After a warm-up (every source has answered 304 at least
once), a window of ``--seconds`` is measured on the engine's process with nothing attached to it
(a window of 60 s holds one write of the held idle polls, ``scheduler.idle_flush_seconds``),
then a second window of as long with strace attached, for the fsyncs:

* bytes written: ``write_bytes`` of ``/proc/PID/io`` (what the process sent, or dirtied, towards
  the disk: the store, its WAL, its shared-memory index, logs), and the store's logical growth
  (``page_count * page_size`` read through SQLite, so pages still in the WAL count);
* CPU: user + system time of the engine's process (``/proc/PID/stat``) over the window's wall
  time, in percent of one core, and per idle poll (on a busy machine both grow with the load:
  cold caches make the same work cost more);
* idle polls: the ``304`` answers the simulator gave inside the window (each idle poll is one
  conditional request);
* fsyncs: in the second window, ``strace -f -p PID -e trace=fsync,fdatasync -ttt`` attached to
  the engine; the calls per idle poll of that window. Not in the first window: a traced process
  pays for every thread wake-up (even with ``--seccomp-bpf``, which stops only those two calls,
  a thread handing work to another cost twice the CPU), so CPU measured under strace is the
  tracer's as much as the engine's. Without strace (``--no-strace``, or strace missing) fsyncs
  are not counted (``null``).

``--baseline REF`` also runs the engine code of a git ref (for example ``main``), exported with
``git archive`` and imported ahead of this checkout's, at the same time as this checkout's
(each with its own simulators and store; both measured over the same window, so under the same
machine load), so one run reports before and after. Prints JSON.

    python tests/perf/bench_idle.py [--sources 20] [--seconds 60] [--baseline main]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mrt_engine.simulators.base import Request, Response
from mrt_engine.simulators.github import GitHubSimulator
from mrt_engine.simulators.welink import WeLinkSimulator

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ghp_BENCHTOKEN0123456789abcdef"
WL_TOKEN = "wltok-bench"
TARGETS = {"fsyncs_per_idle_poll": 0, "bytes_per_idle_poll": 200, "cpu_percent": 2.0}

# Runs the engine with the code in argv[1] ahead of the editable install (whose import hook
# would otherwise win over sys.path), so a baseline ref runs its own code; writes its process
# id to argv[2] once it runs.
LAUNCHER = """
import os, sys
code, pid_file = sys.argv.pop(1), sys.argv.pop(1)
with open(pid_file, "w") as f:
    f.write(str(os.getpid()))
if code:
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in repr(f)]
    sys.path.insert(0, code)
import mrt_engine
assert not code or mrt_engine.__file__.startswith(code), mrt_engine.__file__
from mrt_engine.cli import main
sys.exit(main(sys.argv[1:]))
"""


class CountingGitHub(GitHubSimulator):
    """The GitHub simulator, counting its answers by status, with the time of each."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answers: list[tuple[float, str, int]] = []

    def decorate(self, request: Request, response: Response, *, fault: bool) -> Response:
        response = super().decorate(request, response, fault=fault)
        with self.lock:
            self.answers.append((time.time(), request.path, response.status))
        return response

    def between(self, t0: float, t1: float) -> Counter:
        with self.lock:
            return Counter(status for at, _, status in self.answers if t0 <= at < t1)

    def paths_with_304(self) -> set[str]:
        with self.lock:
            return {path for _, path, status in self.answers if status == 304}


def _proc(pid: int) -> dict[str, float]:
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines() if line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return {
        "write_bytes": int(io["write_bytes"]),
        "cpu_seconds": (int(stat[11]) + int(stat[12])) / tick,  # utime + stime
    }


def _store_size(path: Path) -> int:
    """The store's logical size (pages in the WAL included), read without migrating it."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        return pages * db.execute("PRAGMA page_size").fetchone()[0]


def _metric_rows(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        columns = {r[1] for r in db.execute("PRAGMA table_info(poll_metric)")}
        polls = "SUM(polls)" if "polls" in columns else "COUNT(*)"
        rows = db.execute(
            f"SELECT outcome, COUNT(*), {polls} FROM poll_metric GROUP BY outcome"
        ).fetchall()
    return {f"{outcome} rows": n for outcome, n, _ in rows} | {
        f"{outcome} polls": p for outcome, _, p in rows
    }


def _pid_from(file: Path, process: subprocess.Popen) -> int:
    """The engine's process id, once the launcher wrote it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        text = file.read_text() if file.exists() else ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise RuntimeError("the engine did not start")


def _fsyncs(trace: Path, t0: float, t1: float) -> Counter:
    """fsync/fdatasync calls in ``trace`` (strace -f -ttt output) timed inside [t0, t1)."""
    found: Counter = Counter()
    for line in trace.read_text().splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[2].startswith(("fsync(", "fdatasync(")):
            continue
        if t0 <= float(parts[1]) < t1:
            found[parts[2].split("(", 1)[0]] += 1
    return found


class EngineRun:
    """One engine (``code``: a source folder, "" for this checkout) with its own simulators
    and store, measured over a window."""

    def __init__(self, code: str, label: str, *, sources: int, interval: float, trace: bool):
        self.code, self.label, self.sources, self.trace = code, label, sources, trace
        self.work = Path(tempfile.mkdtemp(prefix="bench-idle-"))
        self.db = self.work / "mrt.sqlite3"
        self.github = CountingGitHub(token=TOKEN).start()
        self.welink = WeLinkSimulator(token=WL_TOKEN).start()
        self.process: subprocess.Popen | None = None
        self.strace: subprocess.Popen | None = None
        self.pid = 0
        repos = [f"org{n}/repo{n}" for n in range(sources)]
        for repo in repos:
            self.github.add_issue(repo, "an old issue", at=datetime(2026, 1, 1, tzinfo=UTC))
        self.config = {
            "watch_keywords": ["deepseek"],
            "state": {"sqlite_path": str(self.db)},
            "sources": {
                "github": {
                    "repos": repos,
                    "token_env": "GH",
                    "api_base": self.github.url,
                    "monitor": {"pulls": False},
                    "poll_interval_seconds": interval,
                }
            },
            "notify": {"welink": {"webhook_env": "WL"}},
            "http": {"hosts": {"127.0.0.1": {"min_interval_seconds": 0}}},
            "log": {"level": "warning"},
        }

    def start(self) -> None:
        config_path = self.work / "config.json"
        config_path.write_text(json.dumps(self.config))
        env = {**os.environ, "GH": TOKEN, "WL": self.welink.webhook_url}
        pid_file = self.work / "engine.pid"
        command = [sys.executable, "-c", LAUNCHER, self.code, str(pid_file), "run", "--config"]
        command.append(str(config_path))
        log = (self.work / "engine.log").open("w")
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        self.pid = _pid_from(pid_file, self.process)

    def settled(self) -> bool:
        """Every source has answered 304 at least once (after the baseline poll and the first
        incremental one, a 200 with an ETag)."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"engine stopped: {(self.work / 'engine.log').read_text()}")
        return len(self.github.paths_with_304()) >= self.sources

    def snapshot(self) -> dict[str, Any]:
        return {
            "at": time.time(),
            **_proc(self.pid),
            "size": _store_size(self.db),
            "metrics": _metric_rows(self.db),
        }

    def attach_strace(self) -> None:
        """Count the engine's fsyncs from now on (every thread's)."""
        command = ["strace", "-f", "-qq", "-ttt", "-e", "trace=fsync,fdatasync", "-e"]
        command += ["signal=none", "-o", str(self.work / "fsyncs.txt"), "-p", str(self.pid)]
        self.strace = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10  # attached once it has written its first line
        while time.monotonic() < deadline and not (self.work / "fsyncs.txt").exists():
            time.sleep(0.05)
        time.sleep(0.5)

    def detach_strace(self) -> None:
        if self.strace is not None:
            self.strace.send_signal(signal.SIGINT)  # strace detaches, the engine goes on
            self.strace.wait(30)
            self.strace = None

    def fsync_figures(self, t0: float, t1: float) -> dict[str, Any]:
        fsyncs = _fsyncs(self.work / "fsyncs.txt", t0, t1)
        idle = self.github.between(t0, t1).get(304, 0)
        return {
            "fsync_window_seconds": round(t1 - t0, 1),
            "fsync_window_idle_polls": idle,
            "fsyncs": dict(fsyncs),
            "fsyncs_per_idle_poll": round(sum(fsyncs.values()) / idle, 4) if idle else None,
        }

    def stop(self) -> None:
        self.detach_strace()
        if self.process is not None:
            os.kill(self.pid, signal.SIGTERM)
            self.process.wait(60)
            self.process = None

    def figures(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        t0, t1 = before["at"], after["at"]
        wall = t1 - t0
        answers = self.github.between(t0, t1)
        idle = answers.get(304, 0)
        written = after["write_bytes"] - before["write_bytes"]
        cpu = after["cpu_seconds"] - before["cpu_seconds"]
        growth = after["size"] - before["size"]
        metrics0, metrics1 = before["metrics"], after["metrics"]
        return {
            "code": self.label,
            "window_seconds": round(wall, 1),
            "answers": {str(k): v for k, v in sorted(answers.items())},
            "idle_polls": idle,
            "bytes_written": written,
            "bytes_per_idle_poll": round(written / idle, 1) if idle else None,
            "bytes_per_day": int(written / wall * 86400),
            "store_growth_bytes": growth,
            "store_growth_per_day": int(growth / wall * 86400),
            "cpu_percent": round(cpu / wall * 100, 2),
            "cpu_ms_per_idle_poll": round(cpu / idle * 1000, 2) if idle else None,
            "poll_metric_in_window": {
                k: metrics1.get(k, 0) - metrics0.get(k, 0) for k in sorted(set(metrics1))
            },
        }

    def close(self) -> None:
        if self.strace is not None:
            self.strace.kill()
            self.strace.wait()
        if self.process is not None:
            with suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.github.stop()
        self.welink.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def measure(runs: list[EngineRun], *, seconds: float, warmup: float) -> list[dict[str, Any]]:
    """Start every engine, let them settle, then measure all of them over the same window (the
    same machine load for each: this machine is shared, and CPU time depends on it), and count
    their fsyncs over a second one."""
    for run in runs:
        run.start()
    deadline = time.monotonic() + 120
    while not all(run.settled() for run in runs):
        if time.monotonic() > deadline:
            raise RuntimeError("the engines did not settle in 120 s")
        time.sleep(0.2)
    time.sleep(warmup)
    before = [run.snapshot() for run in runs]
    time.sleep(seconds)
    after = [run.snapshot() for run in runs]
    results = [run.figures(b, a) for run, b, a in zip(runs, before, after, strict=True)]
    if runs[0].trace:
        for run in runs:
            run.attach_strace()
        t0 = time.time()
        time.sleep(seconds)
        t1 = time.time()
        for run, result in zip(runs, results, strict=True):
            run.detach_strace()
            result.update(run.fsync_figures(t0, t1))
    else:
        for result in results:
            result.update(fsyncs=None, fsyncs_per_idle_poll=None)
    for run in runs:
        run.stop()
    return results


def export(ref: str) -> str:
    """The engine code of git ``ref``, exported to a temporary folder."""
    folder = tempfile.mkdtemp(prefix="bench-idle-code-")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "mrt_engine"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after every 304")
    parser.add_argument("--baseline", help="also measure the engine of this git ref first")
    parser.add_argument("--no-strace", action="store_true", help="do not count fsyncs")
    args = parser.parse_args()
    trace = not args.no_strace and shutil.which("strace") is not None
    exported = export(args.baseline) if args.baseline else None
    codes = [(exported, args.baseline)] if exported else []
    codes.append(("", "this checkout"))
    runs: list[EngineRun] = []
    try:
        for code, label in codes:
            runs.append(
                EngineRun(code, label, sources=args.sources, interval=args.interval, trace=trace)
            )
        results = measure(runs, seconds=args.seconds, warmup=args.warmup)
    finally:
        for run in runs:
            run.close()
        if exported:
            shutil.rmtree(exported, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "idle engine: sources answering 304 every second",
                "sources": args.sources,
                "interval_seconds": args.interval,
                "fsync_method": "strace -f -p PID -e trace=fsync,fdatasync, a second window"
                if trace
                else None,
                "targets": TARGETS,
                "python": platform.python_version(),
                "sqlite": sqlite3.sqlite_version,
                "runs": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
