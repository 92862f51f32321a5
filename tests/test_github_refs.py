"""GitHub releases and tags: release_published / tag_created once each, baseline first, 304 when
unchanged, Link pagination followed."""

from __future__ import annotations

from mrt_engine.simulators.base import Fault


def make(gh_tracker):
    return gh_tracker(
        {
            "sources": {
                "github": {
                    "monitor": {"issues": False, "pulls": False, "releases": True, "tags": True},
                    "per_page": 2,
                }
            },
            "rules": [{"name": "refs", "event_type": ["release_published", "tag_created"]}],
        }
    )


def new(tracker):
    return tracker.sql(
        "SELECT source_key, event_type, event_id, labels FROM event WHERE baseline = 0 ORDER BY id"
    )


def test_releases_and_tags_alert_once_after_a_baseline(gh_tracker, github, welink):
    for version in ("v0.9.0", "v0.10.0", "v0.10.1"):
        github.add_release("vllm-project/vllm", version, body="## Highlights\n* DeepSeek support")
    tracker = make(gh_tracker)
    assert tracker.once() == 0
    assert tracker.sql("SELECT COUNT(*) FROM event WHERE baseline = 1")[0][0] == 6
    assert welink.texts() == []

    github.add_release("vllm-project/vllm", "v0.11.0rc1", name="vLLM 0.11 RC1", prerelease=True)
    github.add_tag("vllm-project/vllm", "nightly-2026-11-22")
    assert tracker.once() == 0
    got = {(r[1], r[2]) for r in new(tracker)}
    assert got == {
        ("release_published", "v0.11.0rc1"),
        ("tag_created", "v0.11.0rc1"),
        ("tag_created", "nightly-2026-11-22"),
    }
    release = next(r for r in new(tracker) if r[1] == "release_published")
    assert '"prerelease"' in release[3]
    assert any("vllm-project/vllm vLLM 0.11 RC1 (prerelease)" in t for t in welink.texts())

    requests_before = len(github.requests_to("/repos/vllm-project/vllm/"))
    assert tracker.once() == 0
    assert len(new(tracker)) == 3
    polls = tracker.sql("SELECT outcome FROM poll_metric ORDER BY id DESC LIMIT 2")
    assert {p[0] for p in polls} == {"not_modified"}
    assert len(github.requests_to("/repos/vllm-project/vllm/")) == requests_before + 2


def test_pages_are_followed_by_the_link_header(gh_tracker, github):
    for n in range(5):
        github.add_tag("vllm-project/vllm", f"v0.{n}.0")
    tracker = make(gh_tracker)
    tracker.once()
    tags = tracker.sql("SELECT event_id FROM event WHERE event_type = 'tag_created'")
    assert len(tags) == 5  # per_page 2: three pages
    assert github.requests_to("/repositories/")


def test_a_malformed_release_list_keeps_the_cursor(gh_tracker, github):
    github.add_release("vllm-project/vllm", "v1")
    tracker = make(gh_tracker)
    tracker.once()
    github.add_release("vllm-project/vllm", "v2")
    github.inject(
        Fault(200, '[{"name": "no tag"}]', path="/repos/vllm-project/vllm/releases", times=5)
    )
    assert tracker.once() == 1
    error = tracker.sql(
        "SELECT last_error FROM source_state WHERE source_key = 'github:vllm-project/vllm:releases'"
    )[0][0]
    assert "without a 'tag_name'" in error
    assert {r[1] for r in new(tracker)} == {"tag_created"}
