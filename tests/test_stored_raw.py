"""An event's raw JSON holds the upstream's facts its columns do not: what trace needs, not the
whole upstream object, and no fact twice."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from mrt_engine.batch import commit_events
from mrt_engine.config import validate
from mrt_engine.events import TrackerEvent
from mrt_engine.rules import RuleSet
from mrt_engine.sources.github import GitHubIssues
from mrt_engine.sources.huggingface import HuggingFaceModels
from mrt_engine.store.db import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent / "perf"))
from bench_pipeline import synthetic_items

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def stored_raws(path: Path, events: list[TrackerEvent]) -> list[str | None]:
    """The raw column of ``events`` as a poll stores them."""
    store = open_store(path)
    try:
        with store.write():
            commit_events(store, events, RuleSet.compile([], []), NOW)
        return [r[0] for r in store.db.execute_sql("SELECT raw FROM event ORDER BY id")]
    finally:
        store.close()


def test_a_github_issue_stores_a_few_facts_not_its_whole_object(tmp_path):
    settings = validate({"sources": {"github": {"repos": ["vllm-project/vllm"]}}})
    source = GitHubIssues(
        "vllm-project/vllm", "issues", settings.source_sections()["github"], None, 60
    )
    items = synthetic_items(500, "realistic", seed=3)  # the benchmark's realistic issues
    events = [e for item in items for e in source.item_events(item, NOW)]
    raws = stored_raws(tmp_path / "mrt.sqlite3", events)
    per_event = sum(len(r.encode()) for r in raws) / len(raws)
    assert per_event < 100  # 343 bytes before: title, URL, user, labels and nulls twice over
    first = json.loads(raws[0])
    assert first == {"number": 1, "state": "open", "updated_at": items[0]["updated_at"]}


def test_a_closed_pull_request_keeps_why_it_closed(tmp_path):
    settings = validate({"sources": {"github": {"repos": ["vllm-project/vllm"]}}})
    source = GitHubIssues(
        "vllm-project/vllm", "pulls", settings.source_sections()["github"], None, 60
    )
    item = {
        "number": 7,
        "title": "[Model] DeepSeek-V4",
        "html_url": "https://github.com/vllm-project/vllm/pull/7",
        "state": "closed",
        "state_reason": None,
        "draft": False,
        "user": {"login": "alice", "avatar_url": "https://avatars/x"},
        "labels": [{"name": "new-model"}],
        "body": "Adds it.",
        "comments": 12,
        "created_at": "2026-11-01T00:00:00Z",
        "updated_at": "2026-11-03T00:00:00Z",
        "closed_at": "2026-11-03T00:00:00Z",
        "pull_request": {"merged_at": "2026-11-03T00:00:00Z"},
    }
    events = source.item_events(item, NOW)
    raws = [json.loads(r) for r in stored_raws(tmp_path / "mrt.sqlite3", events)]
    assert raws[-1] == {
        "number": 7,
        "state": "closed",
        "draft": False,
        "updated_at": "2026-11-03T00:00:00Z",
        "closed_at": "2026-11-03T00:00:00Z",
        "merged_at": "2026-11-03T00:00:00Z",
    }


def test_a_huggingface_model_keeps_its_revision_not_its_tags_and_counters(tmp_path):
    settings = validate({"sources": {"huggingface": {"orgs": ["deepseek-ai"]}}})
    source = HuggingFaceModels(
        "deepseek-ai", settings.source_sections()["huggingface"], "https://hf.test", None, 60
    )
    tags = ["transformers", "safetensors", "deepseek_v3", "text-generation", "conversational"]
    tags += [f"arxiv:2412.{n:05d}" for n in range(20)] + ["license:mit", "region:us"]
    model = source._model(
        {
            "id": "deepseek-ai/DeepSeek-V3",
            "sha": "86518964eaef84e3fdd98e9861759a1384f9c29d",
            "lastModified": "2026-11-30T10:00:00.000Z",
            "createdAt": "2024-12-25T00:00:00.000Z",
            "pipeline_tag": "text-generation",
            "library_name": "transformers",
            "tags": tags,
            "gated": False,
            "private": False,
            "downloads": 512345,
            "likes": 3900,
        }
    )
    assert model.raw == {
        "sha": "86518964eaef84e3fdd98e9861759a1384f9c29d",
        "lastModified": "2026-11-30T10:00:00.000Z",
        "createdAt": "2024-12-25T00:00:00.000Z",
        "pipeline_tag": "text-generation",
        "library_name": "transformers",
        "gated": False,
        "private": False,
    }


def test_raw_leaves_out_nulls_and_what_the_columns_already_hold(tmp_path):
    event = TrackerEvent(
        source="github",
        source_key="github:vllm-project/vllm:releases",
        resource_type="repo_release",
        resource_id="vllm-project/vllm",
        event_type="release_published",
        event_id="v0.9.0",
        title="vllm-project/vllm v0.9.0 (prerelease)",
        url="https://github.com/vllm-project/vllm/releases/tag/v0.9.0",
        author="simon",
        labels=("prerelease",),
        observed_at=NOW,
        raw={
            "id": 123,
            "tag_name": "v0.9.0",  # the event id
            "name": "vLLM 0.9.0",
            "html_url": "https://github.com/vllm-project/vllm/releases/tag/v0.9.0",  # the url
            "user": "simon",  # the author
            "flags": ["prerelease"],  # the labels
            "draft": None,
            "prerelease": True,
        },
    )
    [raw] = stored_raws(tmp_path / "mrt.sqlite3", [event])
    assert json.loads(raw) == {"id": 123, "name": "vLLM 0.9.0", "prerelease": True}
