"""The rule set's one-pass evaluation gives exactly what each rule alone gives.

``RuleSet.evaluate`` scans an event's text once for every rule's words and hands each rule what
the scan found (tests/perf/bench_pipeline.py measures it). The definition it must keep is each
rule on its own (``CompiledRule.match``, which looks for its words itself) and the decision
semantics of rules/matcher.py: the same hits in the same order with the same reasons, the same
suppression, channels, priority and tags.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from mrt_engine.events import TrackerEvent
from mrt_engine.rules import RuleConfig, RuleSet
from mrt_engine.rules.matcher import Decision, RuleHit

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def event(**fields) -> TrackerEvent:
    base = {
        "source": "github",
        "source_key": "github:vllm-project/vllm:issues",
        "resource_type": "repo_issue",
        "resource_id": "vllm-project/vllm",
        "event_type": "issue_opened",
        "event_id": "1",
        "title": "",
        "observed_at": NOW,
    }
    base.update(fields)
    return TrackerEvent(**base)


def reference(ruleset: RuleSet, e: TrackerEvent) -> Decision:
    """Each rule alone, then the decision as rules/matcher.py's docstring states it."""
    matched = [(r, h) for r in ruleset.rules if (h := r.match(e)) is not None]
    suppress = [h.priority for _r, h in matched if h.action == "suppress"]
    hits: list[RuleHit] = []
    channels: list[str] = []
    tags: list[str] = []
    priority = None
    for rule, hit in matched:
        if hit.action == "notify":
            if suppress and hit.priority <= max(suppress):  # a tie goes to suppress
                hits.append(hit._replace(suppressed=True))
                continue
            priority = hit.priority if priority is None else max(priority, hit.priority)
            channels += [c for c in rule.channels if c not in channels]
        if hit.action != "suppress":
            tags += [t for t in rule.tags if t not in tags]
        hits.append(hit)
    if not hits:
        return Decision()
    return Decision(tuple(hits), priority is not None, tuple(channels), priority or 0, tuple(tags))


def compiled(*configs: dict) -> RuleSet:
    return RuleSet.compile([RuleConfig(**c) for c in configs], ["welink", "email"])


