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


def _tracker(gh_tracker, llm, rules, extra=None, **ai):
    tracker = gh_tracker(
        {
            **(extra or {}),
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


# ------------------------------------------------------- never delaying an urgent alert
def triage_requests(llm) -> list:
    """The chat requests that asked for a triage score (not a message's summary, AI1)."""
    return [r for r in llm.chat_requests() if "You triage" in str(r.json()["messages"])]


def ordinary_prs(github, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        github.add_issue(REPO, f"Qwen3 tokenizer tweak {n}", pull=True)


def test_a_poll_with_a_critical_hit_never_waits_for_the_model_for_its_other_events(
    gh_tracker, github, welink, llm
):
    llm.mode, llm.delay = "slow", 5.0
    rules = [
        {"name": "must", "keywords": ["deepseek"], "priority": 10, "critical": True},
        {"name": "qwen", "keywords": ["qwen"], "priority": 10},
    ]
    tracker = _tracker(gh_tracker, llm, rules)
    github.add_issue(REPO, "seed", at=NOW)
    tracker.once()
    ordinary_prs(github, 10)
    github.add_issue(REPO, "DeepSeek-V4 weights leak", pull=True)
    assert tracker.once() == 0
    tags = [tags for _priority, tags in priorities(tracker)]
    assert len(tags) == 11 and all(":local" in t for t in tags)
    assert triage_requests(llm) == []  # the poll asked the model nothing: nothing to wait for
    assert any("DeepSeek-V4 weights leak" in t for t in welink.texts())


def test_a_poll_of_ordinary_events_waits_for_the_model_one_budget_in_all(
    gh_tracker, github, welink, llm
):
    # Every answer takes 0.25 s, well within a request's timeout: one request per event
    # would be ten answers in a row; one budget of 1 s for the poll lets at most 4 start.
    llm.mode, llm.delay = "slow", 0.25
    rules = [{"name": "qwen", "keywords": ["qwen"], "priority": 10}]
    tracker = _tracker(
        gh_tracker, llm, rules, summary_timeout_seconds=5, triage_timeout_seconds=1.0
    )
    github.add_issue(REPO, "seed", at=NOW)
    tracker.once()
    ordinary_prs(github, 10)
    assert tracker.once() == 0
    asked = len(triage_requests(llm))
    assert 1 <= asked <= 4
    tags = [tags for _priority, tags in priorities(tracker)]
    assert len(tags) == 10
    assert sum(":local" in t for t in tags) >= 10 - asked  # the rest: local scores


def test_a_poll_carrying_a_supply_chain_alarm_never_waits_for_the_model(make_tracker, welink, llm):
    from mrt_engine.simulators.modelhub import ModelHubSimulator

    token = "mh-SECRET-token-123"
    with ModelHubSimulator(token=token) as hub:
        tracker = make_tracker(
            {
                "sources": {"modelhub": {"api_base": hub.url, "token_env": "MH"}},
                "notify": {"welink": {"webhook_env": "WL"}},
                "rules": [{"name": "hub", "source": ["modelhub"], "priority": 10}],
                "ai": {
                    "enabled": True,
                    "base_url": llm.base_url,
                    "model": "qwen3-8b",
                    "api_key_env": "AI_KEY",
                    "triage": True,
                },
            },
            {"WL": welink.webhook_url, "MH": token, "AI_KEY": KEY},
        )
        hub.publish("nmt-m2m100", "1.0.0", stable=True)
        assert tracker.once() == 0
        for n in range(5):
            hub.publish(f"asr-whisper-{n}", "2.0.0")
        hub.set_version("nmt-m2m100", "1.0.0", sha256="f" * 64)
        assert tracker.once() == 0
    assert triage_requests(llm) == []
    assert any("SUPPLY-CHAIN ALARM" in t for t in welink.texts())


class SteppingClock:
    """Monotonic seconds that move ``step`` at each reading: triage reads its clock when a poll
    starts and before each request, so each request "costs" one step of the poll's budget."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 100.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_the_model_is_asked_within_one_budget_per_poll(store_location, llm):
    from mrt_engine.ai.client import AiClient
    from mrt_engine.store.db import open_store

    llm.reply = "90"
    clock = SteppingClock(0.4)
    config = AiConfig(
        enabled=True,
        base_url=llm.base_url,
        model="qwen3-8b",
        api_key_env="AI_KEY",
        triage=True,
        triage_timeout_seconds=1.0,
    )
    store = open_store(store_location)
    try:
        client = AiClient(config, store, environ={"AI_KEY": KEY})
        triage = Triage(config, client, clock=clock)
        scores = triage.ask([event(f"Fix {n}") for n in range(10)])
        # Asked at 0.4 s and 0.8 s of the budget; at 1.2 s it is spent: local scores.
        assert len(triage_requests(llm)) == 2
        assert scores[2:] == [None] * 8
        clock.now += 1000  # the next poll, past any rest after a failed answer
        assert triage.ask([event("Fix again")])[0] in ((90, "ai"), None)  # a new budget
        assert len(triage_requests(llm)) == 3
        client.close()
    finally:
        store.close()


def test_a_poll_that_brings_a_source_back_never_waits_for_the_model(
    gh_tracker, github, welink, llm
):
    from mrt_engine.simulators.base import Fault

    rules = [{"name": "qwen", "keywords": ["qwen"], "priority": 10}]
    unhealthy = {"scheduler": {"unhealthy_after_failures": 1}, "http": {"max_retries": 0}}
    tracker = _tracker(gh_tracker, llm, rules, unhealthy)
    github.add_issue(REPO, "seed", at=NOW)
    tracker.once()
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        github.inject(Fault(502, "bad gateway", path="/repos/", times=1))
        assert engine.poll_source(source, force=True).status == "error"
        for n in range(5):
            github.add_issue(REPO, f"Qwen3 tokenizer tweak {n}")
        assert engine.poll_source(source, force=True).status == "ok"
    finally:
        engine.close()
    kinds = tracker.sql("SELECT event_type FROM event WHERE source = 'mrt' ORDER BY id")
    assert kinds == [("source_unhealthy",), ("source_recovered",)]
    assert len(tracker.sql("SELECT id FROM alert WHERE tags LIKE '%triage%'")) == 5
    assert triage_requests(llm) == []  # the recovery's alert is committed without waiting
