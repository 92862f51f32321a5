"""Benchmark: polls through the engine's real path against plain ``executemany`` of their rows.

The pipeline side is what the engine runs for each poll: ``Pipeline.poll`` of ``GitHubIssues``
sources whose answers come from an ``httpx.MockTransport`` that speaks the GitHub REST API
(``GET /repos/{owner}/{repo}/issues?state=all&sort=updated&direction=asc&since=T``: pages of
``per_page`` whole issue objects as api.github.com returns them, ``since`` inclusive, ``Link``
pagination to ``/repositories/{id}/issues?...&page=N``, an ETag and ``x-ratelimit-*`` headers).
Everything a poll does is timed: the request through ``HttpClient``, JSON parsing (into the
fields the source reads) and its depth check, validation and normalisation of each issue,
fingerprints, dedupe within the answer and against the store, 20 rules, row building, and the
one transaction per poll that writes events, rule hits, alerts, outbox rows, the alerts'
incidents, the cursor (``source_state``) and the poll's ``poll_metric`` row.
The answers are encoded before the clock starts (a real upstream encodes on its own machine).

Each poll reads one page (``--pages-per-poll``), so one transaction per page, and the next poll
asks ``since`` the newest ``updated_at`` it saw: that item comes back once more (``since`` is
inclusive) and is dropped as already stored. ``--mix realistic`` (default): prose bodies, a third
naming one rule topic, most titles naming a watched model; ``--mix dense``: bodies made only of
rule terms, every event hitting several rules (the worst case for rules and for rows).
``--workers 1,2`` runs once per worker count: with N workers the issues are split between N
repositories, each polled by its own thread, as the engine's poll workers poll several sources.

The executemany side inserts the very rows each poll committed (read back from the pipeline's
store, poll by poll) into a fresh store of the same schema with the same PRAGMAs
(``store.db.PRAGMAS``), one transaction per poll: events, their search index rows, rule hits,
alerts, deliveries, the incidents the poll opened or moved on (one upsert each, as it stands
after the poll) and their timeline rows, the ``source_state`` update and the ``poll_metric``
row, each table with one ``executemany``. Both stores must end up holding the same rows.

With one worker the two sides are interleaved: the rows of every ten polls are written by the
executemany side right after them (reading them back is off both clocks), so both sides meet
the same machine load and the same store size, and a burst of another process's work or a WAL
checkpoint lands on both alike, while each runs mostly with its own data in the CPU's caches
(``executemany_after_*``: the same rows written again after the run, not interleaved). (Before, the whole pipeline run came first and the executemany
run after it, 20 s apart on a shared machine: one run in three read 0.52 against 0.65; and the
executemany side left out the incident rows the pipeline commits.) With more workers the
executemany side runs after the whole pipeline run. Prints JSON; ratio = pipeline events/s /
executemany events/s (wall clock; ``cpu_ratio`` the same in process CPU).

Two workers poll no faster than one (issue 9 asked why). Of a poll's instructions about a third
are SQLite's (callgrind: ~29M of ~80M a poll), the only part that runs without the GIL; the
rest (HTTP, JSON, rules, rows, and the Python between SQLite calls) runs one thread at a time.
SQLite takes one writer at a time, and about two thirds of a poll (its transaction) runs under
that lock, while ``executemany`` hands the GIL back and takes it again around every row, so a
writer waits for the other thread's Python once per row. And each worker has its own
connection, whose page cache SQLite empties whenever another connection has committed: every
transaction of a two-worker run starts cold (10 000 issues: 41k page reads against 16k with one
worker, 2.9k futex calls against 64, 16% more CPU). On a machine with two cores shared with
other work that adds up to no gain.

Both sides commit with the store's own settings (WAL, ``synchronous=normal``: a commit waits
for no fsync; the WAL is synced at checkpoints), so the ratio is mostly the CPU a poll's rows
cost each side. ``disk_fsync_ms`` (measured in the same folder) says what the disk would add
per commit with ``synchronous=full``; compare runs on the same machine only.

    python tests/perf/bench_pipeline.py [--events 100000] [--mix realistic|dense] [--workers 1,2]

With ``--db postgresql://…`` (or ``--db auto``) both sides run against PostgreSQL, and an outbox
drain benchmark follows: tests/perf/pg_bench.py says how.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

from mrt_engine.config import validate
from mrt_engine.engine import tune_interpreter
from mrt_engine.health import protected_rules
from mrt_engine.http import HttpClient
from mrt_engine.pipeline import Pipeline
from mrt_engine.rules import RuleConfig, RuleSet
from mrt_engine.sources.github import KIND, GitHubIssues, GitHubSettings
from mrt_engine.store import migrations
from mrt_engine.store.db import PRAGMAS, open_store
from mrt_engine.store.search import indexed_text

API = "https://api.github.com"
CHANNELS = ["welink", "email"]
FIRST_RUN = "2025-12-31T00:00:00Z"  # before every issue: the first poll reads them all as news

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
    """``n`` issues with the fields the GitHub source reads (``api_issue`` makes whole ones)."""
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


def _user(login: str) -> dict[str, Any]:
    """A user object as the issues API embeds it."""
    uid = int(hashlib.sha1(login.encode()).hexdigest()[:7], 16)
    url = f"{API}/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": f"MDQ6VXNlcj{uid:08d}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "",
        "url": url,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": "Bot" if login.endswith("[bot]") else "User",
        "user_view_type": "public",
        "site_admin": False,
    }


def api_issue(item: dict, repo: str, repo_id: int) -> dict[str, Any]:
    """``item`` as ``GET /repos/{owner}/{repo}/issues`` returns it (docs.github.com/rest/issues)."""
    number = item["number"]
    url = f"{API}/repos/{repo}/issues/{number}"
    return {
        "url": url,
        "repository_url": f"{API}/repos/{repo}",
        "labels_url": f"{url}/labels{{/name}}",
        "comments_url": f"{url}/comments",
        "events_url": f"{url}/events",
        "html_url": f"https://github.com/{repo}/issues/{number}",
        "id": repo_id * 10_000_000 + number,
        "node_id": f"I_kwDO{repo_id:08d}{number:07d}",
        "number": number,
        "title": item["title"],
        "user": _user(item["user"]["login"]),
        "labels": [
            {
                "id": 5_000_000 + i,
                "node_id": f"LA_kwDO{repo_id:08d}{i:04d}",
                "url": f"{API}/repos/{repo}/labels/{name.replace(' ', '%20')}",
                "name": name,
                "color": "ededed",
                "default": name == "bug",
                "description": f"{name} issues",
            }
            for i, name in enumerate(label["name"] for label in item["labels"])
        ],
        "state": item["state"],
        "locked": False,
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "comments": item["comments"],
        "created_at": item["created_at"],
        "updated_at": item["updated_at"],
        "closed_at": item["closed_at"],
        "author_association": "CONTRIBUTOR",
        "type": None,
        "active_lock_reason": None,
        "sub_issues_summary": {"total": 0, "completed": 0, "percent_completed": 0},
        "body": item["body"],
        "closed_by": None,
        "reactions": {
            "url": f"{url}/reactions",
            "total_count": 0,
            **dict.fromkeys(["+1", "-1", "laugh", "hooray", "confused", "heart", "rocket"], 0),
            "eyes": 0,
        },
        "timeline_url": f"{url}/timeline",
        "performed_via_github_app": None,
        "state_reason": None,
    }


class GitHubApi:
    """Enough of api.github.com for issue polls, answered from memory by an httpx transport.

    Each repository's issues are encoded once, up front; an answer is a join of encoded items.
    """

    def __init__(self, repos: dict[str, list[dict]]) -> None:
        self._by_name: dict[str, tuple[int, list[str], list[bytes]]] = {}
        self._by_id: dict[int, str] = {}
        for offset, (repo, items) in enumerate(repos.items()):
            repo_id = 1000 + offset
            self._by_id[repo_id] = repo
            self._by_name[repo] = (
                repo_id,
                [i["updated_at"] for i in items],  # in updated order, as generated
                [json.dumps(api_issue(i, repo, repo_id)).encode() for i in items],
            )
        self.requests = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        parts = request.url.path.strip("/").split("/")
        if parts[0] == "repos" and len(parts) == 4 and parts[3] == "issues":
            repo = f"{parts[1]}/{parts[2]}"
        elif parts[0] == "repositories" and len(parts) == 3 and parts[2] == "issues":
            repo = self._by_id.get(int(parts[1]), "")
        else:
            repo = ""
        if repo not in self._by_name:
            return httpx.Response(404, json={"message": "Not Found"})
        repo_id, updated, encoded = self._by_name[repo]
        query = dict(parse_qsl(request.url.query.decode()))
        assert query.get("sort") == "updated" and query.get("direction") == "asc", query
        per_page = min(int(query.get("per_page", 30)), 100)
        page = int(query.get("page", 1))
        first = bisect.bisect_left(updated, query["since"]) if "since" in query else 0
        total = len(updated) - first
        last_page = max(-(-total // per_page), 1)
        start = first + (page - 1) * per_page
        body = b"[" + b",".join(encoded[start : min(start + per_page, len(encoded))]) + b"]"
        etag = 'W/"' + hashlib.sha1(f"{repo}{first}{page}{total}".encode()).hexdigest() + '"'
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "ETag": etag,
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-used": "1",
            "x-ratelimit-resource": "core",
        }
        if request.headers.get("if-none-match") == etag:
            return httpx.Response(304, headers=headers)
        links = []
        if page < last_page:
            for rel, number in (("next", page + 1), ("last", last_page)):
                target = urlencode({**query, "page": number})
                links.append(f'<{API}/repositories/{repo_id}/issues?{target}>; rel="{rel}"')
        if links:
            headers["Link"] = ", ".join(links)
        return httpx.Response(200, headers=headers, content=body)


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
    db: Path,
    items: list[dict],
    page: int,
    pages_per_poll: int,
    workers: int,
    after_poll: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Poll every repository until its cursor reaches its newest issue: one thread a repository.

    ``after_poll`` (one worker only) runs after each poll, off the clock: the executemany side
    writing that poll's rows, interleaved. Returns the wall and CPU seconds of the polls, the
    polls and the requests made.
    """
    assert after_poll is None or workers == 1
    repos = {
        ("vllm-project/vllm" if w == 0 else f"vllm-project/vllm-{w}"): items[w::workers]
        for w in range(workers)
    }
    api = GitHubApi(repos)
    config = validate(
        {
            "sources": {
                "github": {
                    "repos": list(repos),
                    "monitor": {"pulls": False},
                    "first_run": FIRST_RUN,
                    "per_page": page,
                    "max_pages_per_poll": pages_per_poll,
                }
            }
        }
    )
    settings: GitHubSettings = config.source_sections()["github"]
    store = open_store(db)
    http = HttpClient(
        config.http,
        transport=httpx.MockTransport(api.handle),
        poll_deadline_seconds=config.scheduler.poll_deadline_seconds,
    )
    http.set_host_defaults(settings.api_base, KIND.host_defaults)
    pipeline = Pipeline(
        store,
        http,
        RuleSet.compile(twenty_rules(), CHANNELS),
        health=protected_rules(CHANNELS),
    )
    polls = [0] * workers
    failures: list[str] = []
    spent = [0.0, 0.0]  # interleaved: the wall and CPU seconds of the polls alone

    def poll(worker: int, repo: str) -> None:
        source = GitHubIssues(repo, "issues", settings, None, 300)
        try:
            while True:
                if after_poll is None:
                    outcome = pipeline.poll(source)
                else:
                    cpu, start = time.process_time(), time.perf_counter()
                    outcome = pipeline.poll(source)
                    spent[0] += time.perf_counter() - start
                    spent[1] += time.process_time() - cpu
                polls[worker] += 1
                if outcome.status != "ok":
                    failures.append(f"{source.key}: {outcome.status}: {outcome.error}")
                    return
                if after_poll is not None:
                    after_poll()
                if outcome.events_new == 0:  # only the newest issue again: caught up
                    return
        finally:
            store.db.close()  # this thread's connection

    tune_interpreter()  # as the engine does when it starts
    threads = [threading.Thread(target=poll, args=(w, repo)) for w, repo in enumerate(repos)]
    cpu, start = time.process_time(), time.perf_counter()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        http.close()
        pipeline.close()
        store.close()
    if failures:
        raise SystemExit(f"a poll failed: {failures[0]}")
    if after_poll is not None:
        elapsed, cpu = spent
    return {"seconds": elapsed, "cpu": cpu, "polls": sum(polls), "requests": api.requests}


