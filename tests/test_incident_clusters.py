"""AI3 (issue 13): alike alerts about one model within an incident go out as one message with a
summary (mrt_engine/incident_clusters.py), through the grouping every alert already has."""

from __future__ import annotations

import pytest
from conftest import GH_TOKEN

from mrt_engine.simulators.openai_compat import OpenAICompatSimulator

pytestmark = pytest.mark.both_backends

REPOS = ["vllm-project/vllm", "sgl-project/sglang", "InternLM/lmdeploy"]
GROUPING = {"delivery": {"group_wait_seconds": 30, "group_interval_seconds": 300}}
ALIKE = [
    ("vllm-project/vllm", "DeepSeek-V4 fails to load with FP8", "alice"),
    ("sgl-project/sglang", "DeepSeek-V4 FP8 checkpoint fails to load", "bob"),
    ("InternLM/lmdeploy", "deepseek v4: fails to load FP8 weights", "carol"),
    ("vllm-project/vllm", "DeepSeek-V4 fails to load with FP8 on H100", "dave"),
]
LATER = ("sgl-project/sglang", "FP8 DeepSeek-V4 model fails to load", "erin")
OTHER = ("vllm-project/vllm", "Add DeepSeek-V4 to the supported models docs page", "frank")


@pytest.fixture
def tracker(make_tracker, github, welink):
    """Three repos' issues, a rule on "deepseek", WeLink with a 30 s group wait."""

    def make(extra=None):
        for repo in REPOS:
            github.repo(repo)
        config = {
            "watch_keywords": ["deepseek"],
            "sources": {"github": {"repos": REPOS, "token_env": "GH", "api_base": github.url}},
            "notify": {"welink": {"webhook_env": "WL"}},
            **GROUPING,
            # One poll at a time, in the repos' order: which alike issue is a cluster's first
            # (its key, its summary's word order) is then the same in every run.
            "scheduler": {"poll_workers": 1},
            **(extra or {}),
        }
        return make_tracker(config, {"GH": GH_TOKEN, "WL": welink.webhook_url})

    return make


def add(github, issue) -> None:
    repo, title, user = issue
    github.add_issue(repo, title, user=user)


def listed(message: str) -> list[str]:
    return [line for line in message.splitlines() if line.startswith("- ")]


def test_five_alike_issues_about_one_model_in_three_repos_go_out_as_one_message_with_a_summary(
    tracker, github, welink
):
    t = tracker()
    assert t.once() == 0  # the baseline
    for issue in [*ALIKE, OTHER]:
        add(github, issue)
    assert t.once() == 0
    add(github, LATER)
    assert t.once(later=10) == 0  # a later poll within the group's wait
    assert welink.messages == []
    assert t.once(later=61) == 0
    messages = welink.texts()
    assert len(messages) == 2, messages
    [cluster] = [m for m in messages if len(listed(m)) > 1]
    [alone] = [m for m in messages if m is not cluster]
    alike = [title for _repo, title, _user in [*ALIKE, LATER]]
    assert cluster.startswith("[MRT] 5 alerts · New issue · github\n")
    shown = listed(cluster)  # as many as the platform's length allows, then "… and N more"
    assert len(shown) >= 3 and all(any(t[:20] in line for t in alike) for line in shown)
    # All five are in that one message: one carrier, four members, one attempt.
    assert t.sql(
        "SELECT e.title FROM delivery d JOIN alert a ON a.id = d.alert_id"
        " JOIN event e ON e.id = a.event_id"
        " WHERE d.kind = 'group' OR d.bundle_id IS NOT NULL ORDER BY e.title"
    ) == [(title,) for title in sorted(alike)]
    assert "Summary: DeepSeek V4 fails to load FP8" in cluster.splitlines()
    assert OTHER[1] in alone and not listed(alone)
    # One cluster of the incident, named by its first event.
    keys = t.sql("SELECT DISTINCT group_key FROM delivery WHERE group_key LIKE 'incident:%'")
    [(first,)] = t.sql(
        "SELECT MIN(e.id) FROM event e JOIN alert a ON a.event_id = e.id WHERE e.title = ?",
        ALIKE[0][1],
    )
    [(incident,)] = t.sql("SELECT id FROM incident")
    assert keys == [(f"incident:{incident}:cluster:{first}",)]


def test_with_clustering_off_alike_issues_go_out_as_their_groups_say(tracker, github, welink):
    t = tracker({"incidents": {"cluster_similarity": 0}})
    assert t.once() == 0
    for issue in ALIKE:
        add(github, issue)
    assert t.once() == 0
    assert t.once(later=61) == 0
    assert len(welink.texts()) == 3  # one group per repo, as without clusters
    assert t.sql("SELECT COUNT(*) FROM delivery WHERE group_key LIKE 'incident:%'") == [(0,)]


def test_a_critical_rules_hit_is_never_clustered_or_held(tracker, github, welink):
    rules = [
        {"name": "crash", "keywords": ["H100"], "critical": True, "group_by": [], "priority": 100},
        {"name": "deepseek", "keywords": ["deepseek"]},
    ]
    t = tracker({"rules": rules})
    assert t.once() == 0
    for issue in ALIKE:
        add(github, issue)
    assert t.once() == 0
    # The critical hit goes at once, alone; the other three wait for their cluster.
    [message] = welink.texts()
    assert ALIKE[3][1] in message and not listed(message)
    assert t.once(later=61) == 0
    [_, cluster] = welink.texts()
    assert len(listed(cluster)) == 3
    assert t.sql(
        "SELECT d.group_key FROM delivery d JOIN alert a ON a.id = d.alert_id"
        " JOIN event e ON e.id = a.event_id WHERE e.title = ?",
        ALIKE[3][1],
    ) == [(None,)]


