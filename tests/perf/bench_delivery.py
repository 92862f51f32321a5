"""Benchmark: how fast the outbox delivers, against a plain HTTP loop to the same receiver.

``--alerts`` alerts (10,000) are written to a real SQLite store through the pipeline's write
path (``prepare_batch`` / ``write_batch``, a page of GitHub issues per transaction, judged by the
20 rules of ``bench_pipeline``, which route to every configured channel: here the generic
webhook). Then the engine's :class:`~mrt_engine.delivery.worker.DeliveryWorkers` (``--workers``
4) drain the outbox: claim under a lease, render the template, sign (Standard Webhooks), POST,
record the attempt. The receiver is :class:`~mrt_engine.simulators.webhook_sink.WebhookSink`
(threaded, verifying every signature) in its own process on 127.0.0.1, so it does not share the
measured process's GIL.

In the same run, a plain ``httpx.Client`` loop (one thread, one keep-alive connection) POSTs the
same bodies with the same headers to the same receiver, before and after the outbox run; its
rate is the mean of the two. ``ratio`` = outbox deliveries/s over the loop's requests/s (target:
at least 0.5). CPU seconds of this process are given for each phase, and per delivery or request
(on a busy machine the loop's rate, which waits for the receiver at every request, drops more
than the workers', who send while others wait: the CPU per delivery then tells more). Grouping (issue 11:
``group_wait``, 30 s by default) must not hold the alerts: the bench's config turns it off, and
the outbox claims with the channel policies the engine builds from that config. Prints JSON.

    python tests/perf/bench_delivery.py [--alerts 10000] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import synthetic_items, twenty_rules

from mrt_engine.batch import prepare_batch, write_batch
from mrt_engine.components import build_components
from mrt_engine.config import validate
from mrt_engine.delivery.outbox import Outbox, OutboxPolicy, message_context
from mrt_engine.delivery.policy import channel_policies
from mrt_engine.delivery.worker import DeliveryWorkers
from mrt_engine.notify.base import Outgoing
from mrt_engine.rules import RuleSet
from mrt_engine.sources.github import GitHubIssues, GitHubSettings
from mrt_engine.store.db import open_store

SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
REPOS = ["vllm-project/vllm", "sgl-project/sglang", "deepseek-ai/DeepSeek-V3", "QwenLM/Qwen3"]
PAGE = 500
T0 = datetime(2026, 6, 1, tzinfo=UTC)


# ---------------------------------------------------------------------- the receiver's process
def serve_sink() -> None:
    """``--serve-sink``: run the receiver, print its URL, serve until stdin closes."""
    import re

    from mrt_engine.simulators.base import Response
    from mrt_engine.simulators.webhook_sink import WebhookSink

    sink = WebhookSink(secret=SECRET, record_requests=False)
    sink.route("GET", re.escape("/count"), lambda r, m: Response.json({"count": sink.count}))
    sink.start()
    print(sink.hook_url, flush=True)
    sys.stdin.read()
    sink.stop()


class SinkProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-sink"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self.proc.stdout.readline().strip()
        self.base = self.url.rsplit("/hooks/", 1)[0]
        self.client = httpx.Client()

    def count(self) -> int:
        return self.client.get(f"{self.base}/count").json()["count"]

    def close(self) -> None:
        self.client.close()
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# ---------------------------------------------------------------------- the store
def write_alerts(store, rules: RuleSet, alerts: int) -> dict:
    """Pages of synthetic issues through the pipeline's write path until ``alerts`` outbox
    rows exist; returns the counts and the time it took."""
    config = validate({"sources": {"github": {"repos": REPOS}}})
    settings: GitHubSettings = config.source_sections()["github"]
    t0 = time.perf_counter()
    written = seed = 0
    while True:
        for repo in REPOS:
            source = GitHubIssues(repo, "issues", settings, None, 60)
            items = synthetic_items(PAGE, "dense", seed=seed)
            seed += 1
            for item in items:
                item["number"] += seed * PAGE
                item["html_url"] = f"https://github.com/{repo}/issues/{item['number']}"
            now = T0 + timedelta(minutes=seed)
            found = [e for item in items for e in source.item_events(item, now)]
            with store.write():
                written += write_batch(store, prepare_batch(found, rules, now)).new
            queued = store.db.execute_sql("SELECT COUNT(*) FROM delivery").fetchone()[0]
            if queued >= alerts:
                return {
                    "events": written,
                    "deliveries": queued,
                    "write_seconds": round(time.perf_counter() - t0, 2),
                }


# ---------------------------------------------------------------------- the two senders
def outbox_run(store, channels, policies, workers: int, sink: SinkProcess, total: int) -> dict:
    """Start the delivery workers; time until the receiver has every delivery."""
    outbox = Outbox(
        store,
        owner="bench",
        policy=OutboxPolicy(max_attempts=3, backoff_initial=0.05),
        channels=policies,
    )
    stop = threading.Event()
    pool = DeliveryWorkers(outbox, channels, workers=workers, stop=stop)
    start_count = sink.count()
    cpu0, t0 = time.process_time(), time.perf_counter()
    pool.start()
    pool.notify()
    while sink.count() - start_count < total:
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stop.set()
    pool.join(30)  # wakes the idle workers to see the stop
    pool.close()
    sent = store.db.execute_sql("SELECT COUNT(*) FROM delivery WHERE status = 'sent'").fetchone()[0]
    return {
        "deliveries": total,
        "sent_in_store": sent,
        "seconds": round(elapsed, 3),
        "per_second": round(total / elapsed, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_delivery": round(cpu / total * 1000, 3),
    }


def prepared_requests(store, channel, limit: int) -> list[tuple[bytes, dict[str, str]]]:
    """The bodies and headers the webhook channel makes for the first ``limit`` deliveries."""
    cursor = store.db.cursor()
    ids = [
        r[0] for r in store.db.execute_sql("SELECT id FROM delivery ORDER BY id LIMIT ?", [limit])
    ]
    return [channel.request(Outgoing(i, 1, message_context(cursor, i))) for i in ids]


def plain_loop(url: str, requests: list[tuple[bytes, dict[str, str]]]) -> dict:
    """One ``httpx.Client`` POSTing every prepared request in turn."""
    with httpx.Client(timeout=30) as client:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for body, headers in requests:
            client.post(url, content=body, headers=headers).raise_for_status()
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    return {
        "requests": len(requests),
        "seconds": round(elapsed, 3),
        "per_second": round(len(requests) / elapsed, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_request": round(cpu / len(requests) * 1000, 3),
    }


def run(alerts: int, workers: int, folder: Path) -> dict:
    sink = SinkProcess()
    env = {"BENCH_HOOK_URL": sink.url, "BENCH_HOOK_SECRET": SECRET}
    config = validate(
        {
            "notify": {"webhook": {"url_env": "BENCH_HOOK_URL", "secret_env": "BENCH_HOOK_SECRET"}},
            "delivery": {
                "workers": workers,
                "group_wait_seconds": 0,
                "group_interval_seconds": 0,
            },
        }
    )
    channels = build_components(config, env).channels
    rules = RuleSet.compile(twenty_rules(), list(channels))
    store = open_store(folder / "bench.sqlite3")
    try:
        written = write_alerts(store, rules, alerts)
        total = written["deliveries"]
        requests = prepared_requests(store, channels["webhook"], total)
        before = plain_loop(sink.url, requests)
        outbox = outbox_run(store, channels, channel_policies(config), workers, sink, total)
        after = plain_loop(sink.url, requests)
    finally:
        for channel in channels.values():
            channel.close()
        store.close()
        sink.close()
    loop_rate = (before["per_second"] + after["per_second"]) / 2
    return {
        "alerts": total,
        "workers": workers,
        "store": written,
        "outbox": outbox,
        "plain_httpx_loop": {"before": before, "after": after, "per_second": round(loop_rate, 1)},
        "ratio": round(outbox["per_second"] / loop_rate, 3),
        "target_ratio": 0.5,
        "body_bytes_mean": round(sum(len(b) for b, _ in requests) / max(len(requests), 1)),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--serve-sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sink:
        serve_sink()
        return
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as folder:
        print(json.dumps(run(args.alerts, args.workers, Path(folder)), indent=2))


if __name__ == "__main__":
    main()
