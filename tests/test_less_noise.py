"""Less noise (issue 11): grouping, protected hits, min_priority routing, rate-limit folds,
digests, all of it through bundles: one outbox row carries others of its channel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
    assert message.startswith(
        "[MRT] 12 alerts · New model · huggingface · deepseek-ai\nMatched: models\n- "
    )
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
    listed = tracker.cli("outbox", "--status", "bundled").stdout.splitlines()
    assert len(listed) == 2 and all(f"[in #{carrier}]" in line for line in listed)
    assert "[carries a group]" in tracker.cli("outbox", "--status", "retrying").stdout
    assert '"bundled": 2' in tracker.cli("status", "--json").stdout
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


# ---------------------------------------------------------------------- routing, protected hits
REPO = "vllm-project/vllm"


def test_a_channel_min_priority_keeps_lower_alerts_away_from_it(gh_tracker, github, welink):
    tracker = gh_tracker(
        {
            "rules": [{"name": "urgent", "keywords": ["deepseek"], "priority": 20}],
            "notify": {"welink": {"min_priority": 10}},
        }
    )
    github.add_issue(REPO, "seed", at=datetime(2026, 11, 1, tzinfo=UTC))
    tracker.once()
    github.add_issue(REPO, "DeepSeek-V4 kernels")
    github.add_issue(REPO, "Qwen3 tokenizer")  # watch_keywords: priority 0
    assert tracker.once() == 0
    assert [t.splitlines()[1] for t in welink.texts()] == ["DeepSeek-V4 kernels"]
    routed = tracker.sql(
        "SELECT e.title, COUNT(d.id) FROM alert a JOIN event e ON e.id = a.event_id"
        " LEFT JOIN delivery d ON d.alert_id = a.id GROUP BY e.title ORDER BY e.title"
    )
    assert routed == [("DeepSeek-V4 kernels", 1), ("Qwen3 tokenizer", 0)]


def test_protected_hits_are_never_grouped_held_folded_or_kept_from_a_channel(
    gh_tracker, github, welink
):
    tracker = gh_tracker(
        {
            "scheduler": {"unhealthy_after_failures": 1},
            "http": {"max_retries": 0},
            "sources": {"github": {"repos": [REPO, "sgl-project/sglang"]}},
            "notify": {
                "welink": {
                    "min_priority": 1000,
                    "group_wait_seconds": 600,
                    "rate_limit_per_minute": 1,
                    "digest": {"every": "daily", "below_priority": 1000},
                }
            },
        }
    )
    for repo in (REPO, "sgl-project/sglang"):
        github.add_issue(repo, "seed", at=datetime(2026, 11, 1, tzinfo=UTC))
    assert tracker.once() == 0
    github.add_issue(REPO, "DeepSeek-V4 kernels")  # a user hit: below min_priority
    github.inject(Fault(502, "bad gateway", path="/repos/sgl-project", times=100))
    tracker.once()
    texts = welink.texts()
    failing = [t for t in texts if "is failing" in t]
    assert len(failing) == len(texts) >= 2  # one message each, at once, over the rate
    assert all(not t.startswith("[MRT] 2 alerts") for t in texts)
    assert tracker.sql("SELECT COUNT(*) FROM delivery WHERE kind <> 'single'") == [(0,)]


# ---------------------------------------------------------------------- rate-limit folds
def test_more_due_than_the_rate_allows_are_folded_into_one_message(gh_tracker, github, welink):
    tracker = gh_tracker({"notify": {"welink": {"rate_limit_per_minute": 3}}})
    github.add_issue(REPO, "seed", at=datetime(2026, 11, 1, tzinfo=UTC))
    tracker.once()
    for i in range(10):
        github.add_issue(REPO, f"DeepSeek change {i}")
    assert tracker.once() == 0
    [fold] = welink.texts()
    assert fold.startswith("[MRT] 10 alerts at once (github 10)\n")
    assert bundles(tracker)[0][1:] == ("fold", "sent", 9)
    # The sends of the last minute are counted from the store, by every engine after a restart:
    # two more fit the rate (one was used) and go out one by one ...
    github.add_issue(REPO, "DeepSeek A")
    github.add_issue(REPO, "DeepSeek B")
    tracker.once()
    assert sorted(t.splitlines()[1] for t in welink.texts()[1:]) == ["DeepSeek A", "DeepSeek B"]
    # ... and the next one waits for the minute to pass: nothing is refused by the platform.
    github.add_issue(REPO, "DeepSeek C")
    tracker.once()
    assert len(welink.messages) == 3
    tracker.once(later=61)
    assert welink.texts()[3].splitlines()[1] == "DeepSeek C"
    assert tracker.sql("SELECT COUNT(*) FROM delivery WHERE status <> 'sent'") == [(0,)]


DEFAULT_RATE_PER_MINUTE = 20  # as a channel module declares its platform's limit


def test_a_platform_default_rate_applies_unless_the_channel_sets_its_own():
    from mrt_engine.delivery.policy import channel_policies
    from mrt_engine.notify.base import ChannelSettings

    class Robot(ChannelSettings):  # a channel settings class of a module with a default rate
        pass

    class Config:
        delivery = type("D", (), {"group_wait_seconds": 30.0, "group_interval_seconds": 300.0})

        def __init__(self, sections):
            self.sections = sections

        def channel_sections(self):
            return self.sections

    policies = channel_policies(
        Config({"a": Robot(), "b": Robot(rate_limit_per_minute=5), "c": ChannelSettings()})
    )
    assert [policies[c].rate_per_minute for c in "abc"] == [20, 5, 0]
    assert policies["a"].group_wait == 30 and policies["a"].grouping


# ---------------------------------------------------------------------- digests
def test_hits_below_the_immediate_priority_wait_for_the_daily_digest_which_a_restart_never_repeats(
    gh_tracker, github, welink
):
    from zoneinfo import ZoneInfo

    # The digest's time is two hours from now, local time: whatever the hour the test runs at,
    # its first slot is that one (a fixed 09:00 made the test fail in the minutes before it).
    local = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    slot = (local + timedelta(hours=2)).replace(second=0, microsecond=0)
    tracker = gh_tracker(
        {
            "rules": [{"name": "urgent", "keywords": ["deepseek"], "priority": 20}],
            "notify": {
                "welink": {
                    "digest": {
                        "every": "daily",
                        "at": slot.strftime("%H:%M"),
                        "timezone": "Asia/Shanghai",
                        "below_priority": 10,
                    }
                }
            },
        }
    )
    github.add_issue(REPO, "seed", at=datetime(2026, 11, 1, tzinfo=UTC))
    tracker.once()
    until_slot = (slot - datetime.now(UTC)).total_seconds()
    for i in range(3):
        github.add_issue(REPO, f"Qwen note {i}")  # watch_keywords: priority 0, digest
    github.add_issue(REPO, "DeepSeek-V4 kernels")  # priority 20: at once
    tracker.once()
    assert [t.splitlines()[1] for t in welink.texts()] == ["DeepSeek-V4 kernels"]
    tracker.once(later=until_slot - 60)
    assert len(welink.messages) == 1
    tracker.once(later=until_slot + 5)
    digest = welink.texts()[1]
    assert digest.startswith("[MRT] Digest · 3 alerts (github 3)\n")
    assert all(f"Qwen note {i}" in digest for i in range(3))
    # A restart after the digest neither repeats it nor sends a late hit before the next one.
    github.add_issue(REPO, "Qwen late")
    tracker.once(later=until_slot + 30)
    assert len(welink.messages) == 2
    tracker.once(later=until_slot + 86400 + 5)
    assert welink.texts()[2].startswith(
        "[MRT] Digest · 1 alert (github 1)\nMatched: watch_keywords\n- Qwen late"
    )
    assert tracker.sql("SELECT COUNT(*) FROM delivery WHERE status <> 'sent'") == [(0,)]


def test_digest_times_follow_the_local_clock_across_a_daylight_saving_change():
    from mrt_engine.delivery.policy import latest_slot, next_slot
    from mrt_engine.notify.base import DigestSettings

    daily = DigestSettings(every="daily", at="09:00", timezone="Europe/Berlin")
    # Berlin moves from UTC+1 to UTC+2 on 2026-03-29: 09:00 local is 08:00 UTC, then 07:00.
    before = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)
    assert next_slot(daily, before) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    assert latest_slot(daily, before) == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
    hourly = DigestSettings(every="hourly", at="00:30", timezone="Asia/Kolkata")  # UTC+5:30
    at = datetime(2026, 3, 28, 9, 10, tzinfo=UTC)
    assert next_slot(hourly, at) == datetime(2026, 3, 28, 10, 0, tzinfo=UTC)
    assert latest_slot(hourly, at) == datetime(2026, 3, 28, 9, 0, tzinfo=UTC)
    assert next_slot(hourly, datetime(2026, 3, 28, 10, 0, tzinfo=UTC)) == datetime(
        2026, 3, 28, 10, 0, tzinfo=UTC
    )


def test_a_digest_with_an_unknown_zone_or_time_is_a_config_error_with_its_key_path():
    from mrt_engine.config import ConfigError, validate

    digest = {"timezone": "Mars/Olympus_Mons", "at": "25:00"}
    with pytest.raises(ConfigError) as info:
        validate({"notify": {"welink": {"webhook_env": "WL", "digest": digest}}})
    assert sorted(info.value.problems) == [
        "notify.welink.digest.at: expected a time of day \"HH:MM\", got '25:00'",
        "notify.welink.digest.timezone: unknown time zone 'Mars/Olympus_Mons'"
        " (an IANA name: Asia/Shanghai)",
    ]


def test_a_prune_forgets_group_windows_closed_long_ago_and_keeps_open_ones(hf_tracker, hf, welink):
    from mrt_engine.store.retention import RetentionPolicy, prune

    tracker = hf_tracker(GROUPING, rule={"group_by": ["org"]})
    grouped_models(tracker, hf, [f"{ORG}/C{i}" for i in range(2)])
    tracker.once(later=31)
    assert len(welink.messages) == 1
    with tracker.store() as store:
        now = datetime.now(UTC)
        kept = prune(store, RetentionPolicy(), now + timedelta(days=30))
        report = prune(store, RetentionPolicy(), now + timedelta(days=32))
    assert [p.rows for p in kept.parts if p.table == "notice_group"] == [0]
    assert [p.rows for p in report.parts if p.table == "notice_group"] == [1]
    assert tracker.sql("SELECT COUNT(*) FROM notice_group") == [(0,)]


# ---------------------------------------------------------------------- per-rule group times
def test_a_rule_may_set_its_own_group_wait_and_interval(hf_tracker, hf, welink):
    """The channel waits 30 s / 300 s; this rule's groups wait 120 s and then 600 s."""
    rule = {"group_by": ["org"], "group_wait_seconds": 120, "group_interval_seconds": 600}
    tracker = hf_tracker(GROUPING, rule=rule)
    grouped_models(tracker, hf, [f"{ORG}/W{i}" for i in range(3)])
    tracker.once(later=61)  # past the channel's wait, not the rule's
    assert welink.messages == []
    tracker.once(later=121)
    assert len(welink.messages) == 1 and welink.texts()[0].startswith("[MRT] 3 alerts")
    hf.put_model(f"{ORG}/W9")
    tracker.once(later=130)
    tracker.once(later=121 + 301)  # past the channel's interval, not the rule's
    assert len(welink.messages) == 1
    tracker.once(later=121 + 601)
    assert len(welink.messages) == 2 and welink.texts()[1].endswith(f"/{ORG}/W9")