# (rule configs, event fields, expected (rule, reason) hits in order)
CASES = [
    pytest.param(
        [{"name": "qwen", "keywords": ["千问"]}],
        {"title": "通义千问3 发布", "summary": "支持 FP8"},
        [("qwen", 'keyword "千问" in title')],
        id="chinese-keyword",
    ),
    pytest.param(
        [{"name": "fp8", "keywords": ["fp8"], "fields": ["summary"]}],
        {"title": "FP8 kernels", "summary": "通义千问 支持 Fp8 量化"},
        [("fp8", 'keyword "Fp8" in summary')],
        id="case-folded-keyword-quoted-as-written",
    ),
    pytest.param(
        [{"name": "street", "keywords": ["strasse", "straße"]}],
        {"title": "Die STRAẞE und die Straße"},
        [("street", 'keyword "strasse" in title')],
        id="folding-that-changes-lengths-quotes-the-keyword",
    ),
    pytest.param(
        [{"name": "words", "keywords": ["moe", "moe router"]}],
        {"title": "the MoE router is slow"},
        [("words", 'keyword "MoE router" in title')],
        id="leftmost-then-longest-keyword",
    ),
    pytest.param(
        [{"name": "later", "keywords": ["router", "moe"], "fields": ["summary", "title"]}],
        {"title": "moe", "summary": "a router"},
        [("later", 'keyword "router" in summary')],
        id="fields-in-rule-order",
    ),
    pytest.param(
        [{"name": "glm", "regex": [r"\bGLM-\d"]}],
        {"title": "ChatGLM-4 and GLM-4.5"},
        [("glm", 'regex /\\bGLM-\\d/ matched "GLM-4" in title')],
        id="word-boundary-regex",
    ),
    pytest.param(
        [{"name": "glm", "regex": [r"\bGLM-\d"]}],
        {"title": "ChatGLM-4 only"},
        [],
        id="word-boundary-regex-misses-inside-a-word",
    ),
    pytest.param(
        [{"name": "mistral", "regex": [r"(?i)\bmistral\b"]}],
        {"title": "MISTRAL-Small", "summary": "mistralai"},
        [("mistral", 'regex /(?i)\\bmistral\\b/ matched "MISTRAL" in title')],
        id="case-insensitive-regex",
    ),
    pytest.param(
        [{"name": "kimi", "regex": [r"(?i)kimi-k\d"]}],
        {"title": "\u212aIMI-K2 (Kelvin sign)"},
        [("kimi", 'regex /(?i)kimi-k\\d/ matched "\u212aIMI-K2" in title')],
        id="case-insensitive-regex-on-non-ascii-text",
    ),
    pytest.param(
        [{"name": "lora", "keywords": ["lora"], "block": {"keywords": ["docs"]}}],
        {"title": "LoRA adapters", "summary": "see the DOCS"},
        [],
        id="block-keyword-excludes",
    ),
    pytest.param(
        [
            {"name": "mistral", "keywords": ["mistral"], "block": {"label": ["good first *"]}},
            {"name": "any-mistral", "keywords": ["mistral"]},
        ],
        {"title": "Mistral", "labels": ("Good First Issue",)},
        [("any-mistral", 'keyword "Mistral" in title')],
        id="block-label-excludes-only-its-rule",
    ),
    pytest.param(
        [
            {"name": "ds", "keywords": ["deepseek"], "event_type": ["issue_*"]},
            {"name": "ds-pr", "keywords": ["deepseek"], "event_type": ["pr_*"]},
            {"name": "alice", "keywords": ["deepseek"], "author": ["ALICE"], "priority": 2},
        ],
        {"title": "DeepSeek-V3", "author": "alice"},
        [
            ("alice", 'keyword "DeepSeek" in title; author=alice'),
            ("ds", 'keyword "DeepSeek" in title; event_type=issue_opened'),
        ],
        id="filters-and-priority-order",
    ),
    pytest.param(
        [{"name": "both", "keywords": ["qwen"], "regex": [r"GLM-\d"], "fields": ["title"]}],
        {"title": "GLM-4 beats QWEN", "summary": "qwen"},
        [("both", 'keyword "QWEN" in title')],
        id="keyword-and-regex-on-one-field-keyword-first",
    ),
    pytest.param(
        [{"name": "both", "keywords": ["qwen"], "regex": [r"GLM-\d"], "fields": ["title"]}],
        {"title": "GLM-4 only", "summary": "qwen"},
        [("both", 'regex /GLM-\\d/ matched "GLM-4" in title')],
        id="keyword-and-regex-on-one-field-regex-alone",
    ),
    pytest.param(
        [{"name": "nul", "regex": ["a\x00b"], "fields": ["title", "summary"]}],
        {"title": "a", "summary": "b"},
        [],
        id="a-regex-literal-with-nul-never-matches-across-fields",
    ),
    pytest.param(
        [{"name": "every", "action": "tag", "tags": ["all"]}],
        {"title": "anything"},
        [("every", "matches every event")],
        id="a-rule-without-conditions",
    ),
    pytest.param(
        [
            {"name": "rocm", "label": ["rocm"], "action": "tag", "tags": ["amd"]},
            {"name": "bots", "author": ["*[bot]"], "action": "suppress", "priority": 100},
        ],
        {"title": "bump", "author": "dependabot[bot]", "labels": ("ROCm",)},
        [
            ("bots", "author=dependabot[bot]"),
            ("rocm", "label=ROCm"),
        ],
        id="rules-without-text",
    ),
]


@pytest.mark.parametrize(("configs", "fields", "expected"), CASES)
def test_the_one_pass_evaluation_matches_each_rule_alone(configs, fields, expected):
    ruleset = compiled(*configs)
    e = event(**fields)
    got = ruleset.evaluate(e)
    assert [(h.rule, h.reason) for h in got.hits] == expected
    assert got == reference(ruleset, e)


_PIECES = [
    "DeepSeek",
    "deepseek-v3",
    "QWEN",
    "通义千问",
    "千问3",
    "深度求索",
    "Kimi-K2",
    "KİMİ-K2",
    "\u212aimi-k2",
    "ſtrasse",
    "Straße",
    "STRASSE",
    "ﬁne",
    "ΣΑΣ",
    "GLM-4",
    "ChatGLM-4",
    "glm-4",
    "fp8",
    "FP8",
    "moe router",
    "MoE",
    "speculative  decoding",
    "Mistral",
    "mistralai",
    "[Perf]",
    "[Doc]",
    "docs",
    "a\nb",
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
    "千问",
    "kimi-k",
    "fp8",
    "moe",
    "moe router",
    "straße",
    "strasse",
    "ss",
    "ü",
    "glm-",
    "[perf]",
    "σας",
    "fine",
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
    r"千问\d",
]
_GLOBS = ["alice", "ALICE", "*[bot]", "b?b", "*"]
_LABELS = ["rocm", "ROCm", "good first issue", "Good First Issue", "千问", "perf"]