def test_a_critical_rules_hit_with_a_group_is_not_clustered(tracker, github, welink):
    rules = [{"name": "deepseek", "keywords": ["deepseek"], "critical": True}]
    t = tracker({"rules": rules})
    assert t.once() == 0
    for issue in ALIKE:
        add(github, issue)
    assert t.once() == 0
    assert t.sql("SELECT COUNT(*) FROM delivery WHERE group_key LIKE 'incident:%'") == [(0,)]


def test_with_the_ai_on_a_clusters_message_carries_the_ai_summary_of_it(tracker, github, welink):
    key = "sk-local-TESTKEY-0a1b2c3d"
    with OpenAICompatSimulator(api_key=key) as llm:
        ai = {"enabled": True, "base_url": llm.base_url, "model": "qwen3-8b"}
        t = tracker({"ai": {**ai, "api_key_env": "AI_KEY", "summary_timeout_seconds": 5}})
        t.env["AI_KEY"] = key
        assert t.once() == 0
        for issue in ALIKE[:3]:
            add(github, issue)
        assert t.once() == 0
        assert t.once(later=61) == 0
        [cluster] = welink.texts()
        [asked] = [r for r in llm.chat_requests() if "3 reports:" in str(r.json())]
    assert "Summary: AI: " in cluster
    assert "Summary: DeepSeek V4" not in cluster
    for _repo, title, _user in ALIKE[:3]:
        assert title in str(asked.json())


def test_a_slow_ai_leaves_a_cluster_its_shared_words(tracker, github, welink):
    key = "sk-local-TESTKEY-0a1b2c3d"
    with OpenAICompatSimulator(api_key=key) as llm:
        llm.mode, llm.delay = "slow", 5.0
        ai = {"enabled": True, "base_url": llm.base_url, "model": "qwen3-8b"}
        t = tracker({"ai": {**ai, "api_key_env": "AI_KEY", "summary_timeout_seconds": 0.3}})
        t.env["AI_KEY"] = key
        assert t.once() == 0
        for issue in ALIKE[:3]:
            add(github, issue)
        assert t.once() == 0
        assert t.once(later=61) == 0
        [cluster] = welink.texts()
    assert "Summary: DeepSeek V4 fails to load FP8" in cluster.splitlines()


@pytest.mark.sqlite_only("no store: the summary alone")
def test_a_clusters_extractive_summary_is_the_words_most_of_its_titles_share() -> None:
    from mrt_engine.incident_clusters import shared_words

    titles = [title for _repo, title, _user in ALIKE]
    assert shared_words(titles) == "DeepSeek V4 fails to load FP8"
    assert shared_words(["Qwen3 crash", "Totally different"]) == "Qwen3 crash"


@pytest.mark.sqlite_only("no store: the rendering alone")
def test_a_clusters_summary_line_is_in_the_channels_locale_and_stays_one_clean_line() -> None:
    from dataclasses import replace

    from mrt_engine.notify.message import MessageContext, render_bundle

    items = tuple(
        MessageContext("issue_opened", "github:a/b:issues", "a/b", t, f"https://x/{i}", str(i))
        for i, t in enumerate(["DeepSeek-V4 加载 FP8 失败", "DeepSeek-V4 FP8 加载失败"])
    )
    cluster = "DeepSeek V4\x1b[31m 加载\n<b>失败</b>"
    context = replace(items[0], bundle="group", items=items, cluster=cluster)
    text = render_bundle(context, None, "zh")
    [line] = [ln for ln in text.splitlines() if ln.startswith("摘要")]
    assert line.startswith("摘要：DeepSeek V4") and "\x1b" not in line
    assert len(text.splitlines()) == 5  # heading, rules, summary, two items


def test_a_clusters_e_mail_replies_in_its_incidents_thread(tracker, github, smtp):
    """A cluster's message is about one incident, like one alert's: it joins the incident's
    e-mail thread (other bundles carry several incidents' alerts and stay on their own)."""
    import email
    import email.policy

    t = tracker(
        {
            "notify": {
                "email": {
                    "smtp_host": smtp.host,
                    "smtp_port": smtp.port,
                    "from_addr": "mrt@tracker.example",
                    "to_list": ["oncall@example.com"],
                    "ca_file": smtp.ca_file,
                }
            }
        }
    )
    assert t.once() == 0
    add(github, OTHER)  # the incident's first alert, alone
    assert t.once() == 0
    assert t.once(later=61) == 0
    for issue in ALIKE[:3]:
        add(github, issue)
    assert t.once(later=120) == 0
    assert t.once(later=400) == 0
    root, cluster = (
        email.message_from_bytes(m.original_content, policy=email.policy.default)
        for m in smtp.messages
    )
    assert root["Message-ID"].startswith("<mrt.incident.")
    assert cluster["In-Reply-To"] == root["Message-ID"] == cluster["References"]
