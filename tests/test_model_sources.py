"""HuggingFace and ModelScope organisation model lists: baseline, added, updated, removed."""

from __future__ import annotations

import json

import pytest

from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.modelscope import ModelScopeSimulator


@pytest.fixture
def hf_tracker(make_tracker, hf, welink):
    def make(extra=None):
        config = {
            "sources": {
                "huggingface": {
                    "orgs": ["deepseek-ai"],
                    "api_base": hf.url,
                    "page_size": 3,
                    "token_env": "HF",
                }
            },
            "rules": [{"name": "models", "source": ["huggingface", "modelscope"]}],
            "notify": {"welink": {"webhook_env": "WL"}},
            **(extra or {}),
        }
        return make_tracker(config, {"WL": welink.webhook_url, "HF": "hf_TESTTOKEN"})

    return make


def alerted(tracker) -> list[tuple[str, str]]:
    return tracker.sql(
        "SELECT e.event_type, e.resource_id FROM alert a JOIN event e ON e.id = a.event_id ORDER BY a.id"
    )


def test_huggingface_baseline_then_added_updated_removed(hf_tracker, hf, welink):
    for i in range(7):
        hf.put_model(f"deepseek-ai/DeepSeek-V{i}")
    hf.put_model("deepseek-ai/internal-eval", private=True)
    hf.put_model("Qwen/Qwen3-8B")
    tracker = hf_tracker()
    assert tracker.once() == 0
    assert alerted(tracker) == []
    # Private models are listed with the token; other orgs never are.
    assert tracker.sql("SELECT COUNT(*) FROM event WHERE baseline = 1") == [(8,)]
    hf.put_model("deepseek-ai/DeepSeek-V8")
    hf.put_model("deepseek-ai/DeepSeek-V2")
    hf.remove_model("deepseek-ai/DeepSeek-V0")
    tracker.once()
    assert sorted(alerted(tracker)) == [
        ("model_added", "deepseek-ai/DeepSeek-V8"),
        ("model_removed", "deepseek-ai/DeepSeek-V0"),
        ("model_updated", "deepseek-ai/DeepSeek-V2"),
    ]
    updated = next(t for t in welink.texts() if "Model updated" in t)
    assert "https://" not in updated or "DeepSeek-V2" in updated
    assert updated.endswith(f"{hf.url}/deepseek-ai/DeepSeek-V2")
    # Pages came through the Link cursor; the expand fields were asked for.
    first = hf.requests_to("/api/models")[0]
    assert set(first.query["expand"]) >= {
        "sha",
        "lastModified",
        "createdAt",
        "pipeline_tag",
        "library_name",
        "tags",
        "gated",
        "private",
    }
    assert any("cursor" in r.query for r in hf.requests_to("/api/models"))
    # Nothing changed: the first page answers 304 and nothing else is asked.
    before = len(hf.requests)
    tracker.once()
    assert len(hf.requests) == before + 1 and len(alerted(tracker)) == 3


def test_huggingface_sweep_sees_a_removal_below_the_first_page(hf_tracker, hf):
    for i in range(7):
        hf.put_model(f"deepseek-ai/M{i}")
    tracker = hf_tracker(
        {
            "sources": {
                "huggingface": {
                    "orgs": ["deepseek-ai"],
                    "api_base": hf.url,
                    "page_size": 3,
                    "sweep_interval_seconds": 1,
                }
            }
        }
    )
    tracker.once()
    oldest = min(hf.models.values(), key=lambda m: m["lastModified"])["id"]
    hf.remove_model(oldest)
    import time

    time.sleep(1.1)
    tracker.once()
    assert alerted(tracker) == [("model_removed", oldest)]


def test_huggingface_429_with_ratelimit_header_is_waited_out(hf_tracker, hf):
    hf.put_model("deepseek-ai/A")
    tracker = hf_tracker()
    tracker.once()
    hf.put_model("deepseek-ai/B")
    hf.inject(
        Fault(429, '{"error": "rate limited"}', {"RateLimit": '"api";r=0;t=1'}, path="/api/models")
    )
    assert tracker.once() == 0
    assert alerted(tracker) == [("model_added", "deepseek-ai/B")]


def test_a_listing_that_suddenly_shrinks_is_refused(hf_tracker, hf):
    for i in range(10):
        hf.put_model(f"deepseek-ai/M{i}")
    tracker = hf_tracker()
    tracker.once()
    hf.inject(Fault(200, json.dumps([{"id": "deepseek-ai/M1", "sha": "x"}]), path="/api/models"))
    assert tracker.once() == 1
    error = tracker.sql("SELECT last_error FROM source_state")[0][0]
    assert "shrank from 10 to 1 model at once" in error
    assert alerted(tracker) == []


@pytest.mark.parametrize("legacy", [False, True])
def test_modelscope_openapi_and_legacy_fallback(make_tracker, welink, legacy):
    with ModelScopeSimulator(legacy_only=legacy) as ms:
        for i in range(4):
            ms.put_model(f"deepseek-ai/DeepSeek-R{i}")
        tracker = make_tracker(
            {
                "sources": {
                    "modelscope": {"orgs": ["deepseek-ai"], "api_base": ms.url, "page_size": 2}
                },
                "rules": [{"name": "models", "source": ["modelscope"]}],
                "notify": {"welink": {"webhook_env": "WL"}},
            },
            {"WL": welink.webhook_url},
        )
        assert tracker.once() == 0
        ms.put_model("deepseek-ai/DeepSeek-R9")
        ms.put_model("deepseek-ai/DeepSeek-R1")
        ms.remove_model("deepseek-ai/DeepSeek-R3")
        assert tracker.once() == 0
        assert sorted(alerted(tracker)) == [
            ("model_added", "deepseek-ai/DeepSeek-R9"),
            ("model_removed", "deepseek-ai/DeepSeek-R3"),
            ("model_updated", "deepseek-ai/DeepSeek-R1"),
        ]
        methods = {(r.method, r.path) for r in ms.requests}
        if legacy:
            assert ("PUT", "/api/v1/models/") in methods
            cursor = json.loads(tracker.sql("SELECT cursor FROM source_state")[0][0])
            assert cursor["api"] == "legacy"
        else:
            assert methods == {("GET", "/openapi/v1/models")}
        assert any(t.endswith(f"{ms.url}/models/deepseek-ai/DeepSeek-R9") for t in welink.texts())
