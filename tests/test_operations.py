"""Operations (F3) through the CLI: status, outbox, trace, resend, replay, cursors, audit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import wait_until

from mrt_engine import operations
from mrt_engine.components import compile_rules
from mrt_engine.simulators.base import Fault

# The suite runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def busy(gh_tracker, github, welink):
    """A tracker with a baseline, two alerts (one sent, one dead) and unmatched events."""
    tracker = gh_tracker({"delivery": {"max_attempts": 1}})
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "DeepSeek-V4 support", pull=True)
    github.add_issue(REPO, "Llama 4 support", pull=True)
    github.add_issue(REPO, "Mistral tokenizer bug")
    tracker.once()
    welink.inject(Fault(503, path="/api/werobot"))
    github.add_issue(REPO, "Qwen3 crash")
    tracker.once()
    return tracker


def audit(tracker) -> list[tuple]:
    return tracker.sql("SELECT actor, action, target, before, after FROM audit ORDER BY id")


def test_status_and_outbox_as_json(busy):
    status = busy.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    keys = {s["source_key"] for s in data["sources"]}
    assert keys == {f"github:{REPO}:issues", f"github:{REPO}:pulls"}
    assert data["outbox"]["*"] == {
        "pending": 0,
        "retrying": 0,
        "sent": 1,
        "dead": 1,
        "silenced": 0,
    }
    dead = json.loads(busy.cli("outbox", "--status", "dead", "--json").stdout)
    assert [d["title"] for d in dead] == ["Qwen3 crash"]
    assert dead[0]["last_error"] == "HTTP 503 from WeLink"
    text = busy.cli("status").stdout
    assert "github:vllm-project/vllm:pulls  [ok]" in text and "sent 1  dead 1" in text


def test_trace_by_url_and_by_fingerprint_prefix(busy):
    result = busy.cli("trace", "https://github.com/vllm-project/vllm/issues/5", "--json")
    [trace] = json.loads(result.stdout)
    assert trace["event"]["title"] == "Qwen3 crash"
    assert trace["hits"][0]["reason"] == 'keyword "Qwen" in title'
    assert trace["alert"]["rules"] == ["watch_keywords"]
    [delivery] = trace["deliveries"]
    assert delivery["delivery"]["status"] == "dead"
    assert delivery["attempts"][0]["http_status"] == 503
    prefix = trace["event"]["fingerprint"][:10]
    text = busy.cli("trace", prefix).stdout
    assert 'hit  watch_keywords (notify, priority 0, poll): keyword "Qwen" in title' in text
    assert "delivery 2 -> welink: dead, 1 attempt, sent" in text
    missing = busy.cli("trace", "0123456789abcdef")
    assert missing.returncode == 1 and "no event matches" in missing.stdout


def test_resend_a_delivery_creates_a_new_attempt_and_an_audit_row(busy, welink):
    result = busy.cli("resend", "1")
    assert result.returncode == 0 and "queued to send again" in result.stdout
    assert busy.once() == 0
    attempts = busy.sql("SELECT outcome FROM attempt WHERE delivery_id = 1 ORDER BY id")
    assert attempts == [("sent",), ("sent",)]
    assert welink.texts().count(welink.texts()[0]) == 2
    [(actor, action, target, before, after)] = audit(busy)
    assert action == "resend" and target == "delivery:1" and " via cli" in actor
    assert json.loads(before)["status"] == "sent" and json.loads(after)["status"] == "pending"


def test_resend_of_an_unknown_delivery_is_a_clear_error(busy):
    result = busy.cli("resend", "999")
    assert result.returncode == 1 and "there is no delivery 999" in result.stderr


def test_requeue_dead_is_idempotent(busy, welink):
    first = busy.cli("resend", "--dead", "--channel", "welink")
    assert "1 dead delivery queued to send again" in first.stdout
    second = busy.cli("resend", "--dead")
    assert "no dead deliveries; nothing changed" in second.stdout
    busy.once()
    assert busy.sql("SELECT status FROM delivery WHERE id = 2") == [("sent",)]
    assert [a[1] for a in audit(busy)] == ["requeue_dead"]


def test_replay_enqueues_exactly_what_the_dry_run_showed_and_only_once(busy, tmp_path, welink):
    # A new rule: Llama and Mistral now matter too.
    config = json.loads(busy.path.read_text())
    config["rules"] = [{"name": "more-models", "keywords": ["llama", "mistral"]}]
    busy.path.write_text(json.dumps(config))
    dry = json.loads(busy.cli("replay", "--since", "2000-01-01", "--dry-run", "--json").stdout)
    assert dry["dry_run"] is True
    assert sorted(i["title"] for i in dry["items"]) == ["Llama 4 support", "Mistral tokenizer bug"]
    assert busy.sql("SELECT COUNT(*) FROM delivery") == [(2,)]
    real = json.loads(busy.cli("replay", "--since", "2000-01-01", "--json").stdout)
    assert len(real["items"]) == len(dry["items"]) == 2
    assert busy.sql("SELECT COUNT(*) FROM delivery WHERE status = 'pending'") == [(2,)]
    again = json.loads(busy.cli("replay", "--since", "2000-01-01", "--json").stdout)
    assert again["items"] == []
    busy.once()
    assert sum("Llama 4 support" in t for t in welink.texts()) == 1
    trace = json.loads(
        busy.cli("trace", "https://github.com/vllm-project/vllm/pull/3", "--json").stdout
    )[0]
    assert trace["alert"]["origin"] == "replay"
    assert [h["origin"] for h in trace["hits"]] == ["replay"]
    assert [a[1] for a in audit(busy)] == ["replay", "replay"]


def test_replay_respects_the_window_source_and_channel(busy):
    config = json.loads(busy.path.read_text())
    config["rules"] = [{"name": "everything"}]
    busy.path.write_text(json.dumps(config))
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert (
        json.loads(busy.cli("replay", "--since", future, "--dry-run", "--json").stdout)["items"]
        == []
    )
    only_pulls = json.loads(
        busy.cli(
            "replay", "--since", "2000-01-01", "--source", "github:*:pulls", "--dry-run", "--json"
        ).stdout
    )
    assert {i["source_key"] for i in only_pulls["items"]} == {f"github:{REPO}:pulls"}
    bad = busy.cli("replay", "--since", "yesterday")
    assert bad.returncode == 2 and "--since: expected a time like" in bad.stderr
    unknown = busy.cli("replay", "--since", "1d", "--channel", "slack")
    assert unknown.returncode == 2 and "not configured" in unknown.stderr


def test_cursor_reset_to_a_time_writes_audit_and_the_next_poll_reports_from_there(
    busy, github, welink
):
    key = f"github:{REPO}:issues"
    before = busy.sql("SELECT cursor FROM source_state WHERE source_key = ?", key)[0][0]
    result = busy.cli("cursor", "reset", key, "--to", "2026-11-20T08:00:00Z")
    assert result.returncode == 0 and "old value" in result.stdout
    [(_actor, action, target, old, new)] = audit(busy)
    assert action == "cursor_reset" and target == f"source:{key}"
    assert json.loads(old)["cursor"] == json.loads(before)
    assert json.loads(new)["cursor"] == {"since": "2026-11-20T08:00:00Z"}
    listed = json.loads(busy.cli("cursor", "list", "--json").stdout)
    assert {
        "source_key": key,
        "cursor": {"since": "2026-11-20T08:00:00Z"},
        "baseline_done": True,
    } in listed
    busy.once()
    # Everything since then was fetched again; fingerprints kept it from alerting twice.
    assert busy.sql("SELECT COUNT(*) FROM alert") == [(2,)]


def test_cursor_reset_to_initial_takes_a_new_baseline(busy, github, welink):
    key = f"github:{REPO}:pulls"
    assert busy.cli("cursor", "reset", key, "--initial").returncode == 0
    github.add_issue(REPO, "DeepSeek while reset", pull=True)
    busy.once()
    baseline = busy.sql("SELECT baseline FROM event WHERE title = 'DeepSeek while reset'")
    assert baseline == [(1,)]
    assert busy.cli("cursor", "reset", "github:nope:issues", "--initial").returncode == 1


def test_a_cursor_reset_during_a_poll_wins_over_the_poll(busy, github):
    key = f"github:{REPO}:issues"
    engine = busy.engine()
    engine.open()
    try:
        github.add_issue(REPO, "DeepSeek slow answer")
        source = next(s for s in engine.sources if s.key == key)
        original_poll = source.poll

        def poll_with_reset(state, http, now):
            result = original_poll(state, http, now)
            operations.reset_cursor(engine.store, key, initial=True, actor="test")
            return result

        source.poll = poll_with_reset
        outcome = engine.poll_source(source)
    finally:
        engine.close()
    assert outcome.status == "discarded"
    row = busy.sql("SELECT cursor, baseline_done FROM source_state WHERE source_key = ?", key)
    assert row == [(None, 0)]
    assert busy.sql("SELECT COUNT(*) FROM event WHERE title = 'DeepSeek slow answer'") == [(0,)]


def test_pause_resume_and_poll_now(busy, github):
    key = f"github:{REPO}:issues"
    assert "paused" in busy.cli("source", "pause", key).stdout
    github.add_issue(REPO, "DeepSeek while paused")
    busy.once()
    assert busy.sql("SELECT COUNT(*) FROM event WHERE title = 'DeepSeek while paused'") == [(0,)]
    assert "already paused" in busy.cli("source", "pause", key).stdout
    assert "resumed" in busy.cli("source", "resume", key).stdout
    assert "requested" in busy.cli("source", "poll", key).stdout
    assert busy.sql(
        "SELECT poll_requested_at IS NOT NULL FROM source_state WHERE source_key = ?", key
    ) == [(1,)]
    busy.once()
    assert busy.sql("SELECT COUNT(*) FROM event WHERE title = 'DeepSeek while paused'") == [(1,)]
    assert [a[1] for a in audit(busy)] == ["pause", "resume", "poll_now"]


def test_resend_an_unmatched_event_to_a_channel(busy, welink):
    with busy.store() as store:
        event_id = store.db.execute_sql(
            "SELECT id FROM event WHERE title = 'Llama 4 support'"
        ).fetchone()[0]
        result = operations.resend_event(
            store, event_id, "welink", channels=["welink"], actor="test"
        )
        assert "queued to welink" in result.message
        with pytest.raises(operations.OperationError):
            operations.resend_event(store, event_id, "slack", channels=["welink"], actor="test")
    busy.once()
    assert any(
        "Llama 4 support" in t and "Matched: sent by an operator" in t for t in welink.texts()
    )


def test_replay_dry_run_is_read_only(busy):
    config = busy.config
    with busy.store() as store:
        before = store.db.execute_sql("SELECT COUNT(*) FROM audit").fetchone()[0]
        plan = operations.replay(
            store,
            compile_rules(config),
            since=datetime(2000, 1, 1, tzinfo=UTC),
            dry_run=True,
            actor="test",
        )
        after = store.db.execute_sql("SELECT COUNT(*) FROM audit").fetchone()[0]
    assert plan.dry_run and before == after


def test_status_works_while_an_engine_runs(busy):
    process = busy_daemon(busy)
    try:
        if busy.is_postgresql:  # engines share it: no lock file; the engine's first poll
            assert wait_until(lambda: busy.baselines() > 0, 20)
        else:
            lock = busy.db.with_name(busy.db.name + ".lock")  # the pid of the engine that runs
            assert wait_until(
                lambda: lock.exists() and f'"pid": {process.pid}' in lock.read_text(), 10
            )
        result = busy.cli("status", "--json")
        assert result.returncode == 0
    finally:
        process.terminate()
        process.wait(10)


def busy_daemon(tracker):
    import os
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "mrt_engine", "run", "--config", str(tracker.path)],
        env={**os.environ, **tracker.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