def _random_rule(rng: random.Random, n: int) -> dict:
    config: dict = {
        "name": f"r{n}",
        "fields": rng.sample(["title", "summary", "labels"], rng.randrange(1, 4)),
        "action": rng.choice(["notify", "notify", "tag", "suppress"]),
        "priority": rng.choice([0, 0, 1, 5, 5, 100]),
    }
    if config["action"] == "tag":
        config["tags"] = rng.sample(["amd", "perf", "cn"], rng.randrange(1, 3))
    if rng.random() < 0.3:
        config["channels"] = rng.sample(["welink", "email"], rng.randrange(1, 3))
    text = rng.random()
    if text < 0.5:
        config["keywords"] = rng.sample(_WORDS, rng.randrange(1, 4))
    elif text < 0.75:
        config["regex"] = rng.sample(_REGEXES, rng.randrange(1, 3))
    elif text < 0.9:
        config["keywords"] = rng.sample(_WORDS, rng.randrange(1, 3))
        config["regex"] = rng.sample(_REGEXES, 1)
    if rng.random() < 0.2:
        config["author"] = rng.sample(_GLOBS, rng.randrange(1, 3))
    if rng.random() < 0.2:
        config["label"] = rng.sample(_LABELS, rng.randrange(1, 3))
    if rng.random() < 0.15:
        config["event_type"] = rng.choice([["issue_*"], ["pr_*"], ["issue_opened"]])
    if rng.random() < 0.2:
        block: dict = {}
        kind = rng.randrange(4)
        if kind == 0:
            block["keywords"] = rng.sample(["docs", "[doc]", "千问", "ü"], rng.randrange(1, 3))
        elif kind == 1:
            block["regex"] = [rng.choice([r"\bdocs\b", r"(?i)revert", r"^x"])]
        elif kind == 2:
            block["label"] = rng.sample(_LABELS, 1)
        else:
            block["author"] = rng.sample(_GLOBS, 1)
        config["block"] = block
    return config


def test_the_one_pass_evaluation_matches_each_rule_alone_on_random_rules_and_text():
    rng = random.Random(9)
    for _round in range(300):
        configs = [_random_rule(rng, n) for n in range(rng.randrange(1, 12))]
        ruleset = compiled(*configs)
        for _ in range(20):

            def text(most: int) -> str:
                return "".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, most)))

            e = event(
                title=text(5),
                summary=text(4),
                body=text(8) if rng.random() < 0.3 else "",
                labels=tuple(rng.choice(_LABELS + _PIECES) for _ in range(rng.randrange(3))),
                author=rng.choice(["alice", "bob", "dependabot[bot]", "Alice", "千问"]),
                event_type=rng.choice(["issue_opened", "pr_opened", "issue_closed"]),
            )
            assert ruleset.evaluate(e) == reference(ruleset, e), (configs, e)


def test_a_rule_that_reads_no_text_answers_each_event_by_what_it_reads():
    # Such a rule's answer is worked out once per distinct author, labels, repo or event type
    # (rules/matcher.py): every event must still get its own answer, whatever came before.
    ruleset = compiled(
        {"name": "bots", "author": ["*[bot]"], "action": "suppress", "priority": 100},
        {"name": "rocm", "label": ["rocm"], "block": {"author": ["carol"]}},
        {"name": "prs", "event_type": ["pr_*"], "org": ["vllm-*"], "action": "tag"},
        {"name": "any", "block": {"label": ["wontfix"]}, "action": "tag", "tags": ["x"]},
        {"name": "text", "keywords": ["rocm"]},
    )
    rng = random.Random(5)
    for _ in range(600):
        e = event(
            title=rng.choice(["ROCm build", "docs", ""]),
            author=rng.choice(["alice", "carol", "dependabot[bot]", "Renovate[BOT]", ""]),
            labels=tuple(rng.sample(["rocm", "ROCm", "wontfix", "bug"], rng.randrange(3))),
            event_type=rng.choice(["issue_opened", "pr_opened", "pr_merged"]),
            resource_id=rng.choice(["vllm-project/vllm", "sgl-project/sglang"]),
        )
        assert ruleset.evaluate(e) == reference(ruleset, e), e


def test_an_event_whose_labels_are_a_list_is_still_judged():
    # A source's bug (labels as a list, which cannot be a key) must not fail the rules.
    ruleset = compiled({"name": "rocm", "label": ["rocm"]})
    e = event(title="x", labels=["ROCm"])  # type: ignore[arg-type]
    assert [(h.rule, h.reason) for h in ruleset.evaluate(e).hits] == [("rocm", "label=ROCm")]