def test_a_rule_group_time_without_grouping_or_out_of_range_is_a_clear_config_error():
    from mrt_engine.config import ConfigError, validate

    rules = [
        {"name": "alone", "group_by": [], "group_wait_seconds": 60},
        {"name": "negative", "group_interval_seconds": -1},
        {"name": "words", "group_wait_seconds": "soon"},
    ]
    with pytest.raises(ConfigError) as info:
        validate({"rules": rules})
    problems = sorted(info.value.problems)
    assert len(problems) == 3, problems
    assert problems[0] == (
        "rules[0]: group_wait_seconds needs a group_by: a rule with group_by = [] sends each"
        " hit alone"
    )
    assert problems[1].startswith("rules[1].group_interval_seconds: ")
    assert problems[2].startswith("rules[2].group_wait_seconds: ")


# ---------------------------------------------------------------------- silences and bundles
def silence_now(tracker, *matchers: str) -> None:
    args = [a for m in matchers for a in ("--match", m)]
    result = tracker.cli(
        "silence", "add", *args, "--for", "2h", "--author", "alice", "--comment", "known"
    )
    assert result.returncode == 0, result.stderr


def statuses(tracker) -> dict[str, tuple]:
    rows = tracker.sql(
        "SELECT e.resource_id, d.status, d.silence_id FROM delivery d"
        " JOIN alert a ON a.id = d.alert_id JOIN event e ON e.id = a.event_id"
    )
    return {r[0].rsplit("/", 1)[-1]: (r[1], r[2]) for r in rows}


