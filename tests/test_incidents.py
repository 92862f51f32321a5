"""Incidents (issue 13): one model family's alerted events across sources, with a timeline."""

from __future__ import annotations

import pytest

from tests.conftest import GH_TOKEN

pytestmark = pytest.mark.both_backends


@pytest.fixture
def tracker(make_tracker, hf, modelscope, github, welink):
    """HuggingFace and ModelScope orgs of DeepSeek and Qwen, vLLM's pulls and issues; a rule on
    "deepseek" and "qwen", alerting to WeLink."""

    def make(extra=None):
        github.repo("vllm-project/vllm")
        config = {
            "watch_keywords": ["deepseek", "qwen"],
            "sources": {
                "huggingface": {"orgs": ["deepseek-ai", "Qwen"], "api_base": hf.url},
                "modelscope": {"orgs": ["deepseek-ai"], "api_base": modelscope.url},
                "github": {
                    "repos": ["vllm-project/vllm"],
                    "token_env": "GH",
                    "api_base": github.url,
                },
            },
            "notify": {"welink": {"webhook_env": "WL"}},
            **(extra or {}),
        }
        return make_tracker(config, {"GH": GH_TOKEN, "WL": welink.webhook_url})

    return make


def incidents(tracker) -> list[tuple]:
    return tracker.sql(
        "SELECT family, name, events, sources, first_source FROM incident ORDER BY id"
    )


def timeline(tracker, family: str) -> list[tuple]:
    return tracker.sql(
        "SELECT e.title, ie.source, ie.position, ie.source_position, ie.new_source"
        " FROM incident_event ie JOIN incident i ON i.id = ie.incident_id"
        " JOIN event e ON e.id = ie.event_id WHERE i.family = ? ORDER BY ie.position",
        family,
    )


def test_one_model_on_huggingface_modelscope_and_in_a_vllm_pull_request_is_one_incident(
    tracker, hf, modelscope, github
):
    t = tracker()
    assert t.once() == 0  # the baseline
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    hf.put_model("Qwen/Qwen3-235B-A22B-FP8")
    assert t.once() == 0
    modelscope.put_model("deepseek-ai/DeepSeek-V3.2-Exp-Base")
    assert t.once() == 0
    github.add_issue("vllm-project/vllm", "[Model] Support deepseek v3.2", pull=True)
    github.add_issue("vllm-project/vllm", "Qwen2.5 tokenizer is slow", body="qwen")
    github.add_issue("vllm-project/vllm", "DeepSeek docs: fix a typo")  # alerted, no model
    assert t.once() == 0
    github.add_issue("vllm-project/vllm", "[Bugfix] DeepSeek-V3.2-Exp FP8 crash", pull=True)
    assert t.once() == 0

    assert incidents(t) == [
        ("deepseek-v3.2", "DeepSeek-V3.2", 4, 3, "huggingface:deepseek-ai:models"),
        ("qwen3", "Qwen3", 1, 1, "huggingface:Qwen:models"),
        ("qwen2.5", "Qwen2.5", 1, 1, "github:vllm-project/vllm:issues"),
    ]
    assert timeline(t, "deepseek-v3.2") == [
        ("deepseek-ai/DeepSeek-V3.2-Exp", "huggingface:deepseek-ai:models", 1, 1, 1),
        ("deepseek-ai/DeepSeek-V3.2-Exp-Base", "modelscope:deepseek-ai:models", 2, 2, 1),
        ("[Model] Support deepseek v3.2", "github:vllm-project/vllm:pulls", 3, 3, 1),
        ("[Bugfix] DeepSeek-V3.2-Exp FP8 crash", "github:vllm-project/vllm:pulls", 4, 3, 0),
    ]
    # Only alerted events are linked, each once.
    assert t.sql(
        "SELECT COUNT(*) FROM incident_event ie LEFT JOIN alert a ON a.id = ie.alert_id"
        " WHERE a.event_id IS NULL OR a.event_id <> ie.event_id"
    ) == [(0,)]


def test_events_that_alert_nothing_join_no_incident(tracker, hf):
    t = tracker({"watch_keywords": ["qwen"]})
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")  # stored, matches no rule
    assert t.once() == 0
    assert t.sql("SELECT COUNT(*) FROM event WHERE title LIKE '%V3.2%'") == [(1,)]
    assert incidents(t) == []


def test_a_family_seen_again_after_the_window_opens_a_new_incident_and_a_restart_keeps_them(
    tracker, hf, modelscope
):
    t = tracker({"incidents": {"window_days": 2}})
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    assert t.once() == 0
    modelscope.put_model("deepseek-ai/DeepSeek-V3.2")
    assert t.once(later=86400) == 0  # a day later, a new engine: the same incident
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Speciale")
    assert t.once(later=3 * 86400) == 0  # past the window: a new one
    assert incidents(t) == [
        ("deepseek-v3.2", "DeepSeek-V3.2", 2, 2, "huggingface:deepseek-ai:models"),
        ("deepseek-v3.2", "DeepSeek-V3.2", 1, 1, "huggingface:deepseek-ai:models"),
    ]


def test_an_incident_window_that_is_not_a_positive_number_of_days_is_a_config_error(tracker):
    t = tracker({"incidents": {"window_days": 0}})
    result = t.cli("run", "--once")
    assert result.returncode == 2
    assert "incidents.window_days" in result.stderr
