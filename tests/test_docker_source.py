"""Docker Hub images: image_tag_pushed per tag and digest, re-pushes are news, baseline first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.dockerhub import DockerHubSimulator


@pytest.fixture
def hub() -> Iterator[DockerHubSimulator]:
    sim = DockerHubSimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def tracker(make_tracker, hub, welink):
    return make_tracker(
        {
            "sources": {
                "docker": {
                    "images": ["vllm/vllm-openai", "lmsysorg/sglang"],
                    "api_base": hub.url,
                    "page_size": 2,
                    "max_pages": 2,
                }
            },
            "notify": {"welink": {"webhook_env": "WL"}},
            "rules": [{"name": "images", "event_type": ["image_tag_pushed"]}],
        },
        {"WL": welink.webhook_url},
    )


def new_events(tracker) -> list[tuple[str, str]]:
    return tracker.sql(
        "SELECT source_key, event_id FROM event WHERE source = 'docker' AND baseline = 0 ORDER BY id"
    )


def test_new_tags_and_re_pushed_tags_alert_once(tracker, hub, welink):
    for tag in ("v0.9.0", "v0.10.0", "latest"):
        hub.push("vllm/vllm-openai", tag)
    hub.push("lmsysorg/sglang", "v0.5.0")
    assert tracker.once() == 0
    assert tracker.sql("SELECT COUNT(*) FROM event WHERE baseline = 1")[0][0] == 4
    assert welink.texts() == []

    hub.push("vllm/vllm-openai", "v0.11.0")
    digest = hub.push("vllm/vllm-openai", "latest", content="v0.11.0")
    assert tracker.once() == 0
    assert new_events(tracker) == [
        ("docker:vllm/vllm-openai", f"latest@{digest}"),
        (
            "docker:vllm/vllm-openai",
            f"v0.11.0@{hub.repos['vllm/vllm-openai']['v0.11.0']['digest']}",
        ),
    ]
    assert any("vllm/vllm-openai:v0.11.0 pushed to Docker Hub" in t for t in welink.texts())

    assert tracker.once() == 0  # the same tags again: nothing new
    assert len(new_events(tracker)) == 2
    # Only two pages of two tags were read: the tag beyond them is still known, not removed.
    known = tracker.sql(
        "SELECT cursor FROM source_state WHERE source_key = 'docker:vllm/vllm-openai'"
    )[0][0]
    assert "v0.9.0" in known


def test_bad_answers_are_recorded_and_the_cursor_kept(tracker, hub):
    hub.push("vllm/vllm-openai", "v1")
    hub.push("lmsysorg/sglang", "v1")
    tracker.once()
    before = tracker.sql(
        "SELECT cursor FROM source_state WHERE source_key = 'docker:vllm/vllm-openai'"
    )
    hub.push("vllm/vllm-openai", "v2")
    hub.push("lmsysorg/sglang", "v2")
    hub.inject(Fault(200, '{"results": [{"name": "v2"}]}', path="/v2/repositories/vllm", times=5))
    assert tracker.once() == 1
    after = tracker.sql(
        "SELECT cursor, last_error FROM source_state WHERE source_key = 'docker:vllm/vllm-openai'"
    )[0]
    assert after[0] == before[0][0] and "without a digest" in after[1]
    assert [e[0] for e in new_events(tracker)] == ["docker:lmsysorg/sglang"]


def test_an_image_name_must_be_namespace_slash_repository(make_tracker):
    tracker = make_tracker({"sources": {"docker": {"images": ["vllm"]}}})
    result = tracker.cli("check")
    assert result.returncode == 2 and "sources.docker.images" in result.stdout + result.stderr
