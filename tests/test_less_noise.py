"""Less noise (issue 11): grouping, protected hits, min_priority routing, rate-limit folds,
digests, all of it through bundles: one outbox row carries others of its channel."""

from __future__ import annotations

import pytest

from mrt_engine.notify.message import MessageContext, render
from mrt_engine.simulators.base import Fault

pytestmark = pytest.mark.both_backends

ORG = "deepseek-ai"


@pytest.fixture
def hf_tracker(make_tracker, hf, welink):
    def make(extra=None, rule=None):
        config = {
            "sources": {"huggingface": {"orgs": [ORG], "api_base": hf.url, "token_env": "HF"}},
            "rules": [{"name": "models", "source": ["huggingface"], **(rule or {})}],
            "notify": {"welink": {"webhook_env": "WL"}},
            **(extra or {}),
        }
        return make_tracker(config, {"WL": welink.webhook_url, "HF": "hf_TESTTOKEN"})

    return make


GROUPING = {"delivery": {"group_wait_seconds": 30, "group_interval_seconds": 300}}


def bundles(tracker) -> list[tuple]:
    return tracker.sql(
        "SELECT id, kind, status, (SELECT COUNT(*) FROM delivery m WHERE m.bundle_id = d.id)"
        " FROM delivery d WHERE kind <> 'single' ORDER BY id"
    )


def test_twelve_new_repos_of_one_org_within_two_minutes_go_out_as_one_message(
    hf_tracker, hf, welink
):
    tracker = hf_tracker(GROUPING, rule={"group_by": ["org"]})
    hf.put_model(f"{ORG}/seed")
    assert tracker.once() == 0  # the baseline
    names = [f"{ORG}/DeepSeek-R{i}" for i in range(12)]
    for at, batch in ((0, names[:4]), (10, names[4:8]), (25, names[8:])):
        for name in batch:
            hf.put_model(name)
        tracker.once(later=at)  # each poll within the group's wait: nothing is sent yet
        assert welink.messages == []
    assert tracker.once(later=61) == 0  # 30 s after the first hit the group goes out
    [message] = welink.texts()
    assert message.startswith("[MRT] 12 alerts · New model · huggingface · deepseek-ai\n")
    listed = [line for line in message.splitlines()[1:] if line.startswith("- ")]
    more = message.splitlines()[-1]
    assert all(any(line.endswith(f"/{n}") for n in names) for line in listed)
    rest = 12 - len(listed)
    assert (more == f"… and {rest} more") if rest else more.startswith("- ")
    assert len(message) <= 500
    [(_, kind, status, members)] = bundles(tracker)
    assert (kind, status, members) == ("group", "sent", 11)
    assert tracker.sql("SELECT status, COUNT(*) FROM delivery GROUP BY status") == [("sent", 12)]
    assert tracker.sql("SELECT COUNT(*) FROM attempt") == [(1,)]

    # A later hit of the open group waits for the group interval, then goes out.
    hf.put_model(f"{ORG}/DeepSeek-R12")
    tracker.once(later=120)
    assert len(welink.messages) == 1
    tracker.once(later=61 + 301)
    assert len(welink.messages) == 2 and welink.texts()[1].endswith(f"/{ORG}/DeepSeek-R12")


def test_a_bundle_lists_every_item_when_there_is_room_and_says_how_many_are_left_when_not():
    items = tuple(
        MessageContext(
            event_type="model_added",
            source_key=f"huggingface:{ORG}:models",
            resource_id=f"{ORG}/M{i}",
            title=f"{ORG}/M{i}",
            url=f"https://huggingface.co/{ORG}/M{i}",
            fingerprint=str(i),
        )
        for i in range(12)
    )
    bundle = MessageContext(**{**items[0].__dict__, "bundle": "group", "items": items})
    whole = render(bundle, None)
    assert whole.count("\n- ") == 12 and "more" not in whole
    for limit in (500, 200, 120):
        cut = render(bundle, limit)
        assert len(cut) <= limit and cut.endswith("more")
        shown = cut.count("\n- ")
        assert cut.endswith(f"… and {12 - shown} more")
        assert all(line.startswith("- https://") is False for line in cut.splitlines())


def grouped_models(tracker, hf, names) -> None:
    """A group of ``names`` committed and past its wait (not yet sent)."""
    hf.put_model(f"{ORG}/seed")
    assert tracker.once() == 0
    for name in names:
        hf.put_model(name)
    tracker.once()  # committed; the group waits


def test_a_retried_bundle_sends_the_same_members_and_they_follow_it_to_sent(hf_tracker, hf, welink):
    tracker = hf_tracker(GROUPING, rule={"group_by": ["org"]})
    grouped_models(tracker, hf, [f"{ORG}/A{i}" for i in range(3)])
    welink.inject(Fault(500, "upstream broke", path="/api/werobot"))
    tracker.once(later=31)  # the group's first send fails: the carrier retries
    [(carrier, kind, status, members)] = bundles(tracker)
    assert (kind, status, members) == ("group", "retrying", 2)
    assert tracker.sql("SELECT COUNT(*) FROM delivery WHERE status = 'bundled'") == [(2,)]
    hf.put_model(f"{ORG}/A3")  # a new hit of the group does not join the bundle in flight
    tracker.once(later=40)
    texts = welink.texts()
    assert len(texts) == 1 and texts[0].startswith("[MRT] 3 alerts")
    assert "/A3" not in texts[0]
    assert tracker.sql(
        "SELECT status, COUNT(*) FROM delivery WHERE bundle_id = ? GROUP BY status", carrier
    ) == [("sent", 2)]


def test_a_dead_bundle_requeued_goes_out_again_whole(hf_tracker, hf, welink):
    tracker = hf_tracker(GROUPING, rule={"group_by": ["org"]})
    grouped_models(tracker, hf, [f"{ORG}/B{i}" for i in range(3)])
    welink.inject(
        Fault(200, '{"code": "58601", "data": null, "message": "param error"}', path="/api/werobot")
    )
    tracker.once(later=31)
    assert tracker.sql("SELECT status, COUNT(*) FROM delivery GROUP BY status") == [("dead", 3)]
    assert tracker.cli("resend", "--dead", "--channel", "welink").returncode == 0
    assert tracker.sql("SELECT status, COUNT(*) FROM delivery GROUP BY status ORDER BY 1") == [
        ("bundled", 2),
        ("pending", 1),
    ]
    tracker.once(later=32)
    [text] = welink.texts()
    assert text.startswith("[MRT] 3 alerts")
    assert tracker.sql("SELECT status, COUNT(*) FROM delivery GROUP BY status") == [("sent", 3)]
