"""A store that looks like a year of use, written through the pipeline's own write path.

Issues and pull requests of several repositories (the synthetic GitHub objects of
``bench_pipeline``), normalised by the GitHub source, judged by 20 rules and committed by
``prepare_batch`` / ``write_batch`` a page per transaction, as polls commit them: events with
their raw JSON and bodies, rule hits, alerts and one outbox row per channel. Then the outbox is
aged the way a year of delivery leaves it (most sent with one attempt, some retried, some dead
after every attempt, a few still pending) and a year of poll metrics is added, with the source
states of every repository.

    python tests/perf/year_store.py --events 1000000 --out /work/perf/year-1m.sqlite3

Benchmarks and tests that need a big store build one with :func:`build` (or copy a built file:
opening a store migrates it, so never open the original of a shared file).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import synthetic_items, twenty_rules

from mrt_engine.batch import prepare_batch, write_batch
from mrt_engine.config import validate
from mrt_engine.rules import RuleSet
from mrt_engine.sources.github import GitHubIssues, GitHubSettings
from mrt_engine.store.db import open_store
from mrt_engine.timeutil import to_store

REPOS = [
    "vllm-project/vllm",
    "sgl-project/sglang",
    "huggingface/transformers",
    "deepseek-ai/DeepSeek-V3",
    "QwenLM/Qwen3",
    "NVIDIA/TensorRT-LLM",
    "ggml-org/llama.cpp",
    "microsoft/DeepSpeed",
    "pytorch/pytorch",
    "InternLM/lmdeploy",
]
CHANNELS = ("welink", "email")
YEAR_START = datetime(2025, 12, 1, tzinfo=UTC)
PAGE = 500


def build(path: Path, events: int, *, seed: int = 7, metrics_per_day: int = 96) -> dict:
    """Write a year-like store of about ``events`` events to ``path``; returns its figures."""
    t0 = time.perf_counter()
    config = validate({"sources": {"github": {"repos": REPOS}}})
    settings: GitHubSettings = config.source_sections()["github"]
    rules = RuleSet.compile(twenty_rules(), list(CHANNELS))
    store = open_store(path)
    rng = random.Random(seed)
    per_source = -(-events // (len(REPOS) * 2))
    seconds_apart = 365 * 86400 / per_source
    written = 0
    try:
        store.db.execute_sql("PRAGMA synchronous = OFF")  # the content, not the durability
        for index, repo in enumerate(REPOS):
            for kind in ("issues", "pulls"):
                source = GitHubIssues(repo, kind, settings, None, 60)
                items = synthetic_items(per_source, "realistic", seed=seed + index * 2)
                for number, item in enumerate(items, start=1):
                    when = YEAR_START + timedelta(seconds=number * seconds_apart)
                    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
                    item["created_at"] = item["updated_at"] = stamp
                    item["html_url"] = f"https://github.com/{repo}/{kind[:-1]}/{number}"
                    if kind == "pulls":
                        item["pull_request"] = {"merged_at": None}
                for lo in range(0, len(items), PAGE):
                    page = items[lo : lo + PAGE]
                    now = YEAR_START + timedelta(seconds=(lo + len(page)) * seconds_apart)
                    found = [e for item in page for e in source.item_events(item, now)]
                    batch = prepare_batch(found, rules, now)
                    with store.write():
                        written += write_batch(store, batch).new
        _age_the_outbox(store, rng)
        metrics = _poll_metrics(store, rng, metrics_per_day)
        _source_states(store)
        counts = {
            table: store.db.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("event", "rule_hit", "alert", "delivery", "attempt", "poll_metric")
        }
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {
        "path": str(path),
        "events_written": written,
        "rows": counts,
        "poll_metrics": metrics,
        "bytes": path.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _age_the_outbox(store, rng: random.Random) -> None:
    """Deliveries as a year leaves them: 96% sent (one attempt), 2% sent after retries, 1% dead
    after ten attempts, 0.5% retrying, the rest pending (the newest)."""
    db = store.db
    rows = db.execute_sql("SELECT id, created_at FROM delivery ORDER BY id").fetchall()
    total = len(rows)
    updates, attempts = [], []
    for position, (delivery_id, created) in enumerate(rows):
        started = datetime.fromisoformat(created.replace("Z", "+00:00"))
        if position > total * 0.997:
            continue  # the newest: still pending
        roll = rng.random()
        if roll < 0.96:
            status, tries, outcome_last = "sent", 1, "sent"
        elif roll < 0.98:
            status, tries, outcome_last = "sent", rng.randint(2, 4), "sent"
        elif roll < 0.99:
            status, tries, outcome_last = "dead", 10, "failed"
        else:
            status, tries, outcome_last = "retrying", rng.randint(1, 5), "failed"
        at = started
        for attempt in range(1, tries + 1):
            at += timedelta(seconds=5 * 2 ** (attempt - 1))
            last = attempt == tries
            outcome = outcome_last if last else "failed"
            attempts.append(
                (
                    delivery_id,
                    to_store(at),
                    to_store(at + timedelta(milliseconds=180)),
                    180,
                    outcome,
                    200 if outcome == "sent" else 503,
                    '{"code":"0","data":"ok"}' if outcome == "sent" else "HTTP 503",
                    None if outcome == "sent" else "HTTP 503 from WeLink",
                    "welink-1",
                )
            )
        updates.append(
            (
                status,
                tries,
                None if status == "sent" else "HTTP 503 from WeLink",
                to_store(at) if status == "sent" else None,
                to_store(at + timedelta(minutes=10)),
                to_store(at),
                delivery_id,
            )
        )
    with store.write():
        cursor = db.cursor()
        cursor.executemany(
            "UPDATE delivery SET status = ?, attempts = ?, last_error = ?, sent_at = ?,"
            " next_attempt_at = ?, updated_at = ? WHERE id = ?",
            updates,
        )
        cursor.executemany(
            "INSERT INTO attempt (delivery_id, started_at, finished_at, duration_ms, outcome,"
            " http_status, reply, error, worker) VALUES (?,?,?,?,?,?,?,?,?)",
            attempts,
        )


def _poll_metrics(store, rng: random.Random, per_day: int) -> int:
    """``per_day`` polls a day of every source key over the year, most of them 304s."""
    rows = []
    step = timedelta(seconds=86400 / per_day) if per_day else None
    for repo in REPOS if step else ():
        for kind in ("issues", "pulls"):
            key = f"github:{repo}:{kind}"
            at = YEAR_START
            while at < YEAR_START + timedelta(days=365):
                changed = rng.random() < 0.1
                rows.append(
                    (
                        key,
                        to_store(at),
                        to_store(at + timedelta(milliseconds=120)),
                        120,
                        "ok" if changed else "not_modified",
                        1,
                        rng.randint(1, 30) if changed else 0,
                        rng.randint(0, 5) if changed else 0,
                        0,
                        0,
                        None,
                    )
                )
                at += step
    with store.write():
        store.db.cursor().executemany(
            "INSERT INTO poll_metric (source_key, started_at, finished_at, duration_ms, outcome,"
            " http_requests, events_fetched, events_new, events_matched, alerts_created, error)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    return len(rows)


def _source_states(store) -> None:
    end = to_store(YEAR_START + timedelta(days=365))
    with store.write():
        store.db.cursor().executemany(
            "INSERT OR REPLACE INTO source_state (source_key, platform, cursor, baseline_done,"
            " baseline_at, last_poll_at, last_success_at, next_poll_at, updated_at)"
            " VALUES (?, 'github', ?, 1, ?, ?, ?, ?, ?)",
            [
                (
                    f"github:{repo}:{kind}",
                    json.dumps({"since": end[:19] + "Z"}),
                    to_store(YEAR_START),
                    end,
                    end,
                    end,
                    end,
                )
                for repo in REPOS
                for kind in ("issues", "pulls")
            ],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics-per-day", type=int, default=96)
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; build into a new file")
    print(json.dumps(build(args.out, args.events, metrics_per_day=args.metrics_per_day), indent=2))


if __name__ == "__main__":
    main()
