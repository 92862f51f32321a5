"""AI2 semantic rules: a rule's ``topic`` and ``similarity``, judged by local lexical similarity
(character n-grams) or, with ``ai.embedding_model``, by a local OpenAI-compatible server's
embeddings; only for events the rule's cheap filters let through."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mrt_engine.ai.similarity import Lexical
from mrt_engine.events import TrackerEvent
from mrt_engine.rules.matcher import RuleSet
from mrt_engine.rules.model import RuleConfig
from mrt_engine.simulators.openai_compat import OpenAICompatSimulator

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
KEY = "sk-local-TESTKEY-5f4e3d2c1b0a"


def event(**fields) -> TrackerEvent:
    base = {
        "source": "github",
        "source_key": "github:vllm-project/vllm:pulls",
        "resource_type": "repo_pr",
        "resource_id": REPO,
        "event_type": "pr_opened",
        "event_id": "1",
        "title": "Add support",
        "observed_at": NOW,
    }
    base.update(fields)
    return TrackerEvent(**base)


def ruleset(**rule) -> RuleSet:
    return RuleSet.compile([RuleConfig(name="topic", **rule)], ["welink"])


TOPIC = "speculative decoding with a draft model"


def test_a_topic_rule_matches_an_event_about_its_topic_without_its_keywords():
    rules = ruleset(topic=TOPIC, similarity=0.3)
    hit = rules.evaluate(event(title="Speculative decoding: support draft models in the scheduler"))
    assert hit.notify
    assert hit.hits[0].reason.startswith(f'topic "{TOPIC}" 0.')
    assert hit.hits[0].reason.endswith("alike (lexical)")
    assert not rules.evaluate(event(title="Fix a typo in the README")).notify


def test_a_topic_rule_also_matches_by_its_keywords_and_keeps_its_filters():
    rules = ruleset(topic=TOPIC, keywords=["eagle"], source=["huggingface"])
    assert not rules.evaluate(event(title="Speculative decoding with a draft model")).notify
    on_hf = event(source="huggingface", title="EAGLE-3 heads", resource_type="model")
    assert rules.evaluate(on_hf).hits[0].reason.startswith('keyword "EAGLE"')


def test_lexical_similarity_works_for_chinese():
    lexical = Lexical()
    near, _ = lexical.score("投机解码 草稿模型", "支持投机解码的草稿模型加速推理")
    far, _ = lexical.score("投机解码 草稿模型", "修复文档中的错别字")
    assert near > 0.3 > far


def test_fitted_idf_weighs_rare_grams_more():
    corpus = ["fix the build", "fix the docs", "fix the tests", "deepseek moe kernels"]
    fitted = Lexical().fit(corpus)
    plain = Lexical()
    text = "fix the moe kernels"
    assert fitted.score("moe kernels", text)[0] > plain.score("moe kernels", text)[0]


# ---------------------------------------------------------------------- in the engine
pytestmark = pytest.mark.both_backends


@pytest.fixture
def llm():
    with OpenAICompatSimulator(api_key=KEY) as server:
        yield server


def _tracker(gh_tracker, llm, *, embedding_model="bge-m3", **rule):
    tracker = gh_tracker(
        {
            "watch_keywords": [],
            "rules": [{"name": "spec", "topic": TOPIC, "similarity": 0.3, **rule}],
            "ai": {
                "enabled": True,
                "base_url": llm.base_url,
                "embedding_model": embedding_model,
                "api_key_env": "AI_KEY",
                "embedding_timeout_seconds": 0.5,
            },
        }
    )
    tracker.env["AI_KEY"] = KEY
    return tracker


def test_with_an_embedding_model_topic_rules_use_the_servers_embeddings(
    gh_tracker, github, welink, llm
):
    tracker = _tracker(gh_tracker, llm)
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "Speculative decoding: draft model support", pull=True)
    assert tracker.once() == 0
    [message] = welink.texts()
    assert "alike (embedding)" in message
    asked = len(llm.embedding_requests())
    assert asked >= 1
    tracker.once()  # the same texts again: from the store's cache
    assert len(llm.embedding_requests()) == asked


def test_a_failing_embedding_endpoint_falls_back_to_lexical_similarity(
    gh_tracker, github, welink, llm
):
    llm.mode = "failing"
    tracker = _tracker(gh_tracker, llm)
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "Speculative decoding: draft model support", pull=True)
    github.add_issue(REPO, "Speculative decoding for draft models, part 2", pull=True)
    before = len(llm.embedding_requests())
    assert tracker.once() == 0
    texts = welink.texts()
    assert len(texts) == 2 and all("alike (lexical)" in t for t in texts)
    # A failure, then the lexical way for a while: the second event asks nothing (the
    # first may be asked by each source that lists it, polled at the same time).
    asked = [r.body.decode() for r in llm.embedding_requests()[before:]]
    assert asked and not any("part 2" in body for body in asked)
    [(fallbacks,)] = tracker.sql("SELECT SUM(fallbacks) FROM ai_usage")
    assert fallbacks == len(llm.embedding_requests())


def test_events_the_cheap_filters_refuse_never_ask_for_embeddings(gh_tracker, github, welink, llm):
    tracker = _tracker(gh_tracker, llm, source=["huggingface"])
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "Speculative decoding: draft model support", pull=True)
    assert tracker.once() == 0
    assert llm.embedding_requests() == []
    assert welink.texts() == []


# ---------------------------------------------------------------------- rules suggest
def test_rules_suggest_proposes_words_common_in_a_rules_hits(gh_tracker, github):
    import json

    tracker = gh_tracker()
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    for title in (
        "DeepSeek-V3.2 MLA kernel for sparse attention",
        "Fix DeepSeek MLA decode on Hopper",
        "DeepSeek: sparse attention backend",
        "Qwen3 MoE routing fix",
        "Docs: typo",
        "CI: pin torch",
    ):
        github.add_issue(REPO, title, pull=True)
    assert tracker.once() == 0
    result = tracker.cli("rules", "suggest", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)["watch_keywords"]
    words = [s["keyword"] for s in found]
    assert set(words[:3]) == {"attention", "mla", "sparse"}  # each in 2 of the 4 hits
    assert "deepseek" not in words and "qwen3" not in words  # the rule has them already
    assert found[0]["hits"] >= 2 and found[0]["of"] == 4
    plain = tracker.cli("rules", "suggest", "--rule", "nope")
    assert plain.returncode == 2 and "no notify rule named 'nope'" in plain.stderr


def test_doctor_says_topic_rules_use_lexical_similarity_without_an_embedding_model(gh_tracker, llm):
    from mrt_engine.doctor import Doctor

    tracker = _tracker(gh_tracker, llm, embedding_model="")
    checks = {c.name: c for c in Doctor(tracker.path, tracker.env).run()}
    assert checks["ai"].ok
    assert "1 topic rule(s) (spec) judged by local lexical similarity" in checks["ai"].detail
    tracker.env.pop("AI_KEY")
    checks = {c.name: c for c in Doctor(tracker.path, tracker.env).run()}
    assert not checks["ai"].ok and "AI_KEY is not set" in checks["ai"].detail


def test_topic_rules_work_with_the_ai_off_and_replay_judges_them_alike(gh_tracker, github, welink):
    tracker = gh_tracker(
        {"watch_keywords": [], "rules": [{"name": "spec", "topic": TOPIC, "similarity": 0.3}]}
    )
    for title in ("Fix the build", "Fix the docs", "Bump torch"):
        github.add_issue(REPO, title, at=T0)
    tracker.once()
    github.add_issue(REPO, "Speculative decoding: draft model support", pull=True)
    github.add_issue(REPO, "Fix the tests", pull=True)
    assert tracker.once() == 0
    [message] = welink.texts()
    assert "Speculative decoding" in message and "alike (lexical)" in message
    replay = tracker.cli("replay", "--since", "1d", "--dry-run", "--json")
    assert replay.returncode == 0, replay.stderr
    assert '"matched": 1' in replay.stdout


def test_a_topic_rule_judges_each_event_by_its_own_text_not_the_first_ones():
    """A rule of a topic alone reads no keyword, regex or filter, but it reads the text: its
    answer must not be remembered as a text-free rule's is (the first event's for all)."""
    rules = ruleset(topic=TOPIC, similarity=0.3)
    titles = ["Fix a typo in the README", "Speculative decoding with draft models", "Bump ruff"]
    assert [rules.evaluate(event(title=t, event_id=t)).notify for t in titles] == [
        False,
        True,
        False,
    ]
