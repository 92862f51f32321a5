"""Rules see the whole text an upstream gave, not only the stored excerpt.

An issue that names "Qwen" 623 characters into its body must match a keyword rule, at poll time
and in replays and dry runs of the stored event, while the message still shows a short excerpt.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from mrt_engine import operations
from mrt_engine.components import compile_rules
from mrt_engine.rules.dryrun import draft_rule, dry_run
from mrt_engine.rules.matcher import CompiledRule
from mrt_engine.simulators.feeds import FeedSimulator
from mrt_engine.simulators.osv import OsvSimulator
from mrt_engine.store import feed

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
FILLER = "The server fails when the batch is large and the log shows an error. "
DEEP = (FILLER * 10)[:623] + "Qwen3-235B in fp8 is the only model that fails. " + FILLER * 4
TAIL = "END-OF-BODY-MARKER"


def alerted(tracker) -> list[str]:
    return [
        r[0]
        for r in tracker.sql(
            "SELECT e.title FROM alert a JOIN event e ON e.id = a.event_id ORDER BY a.id"
        )
    ]


def test_a_keyword_deep_in_an_issue_body_alerts_and_the_message_shows_only_the_excerpt(
    gh_tracker, github, welink
):
    assert DEEP.index("Qwen") == 623
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()  # watch_keywords: deepseek, qwen (title and summary)
    tracker.once()
    github.add_issue(REPO, "Server crash with large batches", body=DEEP + TAIL)
    tracker.once()
    assert alerted(tracker) == ["Server crash with large batches"]
    [reason] = [r[0] for r in tracker.sql("SELECT reason FROM rule_hit")]
    assert reason == 'keyword "Qwen" in summary'
    [text] = welink.texts()
    assert "Server crash with large batches" in text
    assert "Qwen3" not in text and TAIL not in text  # the excerpt, not the whole body
    [(summary, body, raw)] = tracker.sql(
        "SELECT summary, body, raw FROM event WHERE title = 'Server crash with large batches'"
    )
    assert len(summary) <= 280 and body.endswith(TAIL) and "Qwen3-235B" in body
    assert "body" not in json.loads(raw)  # the body is stored once


def test_a_short_body_is_stored_once_as_the_summary(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()
    tracker.once()
    github.add_issue(REPO, "Qwen3 tokenizer crash", body="Steps to reproduce: load it.")
    tracker.once()
    assert tracker.sql("SELECT summary, body FROM event WHERE title = 'Qwen3 tokenizer crash'") == [
        ("Steps to reproduce: load it.", None)
    ]


def test_a_replay_and_a_dry_run_of_the_stored_event_see_the_same_body(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker({"watch_keywords": ["deepseek"]})  # Qwen not watched yet
    tracker.once()
    github.add_issue(REPO, "Server crash with large batches", body=DEEP)
    tracker.once()
    assert alerted(tracker) == []
    # The operator adds Qwen; a replay dry run finds the stored event.
    tracker = gh_tracker({"watch_keywords": ["deepseek", "qwen"]})
    result = tracker.cli("replay", "--since", "1d", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [i["title"] for i in plan["items"]] == ["Server crash with large batches"]
    # The console's rule dry run evaluates the same stored text.
    rule = CompiledRule(draft_rule("qwen3-235b"), ["welink"])
    with tracker.store() as store, store.read():
        rows = feed.recent_events(100)
        matches = dry_run(rule, ((r.id, operations.tracker_event(r)) for r in rows))
        rules = compile_rules(tracker.config)
        replayed = [rules.evaluate(operations.tracker_event(r)).notify for r in rows]
    assert [m[1].title for m in matches] == ["Server crash with large batches"]
    assert matches[0][2].reason == 'keyword "Qwen3-235B" in summary'
    assert replayed.count(True) == 1


def test_the_body_rules_see_is_bounded(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()
    tracker.once()
    github.add_issue(REPO, "Huge log paste", body="x" * 200_000 + " qwen")
    tracker.once()
    [(size,)] = tracker.sql("SELECT length(body) FROM event WHERE title = 'Huge log paste'")
    assert size == 64 * 1024
    assert alerted(tracker) == []


def test_a_keyword_deep_in_release_notes_alerts(gh_tracker, github, welink):
    tracker = gh_tracker({"sources": {"github": {"monitor": {"releases": True}}}})
    github.add_release(REPO, "v0.10.0", body="## Highlights\n* faster")
    tracker.once()
    github.add_release(REPO, "v0.11.0", body=DEEP)
    tracker.once()
    assert alerted(tracker) == ["vllm-project/vllm v0.11.0"]
    [text] = welink.texts()
    assert "Qwen3" not in text


@pytest.fixture
def feeds() -> Iterator[FeedSimulator]:
    sim = FeedSimulator().start()
    yield sim
    sim.stop()


@pytest.mark.parametrize("kind", ["atom", "rss"])
def test_a_keyword_in_a_feed_entrys_full_content_alerts(make_tracker, feeds, welink, kind):
    url = feeds.feed("blog", kind=kind)
    tracker = make_tracker(
        {
            "watch_keywords": ["qwen"],
            "sources": {"feeds": [{"name": "blog", "url": url}]},
            "notify": {"welink": {"webhook_env": "WL"}},
        },
        {"WL": welink.webhook_url},
    )
    feeds.add_entry("blog", "Hello", summary="first post")
    tracker.once()
    feeds.add_entry("blog", "Serving notes", summary="Notes on serving.", content=f"<p>{DEEP}</p>")
    tracker.once()
    assert alerted(tracker) == ["Serving notes"]
    assert tracker.sql("SELECT summary FROM event WHERE title = 'Serving notes'") == [
        ("Notes on serving.",)
    ]


def test_a_feeds_own_keywords_see_the_full_content_too(make_tracker, feeds):
    url = feeds.feed("arxiv")
    tracker = make_tracker(
        {"sources": {"feeds": [{"name": "arxiv", "url": url, "keywords": ["qwen"]}]}}
    )
    feeds.add_entry("arxiv", "Routing study", summary="We study routing.", content=DEEP)
    feeds.add_entry("arxiv", "Unrelated", summary="Nothing here.", content=FILLER)
    tracker.once()
    assert [r[0] for r in tracker.sql("SELECT title FROM event")] == ["Routing study"]


def test_a_keyword_deep_in_osv_details_alerts(make_tracker, welink):
    osv = OsvSimulator().start()
    try:
        tracker = make_tracker(
            {
                "sources": {"osv": {"packages": ["vllm"], "api_base": osv.url}},
                "rules": [{"name": "security-advisories", "keywords": ["qwen"], "priority": 900}],
                "notify": {"welink": {"webhook_env": "WL"}},
            },
            {"WL": welink.webhook_url},
        )
        osv.publish("vllm", "GHSA-0000-0000-0001", "old advisory")
        tracker.once()
        osv.publish("vllm", "GHSA-0000-0000-0002", "RCE in the worker")
        osv.publish("vllm", "GHSA-0000-0000-0003", "DoS in the tokenizer")
        with osv.lock:
            osv.vulns[("PyPI", "vllm")][-2]["details"] = DEEP
        tracker.once()
    finally:
        osv.stop()
    assert [t.split(":")[0] for t in alerted(tracker)] == ["[HIGH] GHSA-0000-0000-0002 in vllm"]


def test_a_keyword_in_a_model_hub_services_description_matches(make_tracker, welink):
    from mrt_engine.simulators.modelhub import ModelHubSimulator

    hub = ModelHubSimulator().start()
    try:
        tracker = make_tracker(
            {
                "sources": {"modelhub": {"api_base": hub.url}},
                "rules": [{"name": "whisper-v3", "keywords": ["large-v3"]}],
                "notify": {"welink": {"webhook_env": "WL"}},
            },
            {"WL": welink.webhook_url},
        )
        hub.publish("asr", "1.0.0")
        tracker.once()
        hub.services["asr"]["description"] = FILLER * 3 + "Speech recognition, Whisper large-v3."
        hub.publish("asr", "1.1.0")
        tracker.once()
    finally:
        hub.stop()
    assert alerted(tracker) == ["asr service 1.1.0 published on the Model Hub"]
    [text] = welink.texts()
    assert "Speech recognition" not in text  # matched in the text, not pasted into the message
