"""RSS and Atom feeds: one feed_entry per entry id (else link), in any order, baseline first,
conditional GET, keywords narrowing what counts, HTML and garbage handled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.feeds import FeedSimulator


@pytest.fixture
def feeds() -> Iterator[FeedSimulator]:
    sim = FeedSimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def tracker(make_tracker, feeds, welink):
    arxiv = feeds.feed("arxiv", kind="atom", title="arXiv cs.CL")
    blog = feeds.feed("blog", kind="rss", title="Qwen blog")
    return make_tracker(
        {
            "sources": {
                "feeds": [
                    {"name": "arxiv", "url": arxiv, "keywords": ["mixture of experts", "MoE"]},
                    {"name": "qwen-blog", "url": blog},
                ]
            },
            "notify": {"welink": {"webhook_env": "WL"}},
            "rules": [{"name": "feeds", "event_type": ["feed_entry"]}],
        },
        {"WL": welink.webhook_url},
    )


def new(tracker):
    return tracker.sql(
        "SELECT source_key, title, url, summary FROM event WHERE baseline = 0 ORDER BY id"
    )


def test_entries_in_any_order_alert_once_after_a_baseline(tracker, feeds, welink):
    old = datetime(2026, 11, 1, tzinfo=UTC)
    feeds.add_entry("arxiv", "Sparse MoE scaling laws", entry_id="arxiv:1", at=old)
    feeds.add_entry("arxiv", "A survey of tokenizers", entry_id="arxiv:2", at=old)
    feeds.add_entry("blog", "Qwen3 released", link="https://qwen.ai/blog/qwen3", at=old)
    assert tracker.once() == 0
    assert welink.texts() == []

    # A new entry dated *before* the others still counts: order is not trusted.
    feeds.add_entry(
        "arxiv",
        "Routing in <b>Mixture of Experts</b>",
        entry_id="arxiv:3",
        summary="<p>We study &amp; improve MoE routing</p>",
        at=old - timedelta(days=3),
    )
    feeds.add_entry("arxiv", "Speculative decoding, again", entry_id="arxiv:4")  # no keyword
    feeds.add_entry("blog", "Qwen3-Coder", link="https://qwen.ai/blog/qwen3-coder")
    assert tracker.once() == 0
    got = sorted(new(tracker))
    assert [(r[0], r[1]) for r in got] == [
        ("feed:arxiv", "Routing in Mixture of Experts"),
        ("feed:qwen-blog", "Qwen3-Coder"),
    ]
    assert got[0][3] == "We study & improve MoE routing"
    assert len(welink.texts()) == 2

    assert tracker.once() == 0  # unchanged feeds: 304 each, nothing new
    assert len(new(tracker)) == 2
    assert {
        r[0] for r in tracker.sql("SELECT outcome FROM poll_metric ORDER BY id DESC LIMIT 2")
    } == {"not_modified"}
    assert feeds.requests[-1].headers.get("if-none-match")


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="html", path="/feeds/blog", times=5),
        Fault(503, path="/feeds/blog", times=5),
        Fault(200, "this is not xml at all", path="/feeds/blog", times=5),
    ],
    ids=["html", "503", "garbage"],
)
def test_a_broken_feed_records_an_error_and_keeps_its_cursor(tracker, feeds, fault):
    feeds.add_entry("blog", "Qwen3 released", link="https://qwen.ai/blog/qwen3")
    feeds.add_entry("arxiv", "MoE one", entry_id="a1")
    tracker.once()
    before = tracker.sql("SELECT cursor FROM source_state WHERE source_key = 'feed:qwen-blog'")[0][
        0
    ]
    feeds.add_entry("arxiv", "MoE two", entry_id="a2")
    feeds.inject(fault)
    assert tracker.once() == 1
    cursor, error = tracker.sql(
        "SELECT cursor, last_error FROM source_state WHERE source_key = 'feed:qwen-blog'"
    )[0]
    assert cursor == before and error
    assert [r[1] for r in new(tracker)] == ["MoE two"]
