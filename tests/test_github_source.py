"""The GitHub issues/PR source against a local server speaking GitHub's REST API."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import GH_TOKEN

from mrt_engine.simulators.base import Fault

# The suite runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def seed_history(github, n: int = 250) -> None:
    for i in range(n):
        title = f"Old item {i}" + (" DeepSeek" if i % 7 == 0 else "")
        github.add_issue(REPO, title, at=T0 + timedelta(minutes=i), pull=i % 2 == 0)


def alerts(tracker) -> list[str]:
    return [
        r[0]
        for r in tracker.sql(
            "SELECT e.title FROM alert a JOIN event e ON e.id = a.event_id ORDER BY a.id"
        )
    ]


def state(tracker, kind: str = "issues") -> dict:
    row = tracker.sql(
        "SELECT cursor, consecutive_failures, last_error, etag FROM source_state WHERE source_key = ?",
        f"github:{REPO}:{kind}",
    )[0]
    return {
        "cursor": json.loads(row[0]) if row[0] else None,
        "failures": row[1],
        "error": row[2],
        "etag": row[3],
    }


def test_first_run_records_history_as_baseline_and_alerts_nothing(gh_tracker, github, welink):
    seed_history(github)
    tracker = gh_tracker()
    assert tracker.once() == 0
    assert alerts(tracker) == []
    assert welink.texts() == []
    baseline = tracker.sql("SELECT COUNT(*), MIN(baseline) FROM event")[0]
    assert baseline[0] > 0 and baseline[1] == 1
    # Only the newest page was read: a long history costs one request per source key.
    assert len(github.requests_to("/repos/")) == 2
    assert state(tracker)["cursor"] == {"since": "2026-11-20T12:09:00Z"}


def test_new_items_after_the_baseline_alert_once_and_unmatched_ones_do_not(
    gh_tracker, github, welink
):
    seed_history(github, 20)
    tracker = gh_tracker()
    tracker.once()
    github.add_issue(
        REPO, "Support DeepSeek-V4 in the MLA kernel", pull=True, labels=("new-model",)
    )
    github.add_issue(REPO, "Qwen3 tokenizer crash", body="Steps to reproduce...")
    github.add_issue(REPO, "Fix typo in README")
    assert tracker.once() == 0
    assert sorted(alerts(tracker)) == [
        "Qwen3 tokenizer crash",
        "Support DeepSeek-V4 in the MLA kernel",
    ]
    texts = welink.texts()
    assert len(texts) == 2
    pr = next(t for t in texts if "DeepSeek-V4" in t)
    assert "New PR" in pr and "Labels: new-model" in pr and 'keyword "DeepSeek" in title' in pr
    assert pr.endswith("https://github.com/vllm-project/vllm/pull/21")
    # A third run finds nothing new and sends nothing again.
    assert tracker.once() == 0
    assert len(welink.texts()) == 2
    assert tracker.sql("SELECT COUNT(*) FROM event WHERE title = 'Fix typo in README'")[0][0] == 1


def test_cursor_does_not_skip_items_updated_in_same_second(gh_tracker, github, welink):
    # A second just after the baseline (items stamped before it would be history).
    second = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    stamp = second.strftime("%Y-%m-%dT%H:%M:%SZ")
    github.add_issue(REPO, "first in this second", at=second)
    tracker = gh_tracker()
    tracker.once()
    assert state(tracker)["cursor"] == {"since": stamp}
    # Created later, but GitHub stamps it with the very same second as the cursor.
    github.add_issue(REPO, "DeepSeek: second item in the same second", at=second)
    tracker.once()
    assert alerts(tracker) == ["DeepSeek: second item in the same second"]
    since = [r.param("since") for r in github.requests_to("/repos/")][-2:]
    assert since == [stamp, stamp]


def test_pagination_follows_the_link_header_verbatim(gh_tracker, github):
    now = datetime.now(UTC).replace(microsecond=0)
    github.add_issue(REPO, "seed", at=now)
    tracker = gh_tracker({"sources": {"github": {"per_page": 10, "monitor": {"pulls": False}}}})
    tracker.once()
    for i in range(35):  # after the baseline (items stamped before it would be history)
        github.add_issue(REPO, f"Qwen item {i}", at=now + timedelta(seconds=10 + i))
    tracker.once()
    assert len(alerts(tracker)) == 35
    paths = [r.path for r in github.requests[-4:]]
    # The first page by name, then exactly the /repositories/{id}/issues URLs GitHub linked.
    assert paths[0] == f"/repos/{REPO}/issues"
    repo_id = github.repos[REPO].id
    assert paths[1:] == [f"/repositories/{repo_id}/issues"] * 3
    assert [r.param("page") for r in github.requests[-3:]] == ["2", "3", "4"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all(r.param("since") == stamp for r in github.requests[-3:])


def test_unchanged_repo_costs_one_304_and_no_rate_limit(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker({"sources": {"github": {"monitor": {"pulls": False}}}})
    tracker.once()  # baseline
    tracker.once()  # first incremental poll: a new URL, so a 200 with an ETag
    remaining = github.remaining
    requests = len(github.requests)
    tracker.once()
    assert len(github.requests) == requests + 1
    last = github.requests[-1]
    assert last.headers.get("if-none-match", "").startswith('W/"')
    assert github.remaining == remaining
    metric = tracker.sql("SELECT outcome, http_requests FROM poll_metric ORDER BY id DESC LIMIT 1")[
        0
    ]
    assert metric == ("not_modified", 1)


def test_primary_rate_limit_waits_until_reset_and_keeps_the_cursor(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker({"sources": {"github": {"monitor": {"pulls": False}}}})
    tracker.once()
    cursor = state(tracker)["cursor"]
    github.remaining = 0
    github.reset_at = int(time.time()) + 900
    github.add_issue(REPO, "DeepSeek news during the limit")
    engine = tracker.engine()
    engine.open()
    try:
        first = engine.poll_source(engine.sources[0])
        assert first.status == "error"
        assert "rate limit" in first.error and "until" in first.error
        calls = len(github.requests)
        # The host is blocked until x-ratelimit-reset: the next poll makes no request at all.
        second = engine.poll_source(engine.sources[0])
        assert second.status == "backing_off"
        assert len(github.requests) == calls
    finally:
        engine.close()
    assert state(tracker)["cursor"] == cursor
    until = tracker.sql("SELECT backoff_until FROM source_state WHERE source_key LIKE '%issues'")[
        0
    ][0]
    assert until.startswith(datetime.fromtimestamp(github.reset_at, UTC).strftime("%Y-%m-%dT%H:%M"))


def test_secondary_rate_limit_with_short_retry_after_is_waited_out(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker({"sources": {"github": {"monitor": {"pulls": False}}}})
    tracker.once()
    github.add_issue(REPO, "Qwen2.5-VL support")
    github.inject(
        Fault(
            403,
            json.dumps({"message": "You have exceeded a secondary rate limit."}),
            {"retry-after": "1"},
            path="/repos/",
        )
    )
    started = time.monotonic()
    assert tracker.once() == 0
    assert time.monotonic() - started >= 1.0
    assert alerts(tracker) == ["Qwen2.5-VL support"]


def test_secondary_rate_limit_with_long_retry_after_fails_the_poll_only(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker({"sources": {"github": {"monitor": {"pulls": False}}}})
    tracker.once()
    cursor = state(tracker)["cursor"]
    github.inject(
        Fault(
            429,
            json.dumps({"message": "secondary rate limit"}),
            {"retry-after": "120"},
            path="/repos/",
        )
    )
    assert tracker.once() == 1
    after = state(tracker)
    assert after["cursor"] == cursor and after["failures"] == 1
    assert "retry after 120s" in after["error"]


def test_secondary_rate_limit_without_headers_waits_at_least_a_minute(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker({"sources": {"github": {"monitor": {"pulls": False}}}})
    tracker.once()
    github.inject(
        Fault(
            403, json.dumps({"message": "You have exceeded a secondary rate limit"}), path="/repos/"
        )
    )
    assert tracker.once() == 1
    until = tracker.sql("SELECT backoff_until, last_poll_at FROM source_state")[0]
    gap = datetime.fromisoformat(until[0].replace("Z", "+00:00")) - datetime.fromisoformat(
        until[1].replace("Z", "+00:00")
    )
    assert gap >= timedelta(seconds=59)


def test_server_errors_are_retried_with_backoff(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker({"sources": {"github": {"monitor": {"pulls": False}}}})
    tracker.once()
    github.add_issue(REPO, "DeepSeek MoE fix")
    github.inject(Fault(502, path="/repos/", times=2))
    assert tracker.once() == 0
    assert alerts(tracker) == ["DeepSeek MoE fix"]


def test_persistent_server_errors_record_the_error_and_keep_the_cursor(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker({"sources": {"github": {"monitor": {"pulls": False}}}})
    tracker.once()
    cursor = state(tracker)["cursor"]
    github.add_issue(REPO, "DeepSeek MoE fix")
    github.inject(Fault(503, path="/repos/", times=10))
    assert tracker.once() == 1
    after = state(tracker)
    assert after["cursor"] == cursor
    assert "503" in after["error"] and "after 4 tries" in after["error"]
    github.clear_faults()
    # The next poll resumes from the kept cursor and finds what the failed one missed.
    tracker.sql("UPDATE source_state SET backoff_until = NULL")
    assert tracker.once() == 0
    assert alerts(tracker) == ["DeepSeek MoE fix"]


def test_bad_token_says_token_missing_or_invalid(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()
    tracker.env["GH"] = "ghp_wrong"
    assert tracker.once() == 1
    error = state(tracker)["error"]
    assert "token missing or invalid" in error
    assert "ghp_wrong" not in error


def test_pull_request_lifecycle_events(gh_tracker, github, welink):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()
    tracker.once()
    github.add_issue(REPO, "DeepSeek-V4 support", pull=True)
    github.add_issue(REPO, "Qwen3 MoE routing", pull=True)
    github.add_issue(REPO, "DeepSeek OOM on H20")
    tracker.once()
    github.close(REPO, 2, merged=True)
    github.close(REPO, 3, merged=False)
    github.close(REPO, 4)
    tracker.once()
    kinds = [
        r[0]
        for r in tracker.sql(
            "SELECT e.event_type FROM alert a JOIN event e ON e.id = a.event_id ORDER BY a.id"
        )
    ]
    assert sorted(kinds) == sorted(
        ["pr_opened", "pr_opened", "issue_opened", "pr_merged", "pr_closed", "issue_closed"]
    )
    assert any(t.startswith("[MRT] PR merged") for t in welink.texts())


def test_legacy_enterprise_pull_without_merged_at_is_asked_for_it(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker({"sources": {"github": {"monitor": {"issues": False}}}})
    tracker.once()
    github.add_issue(REPO, "DeepSeek kernels", pull=True, legacy_pull=True)
    github.close(REPO, 2, merged=True)
    tracker.once()
    kinds = {
        r[0] for r in tracker.sql("SELECT event_type FROM event WHERE title = 'DeepSeek kernels'")
    }
    assert kinds == {"pr_opened", "pr_merged"}
    assert github.requests_to(f"/repos/{REPO}/pulls/2")


def test_token_goes_only_to_the_api_host(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()
    tracker.once()
    assert all(r.headers.get("authorization") == f"Bearer {GH_TOKEN}" for r in github.requests)
    source = tracker.engine().sources[0]
    assert "Authorization" not in source.headers(
        "https://evil.example.com/repositories/1/issues?page=2"
    )


def test_first_run_can_alert_on_a_recent_window_instead_of_a_baseline(gh_tracker, github, welink):
    now = datetime.now(UTC)
    github.add_issue(REPO, "Old DeepSeek thing", at=now - timedelta(days=3))
    github.add_issue(REPO, "Fresh DeepSeek thing", at=now - timedelta(hours=2))
    tracker = gh_tracker({"sources": {"github": {"first_run": "24h"}}})
    tracker.once()
    assert alerts(tracker) == ["Fresh DeepSeek thing"]


def test_bad_upstream_input_records_an_error_keeps_the_cursor_and_other_sources_work(
    gh_tracker, github, welink
):
    github.add_issue(REPO, "seed", at=T0)
    github.add_issue("sgl-project/sglang", "seed", at=T0)
    tracker = gh_tracker(
        {
            "sources": {
                "github": {"repos": [REPO, "sgl-project/sglang"], "monitor": {"pulls": False}}
            }
        }
    )
    tracker.once()
    cursor = state(tracker)["cursor"]
    bad_answers = [
        Fault(kind="malformed"),
        Fault(kind="html"),
        Fault(kind="truncated"),
        Fault(200, json.dumps([{"number": 5, "title": "no url"}])),
        Fault(200, json.dumps({"unexpected": "object"})),
        Fault(200, json.dumps([{"number": "x", "title": 1, "html_url": "u", "state": "open"}])),
    ]
    for i, fault in enumerate(bad_answers):
        github.add_issue("sgl-project/sglang", f"DeepSeek on SGLang #{i}")
        fault.path = f"/repos/{REPO}/"
        fault.times = 10  # the retries of a truncated body see it too
        github.inject(fault)
        assert tracker.once() == 1, fault
        github.clear_faults()
        after = state(tracker)
        assert after["cursor"] == cursor, fault
        assert after["error"], fault
        tracker.sql("UPDATE source_state SET backoff_until = NULL")
    errors = [
        r[0]
        for r in tracker.sql("SELECT error FROM poll_metric WHERE outcome = 'error' ORDER BY id")
    ]
    assert any("expected JSON" in e and "text/html" in e for e in errors)
    assert any("without a valid 'html_url'" in e for e in errors)
    assert any("expected a JSON list" in e for e in errors)
    # The healthy repository kept working through all of it; the failing one raised one
    # "unhealthy" alert when it reached 5 failures in a row, not one per failure.
    sent = alerts(tracker)
    health = [t for t in sent if t.startswith("Source ")]
    assert health == ["Source github:vllm-project/vllm:issues is failing: 5 polls in a row"]
    assert [t for t in sent if t not in health] == [
        f"DeepSeek on SGLang #{i}" for i in range(len(bad_answers))
    ]


def test_labels_that_are_not_a_list_are_no_labels_not_letters(gh_tracker, github):
    now = datetime.now(UTC).replace(microsecond=0)
    github.add_issue(REPO, "seed", at=now)
    tracker = gh_tracker({"sources": {"github": {"monitor": {"pulls": False}}}})
    tracker.once()
    odd = github.add_issue(REPO, "DeepSeek odd labels", at=now + timedelta(seconds=5))
    odd["labels"] = "bug"
    mixed = github.add_issue(REPO, "Qwen mixed labels", at=now + timedelta(seconds=6))
    mixed["labels"] = [{"name": "bug"}, "triage", {"name": 7}, 3]
    assert tracker.once() == 0
    stored = dict(tracker.sql("SELECT title, labels FROM event WHERE title != 'seed'"))
    assert json.loads(stored["DeepSeek odd labels"]) == []
    assert json.loads(stored["Qwen mixed labels"]) == ["bug", "triage"]
