"""A small, fixed store for the console's tests and snapshots (and a big one for its benchmark).

Everything goes through the engine's own code (batch.commit_events, pipeline.ensure_state);
only the delivery outcomes are written directly, standing in for past sends.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mrt_engine.batch import commit_events
from mrt_engine.components import build_components, compile_rules
from mrt_engine.config import load_config
from mrt_engine.events import TrackerEvent
from mrt_engine.pipeline import ensure_state
from mrt_engine.store.db import open_store
from mrt_engine.store.models import Attempt, Delivery, SourceState

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
HOSTILE_TITLE = (
    "[bold red]pwned[/x] [$error] [@click=app.quit]quit[/] [link=http://evil]x\x1b[2J\u202eevil"
)
WEBHOOK_ENV = "MRT_TEST_WELINK_URL"


def write_config(
    folder: Path, *, extra_rules: list[dict] | None = None, state: dict | None = None
) -> Path:
    """The console's config in ``folder``; its store is ``state`` (the config's section), by
    default the SQLite file console.sqlite3 there."""
    config = {
        "state": state or {"sqlite_path": str(folder / "console.sqlite3")},
        "sources": {
            "github": {
                "repos": ["vllm-project/vllm", "sgl-project/sglang"],
                "api_base": "http://127.0.0.1:9",
            }
        },
        "notify": {"welink": {"webhook_env": WEBHOOK_ENV}},
        "delivery": {"max_attempts": 3, "backoff_initial_seconds": 1, "backoff_max_seconds": 2},
        "rules": [
            {"name": "deepseek", "keywords": ["deepseek"], "priority": 10},
            {"name": "qwen", "keywords": ["qwen"], "priority": 10},
            {
                "name": "no-docs",
                "keywords": ["[Doc]"],
                "fields": ["title"],
                "action": "suppress",
                "priority": 50,
            },
            *(extra_rules or []),
        ],
    }
    path = folder / "console.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def event(
    n: int,
    title: str,
    *,
    repo: str = "vllm-project/vllm",
    kind: str = "issue",
    at: datetime | None = None,
) -> TrackerEvent:
    when = at or NOW - timedelta(minutes=60 - n)
    return TrackerEvent(
        source="github",
        source_key=f"github:{repo}:{'pulls' if kind == 'pr' else 'issues'}",
        resource_type="repo_pr" if kind == "pr" else "repo_issue",
        resource_id=repo,
        event_type="pr_opened" if kind == "pr" else "issue_opened",
        event_id=str(n),
        title=title,
        summary=f"Body of item {n}.",
        url=f"https://github.com/{repo}/{'pull' if kind == 'pr' else 'issues'}/{n}",
        author="alice",
        labels=("bug",),
        occurred_at=when,
        observed_at=when,
        raw={"number": n, "title": title},
    )


TITLES = [
    ("[Model] Support DeepSeek-V3.2", "pr"),
    ("[Bug] Qwen3 tokenizer crash on empty prompt", "issue"),
    ("[CI] Bump torch to 2.9", "pr"),
    ("[Doc] DeepSeek deployment guide", "pr"),
    ("[Perf] Faster MoE routing for Qwen3-235B", "pr"),
    ("[Bug] Scheduler deadlock under preemption", "issue"),
    ("[Feature] Multi-token prediction for DeepSeek-R1", "issue"),
    ("[Bugfix] Llama-4 rope scaling", "pr"),
]


def build(
    folder: Path,
    *,
    hostile: bool = False,
    extra_rules: list[dict] | None = None,
    state: dict | None = None,
    with_silences: bool = False,
    with_polls: bool = False,
    with_incidents: bool = False,
) -> Path:
    """A store with 8 (or 9) events, 4 alerts, a sent, a dead, a retrying and a pending delivery
    (in the store ``state`` names: see :func:`write_config`); ``with_silences``: an active, a
    pending and an expired silence; ``with_polls``: a day of poll metrics and sends
    (:func:`_day_of_polls`); ``with_incidents``: the events linked into incidents as a poll
    links them, after a HuggingFace model of DeepSeek-V3.2 three hours before
    (:func:`_incidents`)."""
    rules = compile_rules(load_config(write_config(folder, state=state)))  # the rules at poll time
    path = write_config(folder, extra_rules=extra_rules, state=state)  # the console's rules now
    config = load_config(path)
    components = build_components(config, {WEBHOOK_ENV: "http://127.0.0.1:9/hook"})
    store = open_store(config.store_location)
    try:
        for source in components.sources:
            ensure_state(store, source, NOW - timedelta(hours=2))
        events = [event(i + 1, title, kind=kind) for i, (title, kind) in enumerate(TITLES)]
        if hostile:
            events.append(event(len(events) + 1, HOSTILE_TITLE))
        if with_incidents:
            _incidents(store, events, rules)
        else:
            with store.write():
                commit_events(store, events, rules, NOW - timedelta(minutes=30))
        with store.write():
            outcomes = ["sent", "dead", "retrying", "pending"]
            for delivery, status in zip(
                Delivery.select().order_by(Delivery.id), outcomes, strict=False
            ):
                tries = {"sent": 1, "dead": 3, "retrying": 1, "pending": 0}[status]
                for i in range(tries):
                    ok = status == "sent"
                    Attempt.create(
                        delivery=delivery,
                        started_at=NOW - timedelta(minutes=20 - i),
                        finished_at=NOW - timedelta(minutes=20 - i, seconds=-1),
                        duration_ms=230 + i,
                        outcome="sent" if ok else "failed",
                        http_status=200 if ok else 503,
                        error=None if ok else "HTTP 503 from WeLink",
                        worker="welink-0",
                    )
                Delivery.update(
                    status=status,
                    attempts=tries,
                    last_error=None if status in ("sent", "pending") else "HTTP 503 from WeLink",
                    next_attempt_at=NOW + timedelta(minutes=5),
                    sent_at=NOW - timedelta(minutes=20) if status == "sent" else None,
                    updated_at=NOW - timedelta(minutes=19),
                ).where(Delivery.id == delivery.id).execute()
            SourceState.update(
                cursor={"since": "2026-11-22T09:00:00Z"},
                last_poll_at=NOW - timedelta(minutes=1),
                last_success_at=NOW - timedelta(minutes=1),
                next_poll_at=NOW + timedelta(minutes=4),
                rate_limit_remaining=4987,
            ).where(SourceState.source_key.endswith(":issues")).execute()
            SourceState.update(
                last_poll_at=NOW - timedelta(minutes=1),
                last_error="HTTP 502 from api.github.com (attempt 3 of 3)",
                last_error_at=NOW - timedelta(minutes=1),
                consecutive_failures=2,
                next_poll_at=NOW + timedelta(minutes=2),
            ).where(SourceState.source_key.endswith(":pulls")).execute()
        if with_silences:
            _silences(store)
        if with_polls:
            _day_of_polls(store)
    finally:
        store.close()
    return path


def _incidents(store, events, rules) -> None:
    """A DeepSeek-V3.2 model on HuggingFace three hours ago, then the GitHub events, each poll's
    alerted events linked into incidents as the pipeline links them."""
    from mrt_engine import incidents
    from mrt_engine.batch import prepare_batch, write_batch

    first_at = NOW - timedelta(hours=3)
    with store.write():  # the HuggingFace source the model came from
        SourceState.create(
            source_key="huggingface:deepseek-ai:models",
            platform="huggingface",
            baseline_done=True,
            updated_at=first_at,
        )
    model = TrackerEvent(
        source="huggingface",
        source_key="huggingface:deepseek-ai:models",
        resource_type="model",
        resource_id="deepseek-ai/DeepSeek-V3.2",
        event_type="model_added",
        event_id="deepseek-ai/DeepSeek-V3.2@1",
        title="deepseek-ai/DeepSeek-V3.2",
        url="https://huggingface.co/deepseek-ai/DeepSeek-V3.2",
        occurred_at=first_at,
        observed_at=first_at,
    )
    for batch_events, at in (([model], first_at), (events, NOW - timedelta(minutes=30))):
        batch = prepare_batch(batch_events, rules, at)
        with store.write():
            write_batch(store, batch)
            incidents.assign(store, batch)


def _silences(store) -> None:
    from mrt_engine.silences import add_silence, expire_silence

    def at(minutes: int):
        return lambda: NOW - timedelta(minutes=minutes)

    add_silence(
        store,
        ["org=sgl-project", "type=issue_opened"],
        author="alice",
        comment="sglang issue storm during the v0.5 release",
        duration="2h",
        actor="alice@ops via cli",
        clock=at(30),
    )
    add_silence(
        store,
        ["text=~nightly|rc[0-9]+"],
        author="bob",
        comment="nightlies are noise",
        duration="1d",
        starts_at=NOW + timedelta(hours=1),
        actor="bob@ops via tui",
        clock=at(5),
    )
    add_silence(
        store, ["rule=qwen"], author="carol", comment="test", duration="1h", actor="c", clock=at(90)
    )
    expire_silence(store, 3, actor="carol@ops via tui", clock=at(80))


def _day_of_polls(store) -> None:
    """A day of polls before NOW, standing in for the engine's: every source polled each hour
    (an ok poll that found events now and then, and a minute's idle polls answered 304, as
    idle_polls.py writes them: one row carrying their count); the pulls sources failed in the
    last two hours, vllm's issues got slow in the afternoon; and a day of sends on welink."""
    from mrt_engine.store.models import PollMetric

    keys = [s.source_key for s in SourceState.select().order_by(SourceState.source_key)]
    rows = []
    for n, key in enumerate(keys):
        for hours_ago in range(24):
            at = NOW - timedelta(hours=hours_ago, minutes=10)
            failing = key.endswith(":pulls") and hours_ago < 2
            slow = key == "github:vllm-project/vllm:issues" and 4 <= hours_ago < 8
            duration = (900 + 150 * hours_ago) if slow else 200 + 10 * ((hours_ago + n) % 5)
            new = (hours_ago * 7 + n * 3) % 11 if hours_ago % 3 == n % 3 else 0
            rows.append(
                dict(
                    source_key=key,
                    started_at=at,
                    finished_at=at + timedelta(milliseconds=duration),
                    duration_ms=duration,
                    outcome="error" if failing else "ok",
                    http_requests=1,
                    events_fetched=new,
                    events_new=new,
                    error="HTTP 502 from api.github.com" if failing else None,
                    polls=1,
                    max_duration_ms=duration,
                )
            )
            if not failing:
                rows.append(
                    dict(
                        source_key=key,
                        started_at=at + timedelta(minutes=1),
                        finished_at=at + timedelta(minutes=2),
                        duration_ms=120 * (3 + n),
                        outcome="not_modified",
                        http_requests=3 + n,
                        events_fetched=0,
                        events_new=0,
                        error=None,
                        polls=3 + n,
                        max_duration_ms=150,
                    )
                )
    sent = Delivery.get(Delivery.status == "sent")
    with store.write():
        PollMetric.insert_many(rows).execute()
        SourceState.update(rate_limit_reset_at=NOW + timedelta(minutes=42)).where(
            SourceState.rate_limit_remaining.is_null(False)
        ).execute()
        for hours_ago in range(1, 24):
            for i in range(hours_ago % 4):
                failed = hours_ago in (5, 6) and i == 0
                Attempt.create(
                    delivery=sent,
                    started_at=NOW - timedelta(hours=hours_ago, minutes=30 - i),
                    finished_at=NOW - timedelta(hours=hours_ago, minutes=30 - i, seconds=-1),
                    duration_ms=240,
                    outcome="failed" if failed else "sent",
                    http_status=503 if failed else 200,
                    error="HTTP 503 from WeLink" if failed else None,
                    worker="welink-0",
                )