# The columns a successful poll sets (pipeline.Pipeline._commit), then the row's key and version.
_STATE_UPDATE = (
    "UPDATE source_state SET cursor = ?, etag = ?, last_modified = ?, validated_url = ?,"
    " baseline_done = 1, baseline_at = ?, poll_requested_at = NULL, last_poll_at = ?,"
    " last_success_at = ?, consecutive_failures = 0, backoff_until = NULL, next_poll_at = ?,"
    " rate_limit_remaining = ?, rate_limit_reset_at = ?, version = version + 1, updated_at = ?"
    " WHERE source_key = ? AND version = ?"
)
# An incident as it stands after a poll: new, or its counts and last sighting moved on.
_INCIDENT_UPSERT = (
    "INSERT INTO incident VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET"
    " last_seen_at = excluded.last_seen_at, events = excluded.events, sources = excluded.sources"
)
# The tables of a poll's rows, in the order the executemany side inserts them (references first).
_POLL_TABLES = ("event", "event_search", "rule_hit", "alert", "delivery", "incident")
_POLL_TABLES += ("incident_event",)


class CommittedPolls:
    """What each poll committed, read back from the pipeline's store in commit order, as rows
    to insert: events, their search index rows, rule hits, alerts, deliveries, incidents (as
    they stand after the poll) and their events, the state update and the metric row.

    Ids are given under the write lock, so each poll's events, alerts and metric row come in id
    order, poll after poll; a poll's share of events is its metric's ``events_new``. Each call
    of :meth:`take` returns the polls committed since the one before.
    """

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, check_same_thread=False)
        self.marks = {"event": 0, "alert": 0, "poll_metric": 0}
        self.incidents: dict[int, list] = {}  # each incident's row as it stands
        self.versions: dict[str, int] = {}
        columns = [row[1] for row in self.conn.execute("PRAGMA table_info(event)")]
        self.title = columns.index("title")
        self.new_at = [r[1] for r in self.conn.execute("PRAGMA table_info(poll_metric)")].index(
            "events_new"
        )

    def _after(self, table: str, column: str, mark: str) -> list[tuple]:
        return self.conn.execute(
            f"SELECT * FROM {table} WHERE {column} > ? ORDER BY rowid", (self.marks[mark],)
        ).fetchall()

    def take(self) -> list[dict[str, Any]]:
        """The polls committed since the last call, each a dict of rows by table."""
        metrics = self._after("poll_metric", "id", "poll_metric")
        events = self._after("event", "id", "event")
        hits: dict[int, list[tuple]] = {}
        for row in self._after("rule_hit", "event_id", "event"):
            hits.setdefault(row[1], []).append(row)
        alert_rows = self._after("alert", "id", "alert")
        alerts = {row[1]: row for row in alert_rows}
        deliveries: dict[int, list[tuple]] = {}
        for row in self._after("delivery", "alert_id", "alert"):
            deliveries.setdefault(row[1], []).append(row)
        linked = {row[0]: row for row in self._after("incident_event", "event_id", "event")}
        started = list({row[1] for row in linked.values()} - self.incidents.keys())
        for row in self.conn.execute(
            f"SELECT * FROM incident WHERE id IN ({','.join('?' * len(started))})", started
        ):  # the incidents these polls opened: what does not change after (family, name, first)
            self.incidents[row[0]] = list(row)
        states = {
            row[0]: row
            for row in self.conn.execute(
                "SELECT source_key, cursor, etag, last_modified, validated_url, baseline_at,"
                " next_poll_at, rate_limit_remaining, rate_limit_reset_at FROM source_state"
            )
        }
        polls, at = [], 0
        for metric in metrics:
            mine = events[at : at + metric[self.new_at]]
            at += metric[self.new_at]
            mine_alerts = [alerts[e[0]] for e in mine if e[0] in alerts]
            mine_linked = [linked[e[0]] for e in mine if e[0] in linked]
            touched: dict[int, tuple] = {}
            for _, incident_id, _, _, seen_at, position, source_position, _ in mine_linked:
                incident = self.incidents[incident_id]
                incident[6:9] = seen_at, position, source_position  # last_seen_at, counts
                touched[incident_id] = tuple(incident)
            key = metric[1]
            _, *state = states[key]
            version = self.versions.get(key, 0)
            self.versions[key] = version + 1
            polls.append(
                {
                    "event": mine,
                    "event_search": [(e[0], indexed_text(e[self.title])) for e in mine],
                    "rule_hit": [h for e in mine for h in hits.get(e[0], ())],
                    "alert": mine_alerts,
                    "delivery": [d for a in mine_alerts for d in deliveries.get(a[0], ())],
                    "incident": list(touched.values()),
                    "incident_event": mine_linked,
                    # The state columns a poll sets, as the state row has them now.
                    "state": (
                        *state[:5],
                        metric[2],
                        metric[3],
                        *state[5:],
                        metric[3],
                        key,
                        version,
                    ),
                    "metric": metric,
                }
            )
        assert at == len(events), (at, len(events))
        if metrics:
            self.marks["poll_metric"] = metrics[-1][0]
        if events:
            self.marks["event"] = events[-1][0]
        if alert_rows:
            self.marks["alert"] = alert_rows[-1][0]
        return polls

    def close(self) -> None:
        self.conn.close()


