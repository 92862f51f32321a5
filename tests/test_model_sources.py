"""HuggingFace and ModelScope organisation model lists: baseline, added, updated, removed."""

from __future__ import annotations

import json

import pytest

from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.modelscope import ModelScopeSimulator, iso_stamp


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
    tracker.once(later=1.1)  # the sweep interval (1 s) has passed
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


@pytest.fixture
def ms_tracker(make_tracker, modelscope, welink):
    return make_tracker(
        {
            "sources": {
                "modelscope": {"orgs": ["deepseek-ai"], "api_base": modelscope.url, "page_size": 2}
            },
            "rules": [{"name": "models", "source": ["modelscope"]}],
            "notify": {"welink": {"webhook_env": "WL"}},
        },
        {"WL": welink.webhook_url},
    )


def test_a_modelscope_api_switch_announces_no_model_again(ms_tracker, modelscope):
    # The OpenAPI writes ISO text, the legacy API epoch seconds: the same instants.
    for i in range(4):
        modelscope.put_model(f"deepseek-ai/DeepSeek-R{i}")
    assert ms_tracker.once() == 0
    modelscope.legacy_only = True  # the OpenAPI now answers 404
    assert ms_tracker.once() == 0
    assert alerted(ms_tracker) == []
    assert json.loads(ms_tracker.sql("SELECT cursor FROM source_state")[0][0])["api"] == "legacy"
    # A real change is still news after the switch.
    modelscope.put_model("deepseek-ai/DeepSeek-R2")
    assert ms_tracker.once() == 0
    assert alerted(ms_tracker) == [("model_updated", "deepseek-ai/DeepSeek-R2")]


def rewrite_cursor(tracker, change) -> None:
    with tracker.store() as store:
        (raw,) = store.db.execute_sql("SELECT cursor FROM source_state").fetchone()
        cursor = json.loads(raw)
        change(cursor)
        store.db.execute_sql("UPDATE source_state SET cursor = ?", (json.dumps(cursor),))


@pytest.mark.parametrize("legacy", [False, True])
def test_revisions_stored_as_raw_upstream_text_are_not_news_after_an_upgrade(
    ms_tracker, modelscope, legacy
):
    modelscope.legacy_only = legacy
    stamps = {}
    for i in range(3):
        model = modelscope.put_model(f"deepseek-ai/DeepSeek-R{i}")
        stamps[model["id"]] = model["last_modified"]
    assert ms_tracker.once() == 0

    def raw_revisions(cursor):  # what earlier versions stored: the upstream's own text
        for model_id, entry in cursor["models"].items():
            epoch = stamps[model_id]
            entry["rev"] = f"modified:{epoch if legacy else iso_stamp(epoch)}"

    rewrite_cursor(ms_tracker, raw_revisions)
    assert ms_tracker.once() == 0
    assert alerted(ms_tracker) == []
    revisions = json.loads(ms_tracker.sql("SELECT cursor FROM source_state")[0][0])["models"]
    assert all(v["rev"].startswith("modified:20") for v in revisions.values())


def test_a_huggingface_model_without_sha_is_not_news_when_its_time_is_written_differently(
    hf_tracker, hf
):
    hf.put_model("deepseek-ai/DeepSeek-V3")
    listing = [{"id": "deepseek-ai/DeepSeek-V3", "lastModified": "2026-11-20T08:00:00.000Z"}]
    hf.inject(Fault(200, json.dumps(listing), path="/api/models"))
    tracker = hf_tracker()
    assert tracker.once() == 0
    listing[0]["lastModified"] = "2026-11-20T16:00:00+08:00"  # the same instant
    hf.inject(Fault(200, json.dumps(listing), path="/api/models"))
    assert tracker.once() == 0
    assert alerted(tracker) == []
    listing[0]["lastModified"] = "2026-11-20T08:05:00Z"  # a real change
    hf.inject(Fault(200, json.dumps(listing), path="/api/models"))
    assert tracker.once() == 0
    assert alerted(tracker) == [("model_updated", "deepseek-ai/DeepSeek-V3")]


def test_a_modelscope_model_keeps_its_tasks_apart_from_its_tags(ms_tracker, modelscope):
    ms_tracker.once()
    modelscope.put_model(
        "deepseek-ai/DeepSeek-V9", tasks=("text-generation", "chat"), tags=("moe",)
    )
    ms_tracker.once()
    ((labels, raw),) = ms_tracker.sql("SELECT labels, raw FROM event WHERE baseline = 0")
    assert json.loads(labels) == ["text-generation", "chat", "moe"]
    assert json.loads(raw)["tasks"] == "text-generation, chat"