def test_a_silence_made_while_a_group_waits_silences_its_members_and_the_rest_go_out(
    hf_tracker, hf, welink
):
    tracker = hf_tracker(GROUPING, rule={"group_by": ["org"]})
    grouped_models(tracker, hf, [f"{ORG}/S{i}" for i in range(4)])
    # The row that would carry the group (the first in the queue's order) and another one.
    order = tracker.sql(
        "SELECT e.resource_id FROM delivery d JOIN alert a ON a.id = d.alert_id"
        " JOIN event e ON e.id = a.event_id ORDER BY d.priority DESC, d.next_attempt_at, d.id"
    )
    carrier, other = order[0][0], order[2][0]
    silence_now(tracker, f"repo={carrier}", "type=model_added")
    silence_now(tracker, f"text={other.rsplit('/', 1)[-1]}")
    tracker.once(later=31)
    [text] = welink.texts()
    assert text.startswith("[MRT] 2 alerts")
    assert f"/{carrier}" not in text and f"/{other}" not in text
    assert all(f"/{r}" in text for (r,) in order if r not in (carrier, other))
    found = statuses(tracker)
    assert found.pop(carrier.rsplit("/", 1)[-1]) == ("silenced", 1)
    assert found.pop(other.rsplit("/", 1)[-1]) == ("silenced", 2)
    assert set(found.values()) == {("sent", None)}
    # Stored as silenced, so an operator can still send one.
    [(carrier_id,)] = tracker.sql("SELECT id FROM delivery WHERE silence_id = 1")
    resent = tracker.cli("resend", str(carrier_id))
    assert resent.returncode == 0, resent.stdout + resent.stderr
    tracker.once(later=31 + 301)  # it goes with its group's next message, not silenced again
    assert welink.texts()[-1].endswith(f"/{carrier}")