class Executemany:
    """The executemany side: a fresh store of the same schema with the store's PRAGMAs, where
    each poll's rows go in one transaction, one ``executemany`` a table."""

    def __init__(self, target_db: Path, source_db: Path) -> None:
        self.conn = sqlite3.connect(target_db, isolation_level=None, check_same_thread=False)
        migrations.migrate(self.conn)
        for name, value in PRAGMAS.items():
            self.conn.execute(f"PRAGMA {name} = {value}")
        # The state rows as ensure_state leaves them before the first poll.
        source = sqlite3.connect(source_db)
        for row in source.execute("SELECT source_key, platform, updated_at FROM source_state"):
            self.conn.execute(
                "INSERT INTO source_state (source_key, platform, updated_at, next_poll_at)"
                " VALUES (?, ?, ?, ?)",
                (*row, row[2]),
            )
        source.close()
        self.statements = {
            "event_search": "INSERT INTO event_search (rowid, title) VALUES (?, ?)",
            "incident": _INCIDENT_UPSERT,
        }
        self.seconds = self.cpu = 0.0

    def write(self, polls: list[dict[str, Any]]) -> None:
        """Insert the rows of ``polls``, one transaction a poll (timed: the transactions only)."""
        for poll in polls:
            for name in (*_POLL_TABLES, "metric"):
                table = "poll_metric" if name == "metric" else name
                if name not in self.statements and poll[name]:
                    row = poll[name] if name == "metric" else poll[name][0]
                    marks = ",".join("?" * len(row))
                    self.statements[name] = f"INSERT INTO {table} VALUES ({marks})"
        conn, statements = self.conn, self.statements
        cpu, start = time.process_time(), time.perf_counter()
        for poll in polls:
            conn.execute("BEGIN IMMEDIATE")
            for name in _POLL_TABLES:
                if poll[name]:
                    conn.executemany(statements[name], poll[name])
            conn.executemany(_STATE_UPDATE, [poll["state"]])
            conn.executemany(statements["metric"], [poll["metric"]])
            conn.execute("COMMIT")
        self.seconds += time.perf_counter() - start
        self.cpu += time.process_time() - cpu

    def close(self) -> None:
        self.conn.close()


