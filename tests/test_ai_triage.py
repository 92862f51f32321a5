"""AI4 triage: a score per alerted event moves its priority (high: at once; low: the digest);
a critical rule's hit is never lowered, dropped or held waiting for the model."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mrt_engine.ai.settings import AiConfig
from mrt_engine.ai.triage import Triage, local_score, parse_score
from mrt_engine.events import TrackerEvent
from mrt_engine.rules.matcher import RuleSet
from mrt_engine.rules.model import RuleConfig
from mrt_engine.simulators.openai_compat import OpenAICompatSimulator

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
REPO = "vllm-project/vllm"
KEY = "sk-local-TESTKEY-5f4e3d2c1b0a"


def event(title: str, labels: tuple[str, ...] = ()) -> TrackerEvent:
    return TrackerEvent(
        source="github",
        source_key="github:vllm-project/vllm:pulls",
        resource_type="repo_pr",
        resource_id=REPO,
        event_type="pr_opened",
        event_id=title,
        title=title,
        observed_at=NOW,
        labels=labels,
    )


def triaged(*rules: RuleConfig, min_priority=None) -> RuleSet:
    ruleset = RuleSet.compile(rules, ["welink"], min_priority=min_priority)
    critical = [r.name for r in rules if r.critical]
    ruleset.triage = Triage(AiConfig(enabled=True, triage=True), None, critical)
    return ruleset


def test_local_scores_follow_the_events_signals():
    assert local_score(event("Fix CVE-2026-1234 in the tokenizer", ("security",))) >= 70
    assert local_score(event("docs: fix a typo", ("documentation",))) <= 30
    assert parse_score("Score: 85/100") == 85 and parse_score("none") is None


def test_a_high_score_raises_the_priority_and_a_low_one_lowers_it():
    rules = triaged(RuleConfig(name="vllm", keywords=["fix"], priority=10))
    high = rules.evaluate(event("Fix CVE-2026-1234 in the tokenizer", ("security",)))
    low = rules.evaluate(event("docs: fix a typo", ("documentation",)))
    middle = rules.evaluate(event("Fix the scheduler"))
    assert high.priority == 500 and any(t.startswith("triage:") for t in high.tags)
    assert low.priority == -100 and low.notify and low.channels == ("welink",)
    assert middle.priority == 10


def test_triage_never_lowers_or_drops_a_critical_rules_hit():
    rules = triaged(
        RuleConfig(name="must", keywords=["typo"], priority=10, critical=True),
        min_priority={"welink": 5},
    )
    decision = rules.evaluate(event("docs: fix a typo", ("documentation",)))
    assert decision.notify and decision.priority == 10 and decision.channels == ("welink",)


def test_a_lowered_alert_keeps_its_channels_for_the_digest():
    rules = triaged(
        RuleConfig(name="vllm", keywords=["typo"], priority=10), min_priority={"welink": 5}
    )
    decision = rules.evaluate(event("docs: fix a typo", ("documentation",)))
    assert decision.priority == -100 and decision.channels == ("welink",)


# ---------------------------------------------------------------------- in the engine
pytestmark = pytest.mark.both_backends


@pytest.fixture
def llm():
    with OpenAICompatSimulator(api_key=KEY) as server:
        yield server


def _tracker(gh_tracker, llm, rules, **ai):
    tracker = gh_tracker(
        {
            "watch_keywords": [],
            "rules": rules,
            "notify": {"welink": {"digest": {"every": "daily", "below_priority": 0}}},
            "ai": {
                "enabled": True,
                "base_url": llm.base_url,
                "model": "qwen3-8b",
                "api_key_env": "AI_KEY",
                "triage": True,
                "summary_timeout_seconds": 0.5,
                **ai,
            },
        }
    )
    tracker.env["AI_KEY"] = KEY
    return tracker


def priorities(tracker) -> list[tuple[int, str]]:
    return tracker.sql("SELECT priority, tags FROM alert ORDER BY id")


def test_the_models_score_sends_high_at_once_and_holds_low_for_the_digest(
    gh_tracker, github, welink, llm
):
    tracker = _tracker(gh_tracker, llm, [{"name": "ds", "keywords": ["deepseek"], "priority": 10}])
    github.add_issue(REPO, "seed", at=NOW)
    tracker.once()
    llm.reply = "92"
    github.add_issue(REPO, "DeepSeek-V4 support", pull=True)
    assert tracker.once() == 0
    llm.reply = "12"
    github.add_issue(REPO, "DeepSeek docs wording", pull=True)
    assert tracker.once() == 0
    [(high, high_tags), (low, low_tags)] = priorities(tracker)
    assert high == 500 and "triage:92:ai" in high_tags
    assert low == -100 and "triage:12:ai" in low_tags
    assert len(welink.texts()) == 1 and "DeepSeek-V4 support" in welink.texts()[0]
    [(status,)] = tracker.sql(
        "SELECT d.status FROM delivery d JOIN alert a ON a.id = d.alert_id WHERE a.priority < 0"
    )
    assert status == "pending"  # held for the day's digest, not dropped


def test_a_critical_hit_is_never_lowered_nor_waits_for_the_model(gh_tracker, github, welink, llm):
    rules = [{"name": "must", "keywords": ["deepseek"], "priority": 10, "critical": True}]
    tracker = _tracker(gh_tracker, llm, rules)
    github.add_issue(REPO, "seed", at=NOW)
    tracker.once()
    llm.reply = "3"
    github.add_issue(REPO, "DeepSeek docs wording", pull=True)
    assert tracker.once() == 0
    [(priority, tags)] = priorities(tracker)
    assert priority == 10 and ":local" in tags
    assert llm.chat_requests() == []
    assert len(welink.texts()) == 1


def test_a_slow_model_falls_back_to_the_local_score_and_the_alert_goes(
    gh_tracker, github, welink, llm
):
    llm.mode, llm.delay = "slow", 5.0
    tracker = _tracker(gh_tracker, llm, [{"name": "ds", "keywords": ["deepseek"], "priority": 10}])
    github.add_issue(REPO, "seed", at=NOW)
    tracker.once()
    github.add_issue(REPO, "DeepSeek security fix", pull=True, labels=("security",))
    assert tracker.once() == 0
    [(priority, tags)] = priorities(tracker)
    assert priority == 500 and ":local" in tags
    assert len(welink.texts()) == 1


def test_history_before_the_baseline_is_never_sent_to_the_model(gh_tracker, github, llm):
    tracker = _tracker(gh_tracker, llm, [{"name": "ds", "keywords": ["deepseek"], "priority": 10}])
    github.add_issue(REPO, "DeepSeek history", at=NOW)
    github.add_issue(REPO, "DeepSeek more history", at=NOW)
    assert tracker.once() == 0  # the baseline: stored, never alerted
    assert llm.chat_requests() == []
