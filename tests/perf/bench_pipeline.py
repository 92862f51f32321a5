"""Benchmark: the poll pipeline against plain ``sqlite3.executemany`` of the same rows.

100,000 synthetic GitHub issue objects go, a page (100) per transaction as a poll would commit
them, through normalize -> fingerprint -> dedupe -> rules (20) -> store -> outbox. Each page repeats
the last item of the one before (the inclusive ``since`` of a real poll), so dedupe has work.
``--mix realistic`` (default): prose bodies, a third naming one rule topic, most titles naming a
watched model; ``--mix dense``: bodies made only of rule terms, so every event hits several
rules (the worst case for rule evaluation and for the number of rows).
Then the very rows the pipeline stored (events, rule hits, alerts, deliveries) are inserted into
a fresh store of the same schema with plain ``executemany``, page by page, in the same kind of
transaction. Prints JSON; ratio = pipeline rate / executemany rate.

    python tests/perf/bench_pipeline.py [--events 100000] [--page 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mrt_engine.batch import prepare_batch, write_batch
from mrt_engine.config import validate
from mrt_engine.engine import tune_interpreter
from mrt_engine.rules import RuleConfig, RuleSet
from mrt_engine.sources.github import GitHubIssues, GitHubSettings
from mrt_engine.store import migrations
from mrt_engine.store.db import PRAGMAS, open_store

# Every rule term: the "dense" mix builds whole bodies from these (each event hits ~3.5 rules).
TOPIC_WORDS = [
    "fix",
    "crash",
    "kernel",
    "attention",
    "cache",
    "quantization",
    "fp8",
    "moe",
    "router",
    "scheduler",
    "tokenizer",
    "speculative",
    "decoding",
    "lora",
    "tensor",
    "parallel",
    "pipeline",
    "memory",
    "leak",
    "cuda",
    "graph",
    "rocm",
    "xpu",
    "tpu",
    "benchmark",
    "docs",
    "ci",
]
# Ordinary issue prose for the "realistic" mix, where a body mentions at most one rule topic.
PROSE_WORDS = [
    "when",
    "running",
    "the",
    "server",
    "with",
    "a",
    "large",
    "batch",
    "the",
    "request",
    "fails",
    "and",
    "the",
    "log",
    "shows",
    "an",
    "error",
    "expected",
    "output",
    "was",
    "correct",
    "before",
    "upgrading",
    "version",
    "python",
    "torch",
    "gpu",
    "node",
    "container",
    "latency",
    "throughput",
    "token",
    "prompt",
    "response",
    "stream",
    "endpoint",
    "config",
    "flag",
    "default",
    "value",
    "reproduce",
    "steps",
    "environment",
    "driver",
    "install",
    "build",
    "wheel",
    "image",
    "startup",
    "shutdown",
    "timeout",
    "warning",
    "trace",
    "stack",
    "line",
    "file",
    "test",
    "case",
    "result",
    "works",
    "broken",
    "slow",
    "fast",
    "regression",
]
TOPICS = [
    "fp8",
    "moe router",
    "speculative decoding",
    "lora",
    "tpu",
    "memory leak",
    "cuda graph",
    "rocm",
    "cve",
]
MODELS = [
    "DeepSeek-V3",
    "DeepSeek-R1",
    "Qwen3-235B",
    "Qwen2.5-VL",
    "Llama-4",
    "Mistral",
    "Gemma-3",
    "GLM-4.5",
    "Kimi-K2",
    "",
]


def _text(rng: random.Random, mix: str) -> tuple[str, str]:
    """A title and a body."""
    model = rng.choice(MODELS)
    kind = rng.choice(["Bug", "Feature", "Perf", "Doc"])
    if mix == "dense":
        title = f"[{kind}] {model} " + " ".join(rng.sample(TOPIC_WORDS, 5))
        return title.strip(), " ".join(rng.choice(TOPIC_WORDS) for _ in range(60))
    words = [rng.choice(PROSE_WORDS) for _ in range(60)]
    topic = rng.choice(TOPICS) if rng.random() < 0.3 else ""
    if topic:
        words.insert(rng.randrange(len(words)), topic)
    title = f"[{kind}] {model} " + " ".join(rng.sample(PROSE_WORDS, 4))
    if topic and rng.random() < 0.5:
        title += f" with {topic}"
    return " ".join(title.split()), " ".join(words)


def synthetic_items(n: int, mix: str = "realistic", seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    items = []
    for number in range(1, n + 1):
        when = (start + timedelta(seconds=number * 7)).strftime("%Y-%m-%dT%H:%M:%SZ")
        title, body = _text(rng, mix)
        items.append(
            {
                "number": number,
                "title": title,
                "html_url": f"https://github.com/vllm-project/vllm/issues/{number}",
                "state": "open",
                "user": {"login": rng.choice(["alice", "bob", "carol", "dependabot[bot]", "dave"])},
                "labels": [
                    {"name": n}
                    for n in rng.sample(
                        ["bug", "perf", "new-model", "rocm", "ci", "good first issue"], 2
                    )
                ],
                "body": body,
                "created_at": when,
                "updated_at": when,
                "closed_at": None,
                "comments": rng.randrange(10),
            }
        )
    return items


def twenty_rules() -> list[RuleConfig]:
    rules = [
        {"name": "deepseek", "keywords": ["deepseek"], "event_type": ["issue_opened", "pr_opened"]},
        {"name": "qwen", "keywords": ["qwen"], "fields": ["title", "summary", "labels"]},
        {"name": "kimi", "regex": [r"(?i)kimi-k\d"]},
        {"name": "glm", "regex": [r"\bGLM-\d"], "priority": 5},
        {"name": "new-model-label", "label": ["new-model"], "keywords": ["support", "feature"]},
        {"name": "fp8", "keywords": ["fp8"], "repo": ["vllm-project/*"]},
        {"name": "moe", "keywords": ["moe router"], "priority": 3},
        {"name": "rocm", "label": ["rocm"], "action": "tag", "tags": ["amd"]},
        {
            "name": "perf-tag",
            "keywords": ["[Perf]"],
            "fields": ["title"],
            "action": "tag",
            "tags": ["perf"],
        },
        {"name": "no-bots", "author": ["*[bot]"], "action": "suppress", "priority": 100},
        {
            "name": "no-docs",
            "keywords": ["[Doc]"],
            "fields": ["title"],
            "action": "suppress",
            "priority": 50,
        },
        {"name": "security", "keywords": ["cve", "vulnerability", "rce"], "priority": 90},
        {"name": "spec-decode", "regex": [r"speculative\s+decoding"], "fields": ["summary"]},
        {"name": "lora", "keywords": ["lora"], "block": {"keywords": ["docs"]}},
        {"name": "tpu", "keywords": ["tpu"], "author": ["alice", "carol"]},
        {"name": "cuda-graph", "regex": [r"cuda\s+graph"], "event_type": ["pr_*"]},
        {"name": "gemma", "keywords": ["gemma"], "org": ["vllm-project"]},
        {"name": "llama", "keywords": ["llama-4", "llama4"]},
        {
            "name": "mistral",
            "regex": [r"(?i)\bmistral\b"],
            "block": {"label": ["good first issue"]},
        },
        {"name": "leak", "keywords": ["memory leak"], "priority": 20},
    ]
    return [RuleConfig(**r) for r in rules]


def run_pipeline(
    db: Path, items: list[dict], page: int, workers: int = 1
) -> tuple[float, int, list[range]]:
    """Pages through normalize -> prepare (dedupe in page, rules, rows) -> write, as polls do.

    ``workers`` > 1 splits the items between that many sources (repositories) polled by parallel
    threads, as the engine's poll workers poll several sources: one evaluates rules while another
    writes. Returns the seconds, the events stored and the event-id range of each page.
    """
    config = validate({"sources": {"github": {"repos": ["vllm-project/vllm"]}}})
    settings: GitHubSettings = config.source_sections()["github"]
    rules = RuleSet.compile(twenty_rules(), ["welink", "email"])
    store = open_store(db)
    now = datetime.now(UTC)
    pages: list[range] = []
    share = -(-len(items) // workers)
    lock = threading.Lock()

    def poll(worker: int) -> None:
        repo = "vllm-project/vllm" if worker == 0 else f"vllm-project/vllm-{worker}"
        source = GitHubIssues(repo, "issues", settings, None, 300)
        mine = items[worker * share : (worker + 1) * share]
        for offset in range(0, len(mine), page):
            chunk = mine[max(offset - 1, 0) : offset + page]  # repeats the previous page's last
            events = [e for item in chunk for e in source.item_events(item, now)]
            batch = prepare_batch(events, rules, now)
            with store.write():
                counts = write_batch(store, batch)
                last = store.db.execute_sql("SELECT MAX(id) FROM event").fetchone()[0] or 0
            with lock:
                pages.append(range(last - counts.new + 1, last + 1))

    tune_interpreter()  # as the engine does when it opens the store
    try:
        start = time.perf_counter()
        threads = [threading.Thread(target=poll, args=(w,)) for w in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    pages.sort(key=lambda r: r.start)
    return elapsed, sum(len(r) for r in pages), pages


def run_executemany(source_db: Path, target_db: Path, pages: list[range]) -> float:
    src = sqlite3.connect(source_db)
    tables = {
        "event": src.execute("SELECT * FROM event ORDER BY id").fetchall(),
        "rule_hit": src.execute("SELECT * FROM rule_hit ORDER BY id").fetchall(),
        "alert": src.execute("SELECT * FROM alert ORDER BY id").fetchall(),
        "delivery": src.execute("SELECT * FROM delivery ORDER BY id").fetchall(),
    }
    alert_event = {a[0]: a[1] for a in tables["alert"]}
    src.close()
    by_page: list[dict[str, list[tuple]]] = []
    for ids in pages:
        lo, hi = ids.start, ids.stop
        by_page.append(
            {
                "event": [r for r in tables["event"] if lo <= r[0] < hi],
                "rule_hit": [r for r in tables["rule_hit"] if lo <= r[1] < hi],
                "alert": [r for r in tables["alert"] if lo <= r[1] < hi],
                "delivery": [r for r in tables["delivery"] if lo <= alert_event[r[1]] < hi],
            }
        )
    conn = sqlite3.connect(target_db, isolation_level=None)
    migrations.migrate(conn)
    for name, value in PRAGMAS.items():
        conn.execute(f"PRAGMA {name} = {value}")
    statements = {
        name: f"INSERT INTO {name} VALUES ({','.join('?' * len(rows[0]))})"
        for name, rows in tables.items()
        if rows
    }
    start = time.perf_counter()
    for rows in by_page:
        conn.execute("BEGIN IMMEDIATE")
        for name in ("event", "rule_hit", "alert", "delivery"):
            if rows[name]:
                conn.executemany(statements[name], rows[name])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument(
        "--workers", type=int, default=2, help="poll workers (sources polled in parallel)"
    )
    parser.add_argument(
        "--mix",
        choices=["realistic", "dense"],
        default="realistic",
        help="realistic: prose bodies, about a third naming a rule topic; dense: bodies made"
        " only of rule terms, every event hitting several rules (the worst case)",
    )
    args = parser.parse_args()
    items = synthetic_items(args.events, args.mix)
    with tempfile.TemporaryDirectory() as folder:
        ours = Path(folder) / "pipeline.sqlite3"
        raw = Path(folder) / "executemany.sqlite3"
        sequential_s, _, _ = run_pipeline(Path(folder) / "sequential.sqlite3", items, args.page)
        pipeline_s, stored, pages = run_pipeline(ours, items, args.page, args.workers)
        raw_s = run_executemany(ours, raw, pages)
        check = sqlite3.connect(ours)
        alerts, deliveries, hits = (
            check.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("alert", "delivery", "rule_hit")
        )
        check.close()
    result = {
        "benchmark": "pipeline_vs_executemany",
        "events": stored,
        "mix": args.mix,
        "page_size": args.page,
        "rules": 20,
        "rule_hits": hits,
        "alerts": alerts,
        "deliveries": deliveries,
        "pipeline_workers": args.workers,
        "pipeline_seconds": round(pipeline_s, 3),
        "pipeline_events_per_s": round(stored / pipeline_s),
        "executemany_seconds": round(raw_s, 3),
        "executemany_events_per_s": round(stored / raw_s),
        "ratio": round((stored / pipeline_s) / (stored / raw_s), 3),
        "sequential_seconds": round(sequential_s, 3),
        "sequential_events_per_s": round(stored / sequential_s),
        "sequential_ratio": round(raw_s / sequential_s, 3),
        "target_ratio": 0.5,
        "synchronous": PRAGMAS["synchronous"],
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
