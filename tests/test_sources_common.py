"""What every newer source must do alike: wait out a rate limit without moving its cursor, and
take a removal upstream quietly (no false "new" event, no error)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.dockerhub import DockerHubSimulator
from mrt_engine.simulators.feeds import FeedSimulator
from mrt_engine.simulators.github import GitHubSimulator
from mrt_engine.simulators.huggingface import HuggingFaceSimulator
from mrt_engine.simulators.modelhub import ModelHubSimulator
from mrt_engine.simulators.modelscope import ModelScopeSimulator
from mrt_engine.simulators.osv import OsvSimulator
from mrt_engine.simulators.pypi import PyPISimulator

# The suite runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends


@dataclass
class Case:
    simulator: Callable[[], Any]
    config: Callable[[Any], dict]
    seed: Callable[[Any], None]  # two items
    remove: Callable[[Any], None]  # one of them disappears upstream
    path: str  # where the rate limit hits
    removal_event: str | None = None  # model lists announce removals; item sets do not
    # One of the seeded items turns into something the source cannot process, and a new good
    # item appears (None: the platform's parser leaves nothing to break per item).
    spoil: Callable[[Any], str] | None = None  # returns the spoiled item's upstream id
    fresh: Callable[[Any], None] | None = None


def _feed_config(sim):
    return {"feeds": [{"name": "blog", "url": sim.feed("blog")}]}


def _feed_seed(sim):
    sim.add_entry("blog", "one", entry_id="1")
    sim.add_entry("blog", "two", entry_id="2")


def _spoil(item: dict, **changes: Any) -> str:
    """Change an upstream item in place; its upstream id, for the quarantine."""
    item.update(changes)
    return item.get("tag_name") or item.get("id") or item.get("name")


CASES = {
    "huggingface": Case(
        HuggingFaceSimulator,
        lambda sim: {"huggingface": {"orgs": ["Qwen"], "api_base": sim.url}},
        lambda sim: (sim.put_model("Qwen/a"), sim.put_model("Qwen/b")),
        lambda sim: sim.remove_model("Qwen/b"),
        "/api/models",
        removal_event="model_removed",
        spoil=lambda sim: _spoil(sim.models["Qwen/b"], sha=None, lastModified="garbage"),
        fresh=lambda sim: sim.put_model("Qwen/c"),
    ),
    "modelscope": Case(
        ModelScopeSimulator,
        lambda sim: {"modelscope": {"orgs": ["Qwen"], "api_base": sim.url}},
        lambda sim: (sim.put_model("Qwen/a"), sim.put_model("Qwen/b")),
        lambda sim: sim.remove_model("Qwen/b"),
        "/openapi/",
        removal_event="model_removed",
        spoil=lambda sim: _spoil(sim.models["Qwen/b"], tasks=5),
        fresh=lambda sim: sim.put_model("Qwen/c"),
    ),
    "pypi": Case(
        PyPISimulator,
        lambda sim: {"pypi": {"packages": ["vllm"], "api_base": sim.url}},
        lambda sim: (sim.release("vllm", "1.0"), sim.release("vllm", "1.1")),
        lambda sim: sim.projects["vllm"].pop("1.1"),
        "/pypi/",
        spoil=lambda sim: (sim.projects["vllm"].update({"1.1": None}), "1.1")[1],
        fresh=lambda sim: sim.release("vllm", "1.2"),
    ),
    "docker": Case(
        DockerHubSimulator,
        lambda sim: {"docker": {"images": ["vllm/vllm-openai"], "api_base": sim.url}},
        lambda sim: (sim.push("vllm/vllm-openai", "v1"), sim.push("vllm/vllm-openai", "v2")),
        lambda sim: sim.repos["vllm/vllm-openai"].pop("v2"),
        "/v2/",
        spoil=lambda sim: _spoil(sim.repos["vllm/vllm-openai"]["v2"], digest=None, images=[]),
        fresh=lambda sim: sim.push("vllm/vllm-openai", "v3"),
    ),
    "feeds": Case(
        FeedSimulator,
        _feed_config,
        _feed_seed,
        lambda sim: sim.feeds["blog"]["entries"].pop(),
        "/feeds/",
    ),
    "osv": Case(
        lambda: OsvSimulator(page_size=5),
        lambda sim: {"osv": {"packages": ["vllm"], "api_base": sim.url}},
        lambda sim: (sim.publish("vllm", "GHSA-1", "one"), sim.publish("vllm", "GHSA-2", "two")),
        lambda sim: sim.vulns[("PyPI", "vllm")].pop(),
        "/v1/",
        spoil=lambda sim: _spoil(sim.vulns[("PyPI", "vllm")][1], aliases=5),
        fresh=lambda sim: sim.publish("vllm", "GHSA-3", "three"),
    ),
    "github-releases": Case(
        GitHubSimulator,
        lambda sim: {
            "github": {
                "repos": ["vllm-project/vllm"],
                "api_base": sim.url,
                "monitor": {"issues": False, "pulls": False, "releases": True},
            }
        },
        lambda sim: (
            sim.add_release("vllm-project/vllm", "v1"),
            sim.add_release("vllm-project/vllm", "v2"),
        ),
        lambda sim: sim.repos["vllm-project/vllm"].releases.pop(0),
        "/repos/",
        spoil=lambda sim: _spoil(sim.repos["vllm-project/vllm"].releases[0], html_url=None),
        fresh=lambda sim: sim.add_release("vllm-project/vllm", "v3"),
    ),
    "modelhub": Case(
        ModelHubSimulator,
        lambda sim: {"modelhub": {"api_base": sim.url}},
        lambda sim: (sim.publish("svc", "1.0"), sim.publish("svc", "1.1")),
        lambda sim: sim.services["svc"]["versions"].pop(0),
        "/api/",
        spoil=lambda sim: (sim.services["svc"]["versions"][0].update(version=11), "svc")[1],
        fresh=lambda sim: sim.publish("other", "1.0"),
    ),
}


@pytest.fixture(params=list(CASES))
def case(request, make_tracker):
    spec = CASES[request.param]
    sim = spec.simulator().start()
    sources = spec.config(sim)
    tracker = make_tracker({"sources": sources})
    yield spec, sim, tracker
    sim.stop()


@pytest.fixture(params=[name for name, spec in CASES.items() if spec.spoil])
def spoilable(request, make_tracker):
    spec = CASES[request.param]
    sim = spec.simulator().start()
    yield spec, sim, make_tracker({"sources": spec.config(sim)})
    sim.stop()


def test_a_long_rate_limit_fails_the_poll_keeps_the_cursor_and_backs_off(case):
    spec, sim, tracker = case
    spec.seed(sim)
    assert tracker.once() == 0
    cursor = tracker.sql("SELECT cursor FROM source_state")[0][0]
    sim.inject(
        Fault(
            429,
            '{"message": "slow down"}',
            headers={"Retry-After": "600"},
            path=spec.path,
            times=50,
        )
    )
    assert tracker.once() == 1
    after, error, backoff = tracker.sql(
        "SELECT cursor, last_error, backoff_until FROM source_state"
    )[0]
    assert after == cursor
    assert "429" in error or "rate" in error.lower()
    assert backoff is not None


def test_an_item_removed_upstream_is_reported_only_where_it_means_something(case):
    spec, sim, tracker = case
    spec.seed(sim)
    assert tracker.once() == 0
    spec.remove(sim)
    assert tracker.once() == 0
    types = [r[0] for r in tracker.sql("SELECT event_type FROM event WHERE baseline = 0")]
    assert types == ([spec.removal_event] if spec.removal_event else [])
    assert tracker.sql("SELECT last_error FROM source_state")[0][0] is None


@pytest.mark.parametrize(
    "fault",
    [Fault(503, times=50), Fault(kind="malformed", times=50), Fault(kind="truncated", times=50)],
    ids=["5xx", "malformed", "truncated"],
)
def test_server_errors_and_broken_bodies_fail_the_poll_and_keep_the_cursor(case, fault):
    spec, sim, tracker = case
    spec.seed(sim)
    assert tracker.once() == 0
    cursor = tracker.sql("SELECT cursor FROM source_state")[0][0]
    # A fresh copy: the parameter is shared by every case, and a fault counts down its uses.
    sim.inject(dataclasses.replace(fault, path=spec.path))
    assert tracker.once() == 1
    after, error, failures = tracker.sql(
        "SELECT cursor, last_error, consecutive_failures FROM source_state"
    )[0]
    assert after == cursor and error and failures == 1
    sim.clear_faults()
    tracker.sql("UPDATE source_state SET backoff_until = NULL")
    assert tracker.once() == 0  # and it recovers once the upstream does


def test_one_item_that_cannot_be_processed_is_quarantined_and_the_rest_goes_on(spoilable):
    spec, sim, tracker = spoilable
    spec.seed(sim)
    assert tracker.once() == 0
    bad = spec.spoil(sim)
    spec.fresh(sim)
    assert tracker.once() == 0
    failures, error = tracker.sql("SELECT consecutive_failures, last_error FROM source_state")[0]
    assert (failures, error) == (0, None)
    new = tracker.sql("SELECT event_type, title FROM event WHERE baseline = 0")
    assert len(new) == 1 and new[0][0] != spec.removal_event, new  # the fresh item, no removal
    [(key, times, why)] = tracker.sql("SELECT item_key, times, error FROM quarantine")
    assert (key, times) == (bad, 1) and why
    # While it stays broken (seen again, or not at all behind a 304): one row, nothing removed.
    assert tracker.once() == 0
    assert tracker.sql("SELECT COUNT(*) FROM event WHERE baseline = 0") == [(1,)]
    [(again, times)] = tracker.sql("SELECT item_key, times FROM quarantine")
    assert again == bad and times in (1, 2)


def test_a_retry_after_date_past_any_integer_is_no_date_not_an_internal_error(gh_tracker, github):
    github.add_issue("vllm-project/vllm", "seed")
    tracker = gh_tracker({"sources": {"github": {"monitor": {"pulls": False}}}})
    assert tracker.once() == 0
    hostile = "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"
    github.inject(
        Fault(429, '{"message": "slow down"}', headers={"Retry-After": hostile}, times=50)
    )

    assert tracker.once() == 1

    [(error,)] = tracker.sql("SELECT last_error FROM source_state")
    assert "internal error" not in error and "Overflow" not in error
    assert "429" in error or "rate" in error.lower()
