"""Rules (F1): matching, reasons, block lists, priorities and actions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mrt_engine.config import ConfigError, validate
from mrt_engine.events import TrackerEvent
from mrt_engine.rules import RuleConfig, RuleSet

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def event(**fields) -> TrackerEvent:
    base = {
        "source": "github",
        "source_key": "github:vllm-project/vllm:pulls",
        "resource_type": "repo_pr",
        "resource_id": "vllm-project/vllm",
        "event_type": "pr_opened",
        "event_id": "1",
        "title": "Add support",
        "observed_at": NOW,
    }
    base.update(fields)
    return TrackerEvent(**base)


def rules(*configs: dict, channels=("welink", "email"), watch=()) -> RuleSet:
    return RuleSet.compile([RuleConfig(**c) for c in configs], list(channels), list(watch))


def test_keyword_match_is_case_insensitive_and_names_the_field():
    decision = rules({"name": "ds", "keywords": ["deepseek"]}).evaluate(
        event(title="Support DEEPSEEK-V3")
    )
    assert decision.notify
    assert decision.hits[0].reason == 'keyword "DEEPSEEK" in title'


def test_keyword_in_summary_and_labels_when_asked():
    ruleset = rules({"name": "ds", "keywords": ["qwen"], "fields": ["title", "labels"]})
    assert not ruleset.evaluate(event(summary="about qwen")).notify
    hit = ruleset.evaluate(event(labels=("model:Qwen",))).hits[0]
    assert hit.reason == 'keyword "Qwen" in labels'


def test_regex_reports_what_it_matched():
    hit = (
        rules({"name": "ver", "regex": [r"(?i)deepseek-v\d+"]})
        .evaluate(event(title="DeepSeek-V32 MLA"))
        .hits[0]
    )
    assert hit.reason == 'regex /(?i)deepseek-v\\d+/ matched "DeepSeek-V32" in title'


def test_field_filters_must_all_match_and_support_globs():
    ruleset = rules(
        {
            "name": "merged",
            "event_type": ["pr_merged"],
            "repo": ["vllm-project/*"],
            "author": ["alice"],
        }
    )
    assert not ruleset.evaluate(event(event_type="pr_opened", author="alice")).hits
    assert not ruleset.evaluate(event(event_type="pr_merged", author="bob")).hits
    hit = ruleset.evaluate(event(event_type="pr_merged", author="ALICE")).hits[0]
    assert hit.reason == "event_type=pr_merged; repo=vllm-project/vllm; author=ALICE"


def test_org_and_label_filters():
    ruleset = rules({"name": "x", "org": ["sgl-project"], "label": ["new-*"]})
    assert not ruleset.evaluate(event(labels=("new-model",))).hits
    assert ruleset.evaluate(
        event(resource_id="sgl-project/sglang", labels=("bug", "new-model"))
    ).hits


def test_block_list_vetoes_the_rule():
    ruleset = rules(
        {
            "name": "ds",
            "keywords": ["deepseek"],
            "block": {
                "author": ["dependabot[bot]"],
                "keywords": ["revert"],
                "label": ["duplicate"],
            },
        }
    )
    assert ruleset.evaluate(event(title="DeepSeek fix", author="alice")).notify
    assert not ruleset.evaluate(event(title="DeepSeek fix", author="dependabot[bot]")).hits
    assert not ruleset.evaluate(event(title="Revert DeepSeek fix")).hits
    assert not ruleset.evaluate(event(title="DeepSeek fix", labels=("duplicate",))).hits


def test_brackets_in_names_are_literal_not_character_classes():
    ruleset = rules({"name": "bot", "author": ["dependabot[bot]"]})
    assert ruleset.evaluate(event(author="dependabot[bot]")).hits
    assert not ruleset.evaluate(event(author="dependabotb")).hits


def test_suppress_rule_with_higher_or_equal_priority_wins_and_both_hits_are_kept():
    ruleset = rules(
        {"name": "ds", "keywords": ["deepseek"], "priority": 10},
        {
            "name": "no-docs",
            "action": "suppress",
            "keywords": ["[doc]"],
            "fields": ["title"],
            "priority": 10,
        },
        {"name": "urgent", "keywords": ["security"], "priority": 50},
    )
    quiet = ruleset.evaluate(event(title="[Doc] DeepSeek usage"))
    assert not quiet.notify
    assert {(h.rule, h.suppressed) for h in quiet.hits} == {("ds", True), ("no-docs", False)}
    loud = ruleset.evaluate(event(title="[Doc] DeepSeek security note"))
    assert loud.notify and loud.notify_rules == ("urgent",) and loud.priority == 50


def test_tag_rules_tag_without_notifying():
    ruleset = rules(
        {"name": "tagger", "action": "tag", "label": ["perf"], "tags": ["performance"]},
        {"name": "ds", "keywords": ["deepseek"], "tags": ["model"]},
    )
    tagged_only = ruleset.evaluate(event(labels=("perf",)))
    assert not tagged_only.notify and tagged_only.tags == ("performance",)
    both = ruleset.evaluate(event(title="DeepSeek speedup", labels=("perf",)))
    assert both.notify and set(both.tags) == {"performance", "model"}


def test_channels_route_per_rule_and_default_to_all():
    ruleset = rules(
        {"name": "mail-only", "keywords": ["qwen"], "channels": ["email"]},
        {"name": "everywhere", "keywords": ["deepseek"]},
    )
    assert ruleset.evaluate(event(title="Qwen")).channels == ("email",)
    assert set(ruleset.evaluate(event(title="DeepSeek and Qwen")).channels) == {"welink", "email"}


def test_v0_watch_keywords_become_a_rule():
    ruleset = rules(watch=["deepseek", "qwen"])
    hit = ruleset.evaluate(event(title="x", summary="Qwen2 fix")).hits[0]
    assert hit.rule == "watch_keywords" and hit.reason == 'keyword "Qwen" in summary'
    assert not ruleset.evaluate(event(title="llama")).hits


def test_disabled_rules_do_not_match():
    assert (
        not rules({"name": "off", "keywords": ["x"], "enabled": False})
        .evaluate(event(title="x"))
        .hits
    )


def test_a_bad_regex_names_the_rule():
    with pytest.raises(ConfigError) as info:
        validate(
            {
                "rules": [
                    {"name": "ok", "keywords": ["a"]},
                    {"name": "broken", "regex": ["deepseek["]},
                ]
            }
        )
    assert info.value.problems == [
        "rules[1]: rule \"broken\": regex[0] 'deepseek[' is not a valid regular expression: "
        "unterminated character set at position 8"
    ]


def test_rule_names_are_unique_and_channels_must_exist():
    with pytest.raises(ConfigError) as info:
        validate(
            {
                "notify": {"welink": {}},
                "rules": [{"name": "a", "channels": ["slack"]}, {"name": "a"}],
            }
        )
    assert (
        'rules[0].channels[0]: channel "slack" is not configured under notify (welink)'
        in info.value.problems
    )
    assert 'rules[1].name: duplicate rule name "a" (see rules[0])' in info.value.problems


def test_single_strings_are_accepted_for_lists():
    config = RuleConfig(name="x", keywords="deepseek", event_type="pr_opened")
    assert config.keywords == ["deepseek"] and config.event_type == ["pr_opened"]


# The text gate (one scan for every rule's keywords and regex literals) must never change what
# matches: compare with the plain definition on random rules and hostile text.
_PIECES = [
    "DeepSeek",
    "deepseek",
    "QWEN",
    "qwen3",
    "Kimi-K2",
    "KİMİ-K2",
    "ſtrasse",
    "Straße",
    "STRASSE",
    "GLM-4",
    "glm-4",
    "fp8",
    "FP8",
    "moe router",
    "moe",
    "speculative  decoding",
    "Mistral",
    "\u212aimi-k2",
    "[bold]",
    "a\nb",
    " ",
    " ",
    "x",
    "ü",
    "Ü",
    "rocm",
    "tpu",
    "-",
    "4",
]
_WORDS = [
    "deepseek",
    "qwen",
    "kimi-k",
    "fp8",
    "moe",
    "moe router",
    "straße",
    "ss",
    "ü",
    "glm-",
    "[bold]",
]
_REGEXES = [
    r"(?i)kimi-k\d",
    r"\bGLM-\d",
    r"(?i)\bmistral\b",
    r"speculative\s+decoding",
    r"^x",
    r"x$",
    r"(?i)strasse",
    r"fp\d",
    r"(?i)ü",
    r"a.b",
]


def _reference(config: dict, e: TrackerEvent) -> bool:
    import re

    texts = [
        ", ".join(e.labels) if f == "labels" else getattr(e, f) or "" for f in config["fields"]
    ]
    words = [w.casefold() for w in config.get("keywords", [])]
    return any(w in t.casefold() for w in words for t in texts) or any(
        re.search(p, t) for p in config.get("regex", []) for t in texts
    )


def test_the_text_gate_never_changes_what_matches():
    import random

    rng = random.Random(7)
    for _round in range(300):
        configs = []
        for n in range(rng.randrange(1, 8)):
            config = {
                "name": f"r{n}",
                "fields": rng.sample(["title", "summary", "labels"], rng.randrange(1, 4)),
            }
            if rng.random() < 0.7:
                config["keywords"] = rng.sample(_WORDS, rng.randrange(1, 4))
            if rng.random() < 0.5 or "keywords" not in config:
                config["regex"] = rng.sample(_REGEXES, rng.randrange(1, 3))
            configs.append(config)
        ruleset = rules(*configs)
        for _ in range(20):
            e = event(
                title="".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 6))),
                summary="".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 6))),
                labels=tuple(rng.choice(_PIECES) for _ in range(rng.randrange(0, 3))),
            )
            got = {h.rule for h in ruleset.evaluate(e).hits}
            want = {c["name"] for c in configs if _reference(c, e)}
            assert got == want, (configs, e)