# With one worker, the executemany side writes the rows of every this many polls right after
# them: often enough that both sides meet the same machine load (a few tenths of a second
# apart), seldom enough that each side runs mostly with its own data in the CPU's caches.
INTERLEAVE_POLLS = 10


def run_both(
    folder: Path, items: list[dict], page: int, pages_per_poll: int, workers: int
) -> tuple[dict[str, Any], dict[str, Any], Path, Path]:
    """The pipeline run and the executemany side of its rows: with one worker, interleaved (the
    rows of every :data:`INTERLEAVE_POLLS` polls written right after them, so both sides meet
    the same machine load and stores of the same size); with more, after the whole run."""
    ours = folder / f"pipeline-{workers}.sqlite3"
    raw = folder / f"executemany-{workers}.sqlite3"
    replay: CommittedPolls | None = None
    executemany: Executemany | None = None

    polls = 0

    def after_poll() -> None:
        nonlocal replay, executemany, polls
        if replay is None:  # the state row exists once the first poll has run
            replay, executemany = CommittedPolls(ours), Executemany(raw, ours)
        polls += 1
        if polls % INTERLEAVE_POLLS == 0:
            assert executemany is not None
            executemany.write(replay.take())

    pipeline = run_pipeline(
        ours, items, page, pages_per_poll, workers, after_poll if workers == 1 else None
    )
    if replay is None:
        replay, executemany = CommittedPolls(ours), Executemany(raw, ours)
    assert executemany is not None
    executemany.write(replay.take())  # what is left (all of it, with more workers)
    replay.close()
    executemany.close()
    figures = {"seconds": executemany.seconds, "cpu": executemany.cpu}
    if workers == 1:  # the same rows again, all at once after the run: what interleaving costs
        after = folder / "executemany-after.sqlite3"
        again = Executemany(after, ours)
        replay = CommittedPolls(ours)
        again.write(replay.take())
        replay.close()
        again.close()
        figures["after_seconds"], figures["after_cpu"] = again.seconds, again.cpu
    return pipeline, figures, ours, raw