def test_a_group_whose_members_are_all_silenced_is_not_sent(hf_tracker, hf, welink):
    tracker = hf_tracker(GROUPING, rule={"group_by": ["org"]})
    grouped_models(tracker, hf, [f"{ORG}/A{i}" for i in range(3)])
    silence_now(tracker, f"org={ORG}")
    tracker.once(later=31)
    assert welink.messages == []
    assert set(statuses(tracker).values()) == {("silenced", 1)}
    assert tracker.sql("SELECT COUNT(*) FROM attempt") == [(0,)]


def test_a_bundle_being_retried_loses_its_silenced_members_and_goes_when_some_are_left(
    hf_tracker, hf, welink
):
    tracker = hf_tracker(GROUPING, rule={"group_by": ["org"]})
    grouped_models(tracker, hf, [f"{ORG}/R{i}" for i in range(3)])
    welink.inject(Fault(500, "down", path="/api/werobot"))
    tracker.once(later=31)
    [(carrier, kind, status, members)] = bundles(tracker)
    assert (kind, status, members) == ("group", "retrying", 2)
    [(member,)] = tracker.sql(
        "SELECT e.resource_id FROM delivery d JOIN alert a ON a.id = d.alert_id"
        " JOIN event e ON e.id = a.event_id WHERE d.bundle_id = ? ORDER BY d.id LIMIT 1",
        carrier,
    )
    silence_now(tracker, f"repo={member}")
    tracker.once(later=60)
    [text] = welink.texts()
    assert text.startswith("[MRT] 2 alerts") and f"/{member}" not in text
    assert statuses(tracker)[member.rsplit("/", 1)[-1]] == ("silenced", 1)
    assert tracker.sql("SELECT status, COUNT(*) FROM delivery GROUP BY status ORDER BY 1") == [
        ("sent", 2),
        ("silenced", 1),
    ]
    # A retried bundle whose carrier is silenced: the next member carries the rest.
    for i in range(3):
        hf.put_model(f"{ORG}/P{i}")
    tracker.once(later=400)  # committed: a new window of the group
    welink.inject(Fault(500, "down", path="/api/werobot"))
    tracker.once(later=431)
    [(carrier, kind, status, members)] = [b for b in bundles(tracker) if b[2] == "retrying"]
    assert (kind, members) == ("group", 2)
    [(carried,)] = tracker.sql(
        "SELECT e.resource_id FROM delivery d JOIN alert a ON a.id = d.alert_id"
        " JOIN event e ON e.id = a.event_id WHERE d.id = ?",
        carrier,
    )
    silence_now(tracker, f"repo={carried}")
    tracker.once(later=491)
    text = welink.texts()[-1]
    assert text.startswith("[MRT] 2 alerts") and f"/{carried}" not in text
    assert statuses(tracker)[carried.rsplit("/", 1)[-1]] == ("silenced", 2)
    assert {
        v
        for k, v in statuses(tracker).items()
        if k.startswith("P") and k != carried.rsplit("/", 1)[-1]
    } == {("sent", None)}
    [(attempts,)] = tracker.sql("SELECT COUNT(*) FROM attempt WHERE delivery_id = ?", carrier)
    assert attempts == 1  # the failed send stays on the record of the silenced carrier
    # The whole of the next retried bundle silenced: it is not sent.
    for i in range(2):
        hf.put_model(f"{ORG}/Q{i}")
    tracker.once(later=900)  # committed: a new window of the group
    welink.inject(Fault(500, "down", path="/api/werobot"))
    tracker.once(later=931)
    assert bundles(tracker)[-1][1:] == ("group", "retrying", 1)
    silence_now(tracker, "text=Q")
    tracker.once(later=991)
    assert len(welink.texts()) == 2
    assert {v for k, v in statuses(tracker).items() if k.startswith("Q")} == {("silenced", 3)}


def test_a_fold_leaves_out_the_alerts_a_silence_made_while_they_waited(gh_tracker, github, welink):
    tracker = gh_tracker({"notify": {"welink": {"rate_limit_per_minute": 1}}})
    github.add_issue(REPO, "seed", at=datetime(2026, 11, 1, tzinfo=UTC))
    tracker.once()
    github.add_issue(REPO, "DeepSeek first")
    tracker.once()  # the minute's one message
    for name in ("a", "hush b", "c", "hush d"):
        github.add_issue(REPO, f"DeepSeek {name}")
    tracker.once()  # over the rate: they wait for the minute to pass
    assert len(welink.messages) == 1
    silence_now(tracker, "text=hush")
    tracker.once(later=61)
    [_, fold] = welink.texts()
    assert fold.startswith("[MRT] 2 alerts at once (github 2)\n") and "hush" not in fold
    rows = tracker.sql(
        "SELECT e.title, d.status, d.silence_id FROM delivery d JOIN alert a ON a.id = d.alert_id"
        " JOIN event e ON e.id = a.event_id WHERE e.title LIKE '%hush%' ORDER BY d.id"
    )
    assert rows == [("DeepSeek hush b", "silenced", 1), ("DeepSeek hush d", "silenced", 1)]