def fsync_ms(folder: Path, times: int = 30) -> float:
    """The median time of one 4 KiB write and fsync in ``folder``: what each commit would wait
    for at least with synchronous=full (the store uses normal: checkpoints sync, not commits)."""
    path = folder / "fsync.probe"
    spent = []
    with open(path, "wb") as file:
        for _ in range(times):
            start = time.perf_counter()
            file.write(b"x" * 4096)
            file.flush()
            os.fsync(file.fileno())
            spent.append(time.perf_counter() - start)
    path.unlink()
    return sorted(spent)[times // 2] * 1000


_COUNTED = ("event", "rule_hit", "alert", "delivery", "incident_event", "poll_metric")


def counts(db: Path) -> dict[str, int]:
    """Rows by table (and the incidents' rows as a hash: both sides must hold the same)."""
    conn = sqlite3.connect(db)
    found = {
        table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in (*_COUNTED, "incident")
    }
    found["incidents_as_stored"] = hash(tuple(conn.execute("SELECT * FROM incident ORDER BY id")))
    conn.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=100, help="per_page (at most 100)")
    parser.add_argument("--pages-per-poll", type=int, default=1, help="max_pages_per_poll")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="poll workers (sources polled in parallel), one run per comma-separated count",
    )
    parser.add_argument(
        "--mix",
        choices=["realistic", "dense"],
        default="realistic",
        help="realistic: prose bodies, about a third naming a rule topic; dense: bodies made"
        " only of rule terms, every event hitting several rules (the worst case)",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="run against PostgreSQL: postgresql://user@host/db (databases are created and"
        " dropped there), or auto (a throwaway cluster); also runs the outbox drain benchmark"
        " (tests/perf/pg_bench.py)",
    )
    parser.add_argument(
        "--password-env", metavar="VAR", help="with --db URL: the variable holding its password"
    )
    parser.add_argument(
        "--drain-deliveries", type=int, default=2000, help="with --db: pending deliveries (0: skip)"
    )
    parser.add_argument(
        "--drain-engines", default="1,2", help="with --db: engine processes, one run per count"
    )
    parser.add_argument(
        "--drain-latency-ms",
        type=float,
        default=50.0,
        help="with --db: how long the WeLink simulator takes to answer",
    )
    args = parser.parse_args()
    if args.db:
        import pg_bench

        json.dump(pg_bench.main(args), sys.stdout, indent=2)
        print()
        return
    items = synthetic_items(args.events, args.mix)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        disk_fsync_ms = fsync_ms(Path(folder))
        for workers in (int(w) for w in args.workers.split(",")):
            pipeline, executemany, ours, raw = run_both(
                Path(folder), items, args.page, args.pages_per_poll, workers
            )
            rows = counts(ours)
            assert rows == counts(raw), (rows, counts(raw))
            stored = rows["event"]
            runs.append(
                {
                    "workers": workers,
                    "interleaved": workers == 1,
                    "polls": pipeline["polls"],
                    "requests": pipeline["requests"],
                    "events": stored,
                    "rule_hits": rows["rule_hit"],
                    "alerts": rows["alert"],
                    "deliveries": rows["delivery"],
                    "incident_events": rows["incident_event"],
                    "pipeline_seconds": round(pipeline["seconds"], 3),
                    "pipeline_cpu_seconds": round(pipeline["cpu"], 3),
                    "pipeline_events_per_s": round(stored / pipeline["seconds"]),
                    "pipeline_ms_per_poll": round(
                        pipeline["seconds"] * 1000 / pipeline["polls"], 2
                    ),
                    "executemany_seconds": round(executemany["seconds"], 3),
                    "executemany_cpu_seconds": round(executemany["cpu"], 3),
                    "executemany_events_per_s": round(stored / executemany["seconds"]),
                    "executemany_ms_per_poll": round(
                        executemany["seconds"] * 1000 / pipeline["polls"], 2
                    ),
                    "ratio": round(executemany["seconds"] / pipeline["seconds"], 3),
                    "cpu_ratio": round(executemany["cpu"] / pipeline["cpu"], 3),
                    **(
                        {  # the executemany side run again after the pipeline run, not interleaved
                            "executemany_after_seconds": round(executemany["after_seconds"], 3),
                            "executemany_after_cpu_seconds": round(executemany["after_cpu"], 3),
                        }
                        if "after_cpu" in executemany
                        else {}
                    ),
                }
            )
            for path in Path(folder).iterdir():
                path.unlink()
    result = {
        "benchmark": "poll_pipeline_vs_executemany",
        "path": "Pipeline.poll, GitHubIssues, HttpClient over httpx.MockTransport",
        "issues": args.events,
        "mix": args.mix,
        "page_size": args.page,
        "pages_per_poll": args.pages_per_poll,
        "rules": 20,
        "runs": runs,
        "target_ratio": 0.6,
        "disk_fsync_ms": round(disk_fsync_ms, 2),
        "journal_mode": PRAGMAS["journal_mode"],
        "synchronous": PRAGMAS["synchronous"],
        "gil_switch_interval": sys.getswitchinterval(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
