"""Silences (issue 11, S3): matchers that stop deliveries for a time; silenced hits are stored
as silenced (visible, replayable), never dropped; protected hits are never silenced."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from mrt_engine import silences
from mrt_engine.batch import prepare_batch, write_batch
from mrt_engine.delivery.outbox import Outbox
from mrt_engine.delivery.worker import send_claim
from mrt_engine.events import TrackerEvent
from mrt_engine.health import CHECKSUM_CHANGED, UNHEALTHY, health_event, protected_rules
from mrt_engine.rules.matcher import RuleSet
from mrt_engine.rules.model import RuleConfig
from mrt_engine.silence import (
    SilenceError,
    SilenceTarget,
    check_matchers,
    parse_matcher,
)
from mrt_engine.simulators.base import Fault

pytestmark = pytest.mark.both_backends

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def silence(tracker, *args: str):
    return tracker.cli("silence", *args)


def add(tracker, *matchers: str, duration: str = "2h"):
    args = [a for m in matchers for a in ("--match", m)]
    result = silence(
        tracker, "add", *args, "--for", duration, "--author", "alice", "--comment", "too loud"
    )
    assert result.returncode == 0, result.stderr
    return result


def deliveries(tracker) -> list[tuple]:
    return tracker.sql(
        "SELECT d.id, e.title, d.status, d.silence_id FROM delivery d"
        " JOIN alert a ON a.id = d.alert_id JOIN event e ON e.id = a.event_id ORDER BY d.id"
    )


@pytest.fixture
def seeded(gh_tracker, github):
    """A tracker whose baseline is taken (the next new issues are news)."""
    tracker = gh_tracker({"delivery": {"max_attempts": 3}})
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    return tracker


# ---------------------------------------------------------------------- the poll's write
def test_a_silenced_hit_is_stored_as_silenced_and_never_sent(seeded, github, welink):
    added = add(seeded, "source=github:vllm", "text=qwen")
    assert "silence 1 (source=github:vllm text=qwen) active until" in added.stdout
    github.add_issue(REPO, "Qwen3 crash")
    github.add_issue(REPO, "DeepSeek-V4 support")
    assert seeded.once() == 0
    assert deliveries(seeded) == [
        (1, "Qwen3 crash", "silenced", 1),
        (2, "DeepSeek-V4 support", "sent", None),
    ]
    assert [t for t in welink.texts() if "Qwen3" in t] == []
    # No attempt was made: the delivery never entered the queue.
    assert seeded.sql("SELECT COUNT(*) FROM attempt WHERE delivery_id = 1") == [(0,)]
    [(actor, target, after, detail)] = seeded.sql(
        "SELECT actor, target, after, detail FROM audit WHERE action = 'silence_add'"
    )
    assert actor.endswith("via cli") and target == "silence:1" and detail == "too loud"
    assert json.loads(after)["matchers"][1] == {"field": "text", "op": "=", "value": "qwen"}
    trace = json.loads(seeded.cli("trace", "delivery:1", "--json").stdout)
    assert trace[0]["deliveries"][0]["delivery"]["status"] == "silenced"
    assert trace[0]["deliveries"][0]["delivery"]["silence_id"] == 1


def test_a_silence_made_after_the_hit_stops_it_before_the_send(seeded, github, welink):
    welink.inject(Fault(503, path="/api/werobot"))
    github.add_issue(REPO, "Qwen3 crash")
    seeded.once()
    assert deliveries(seeded) == [(1, "Qwen3 crash", "retrying", None)]
    add(seeded, "org=VLLM-project")  # matched case-insensitively
    assert seeded.once(later=60) == 0
    assert deliveries(seeded) == [(1, "Qwen3 crash", "silenced", 1)]
    attempts = seeded.sql("SELECT outcome, reply FROM attempt WHERE delivery_id = 1 ORDER BY id")
    assert [a[0] for a in attempts] == ["failed", "silenced"]
    assert "silence 1 (org=VLLM-project)" in attempts[1][1]
    assert welink.texts() == [] or all("Qwen3" not in t for t in welink.texts())
    # It no longer counts as an attempt (nothing was sent), and nothing retries it.
    assert seeded.sql("SELECT attempts FROM delivery WHERE id = 1") == [(1,)]
    assert seeded.once(later=3600) == 0
    assert len(seeded.sql("SELECT id FROM attempt WHERE delivery_id = 1")) == 2


def test_a_silence_of_one_rule_leaves_an_alert_another_rule_also_wants(seeded, github, welink):
    # watch_keywords is the rule of the keyword hits (the only one that notifies here)
    add(seeded, "rule=watch_*")
    github.add_issue(REPO, "Qwen3 crash")
    seeded.once()
    assert deliveries(seeded)[0][2:] == ("silenced", 1)


# ---------------------------------------------------------------------- protected hits
def test_protected_hits_are_never_silenced_at_write_or_at_send(seeded):
    with seeded.store() as store:
        for matchers in (["type=source_*"], ["source=github"], ["text=~.+"], ["type=service_*"]):
            silences.add_silence(
                store, matchers, author="a", comment="c", duration="1h", actor="test"
            )
        now = datetime.now(UTC)
        unhealthy = health_event(f"github:{REPO}:issues", UNHEALTHY, 5, "HTTP 500", now)
        checksum = TrackerEvent(
            source="modelhub",
            source_key="modelhub:services",
            resource_type="service",
            resource_id="asr-whisper",
            event_type=CHECKSUM_CHANGED,
            event_id="asr-whisper@2.0.0:ffff",
            title="checksum of asr-whisper 2.0.0 changed",
            observed_at=now,
            occurred_at=now,
        )
        rules = protected_rules(["welink"])
        with store.write():
            write_batch(store, prepare_batch([unhealthy, checksum], rules, now))
        statuses = store.db.execute_sql("SELECT status, silence_id FROM delivery").fetchall()
        assert statuses == [("pending", None), ("pending", None)]
        # At the send too: nothing configured answers, so the attempt fails (not silenced).
        outbox = Outbox(store, owner="test")
        for claim in outbox.claim("welink", limit=2):
            assert send_claim(outbox, {}, claim) == "retrying"


def test_the_same_hits_unprotected_are_silenced_at_write_and_at_send(seeded):
    """The counterpart of the test above: the silences do match these events' fields."""
    with seeded.store() as store:
        now = datetime.now(UTC)
        event = TrackerEvent(
            source="github",
            source_key=f"github:{REPO}:issues",
            resource_type="repo",
            resource_id=REPO,
            event_type="issue_opened",
            event_id="77",
            title="Qwen3 crash",
            observed_at=now,
            occurred_at=now,
        )
        rules = RuleSet.compile([RuleConfig(name="all", keywords=["qwen"])], ["welink"])
        with store.write():
            write_batch(store, prepare_batch([event], rules, now))
        silences.add_silence(
            store, ["source=github"], author="a", comment="c", duration="1h", actor="test"
        )
        outbox = Outbox(store, owner="test")
        [claim] = outbox.claim("welink")
        assert send_claim(outbox, {}, claim) == "silenced"


# ---------------------------------------------------------------------- expiry, resend, replay
def test_resend_of_a_silenced_delivery_sends_it_and_is_audited(seeded, github, welink):
    add(seeded, "text=qwen")
    github.add_issue(REPO, "Qwen3 crash")
    seeded.once()
    result = seeded.cli("resend", "1")
    assert result.returncode == 0 and "queued to send again" in result.stdout
    seeded.once()  # the silence is still active: an operator's resend is sent anyway
    assert deliveries(seeded) == [(1, "Qwen3 crash", "sent", 1)]
    assert any("Qwen3 crash" in t for t in welink.texts())
    [(before,)] = seeded.sql("SELECT before FROM audit WHERE action = 'resend'")
    assert json.loads(before)["status"] == "silenced"


def test_an_expired_silence_sends_nothing_by_itself_and_replay_sends_it(seeded, github, welink):
    add(seeded, "text=qwen")
    github.add_issue(REPO, "Qwen3 crash")
    seeded.once()
    expired = silence(seeded, "expire", "1", "--yes")
    assert expired.returncode == 0, expired.stderr
    assert "silence 1 expired" in expired.stdout
    seeded.once(later=60)
    assert deliveries(seeded) == [(1, "Qwen3 crash", "silenced", 1)]
    assert welink.texts() == []
    again = silence(seeded, "expire", "1", "--yes")
    assert again.returncode == 0 and "already ended; nothing changed" in again.stdout
    replayed = seeded.cli("replay", "--since", "1d")
    assert replayed.returncode == 0, replayed.stderr
    assert "enqueued 1 delivery" in replayed.stdout
    seeded.once()
    assert deliveries(seeded) == [(1, "Qwen3 crash", "sent", 1)]
    assert len(welink.texts()) == 1
    actions = [a for (a,) in seeded.sql("SELECT action FROM audit ORDER BY id")]
    assert actions == ["silence_add", "silence_expire", "replay"]


def test_replay_keeps_what_an_active_silence_still_matches_silenced(seeded, github, welink):
    add(seeded, "text=qwen")
    github.add_issue(REPO, "Qwen3 crash")
    seeded.once()
    replayed = seeded.cli("replay", "--since", "1d")
    assert "enqueued 0 deliveries" in replayed.stdout
    seeded.once()
    assert deliveries(seeded) == [(1, "Qwen3 crash", "silenced", 1)]


# ---------------------------------------------------------------------- the command line
def test_silence_list_shows_the_silences_in_force_and_with_all_the_ended_ones(seeded, github):
    add(seeded, "org=deepseek-ai", "type=model_updated")
    add(seeded, "text=qwen")
    github.add_issue(REPO, "Qwen3 crash")
    seeded.once()
    silence(seeded, "expire", "1", "--yes")
    text = silence(seeded, "list").stdout
    assert "    2  [active]  text=qwen" in text and "1 delivery silenced" in text
    assert "by alice: too loud" in text and "org=deepseek-ai" not in text
    rows = json.loads(silence(seeded, "list", "--all", "--json").stdout)
    assert [(r["id"], r["state"], r["silenced"]) for r in rows] == [
        (2, "active", 1),
        (1, "expired", 0),
    ]
    assert rows[1]["matchers"] == ["org=deepseek-ai", "type=model_updated"]
    assert rows[1]["expired_by"].endswith("via cli")


def test_status_and_outbox_show_silenced_counts(seeded, github):
    add(seeded, "text=qwen")
    github.add_issue(REPO, "Qwen3 crash")
    seeded.once()
    data = json.loads(seeded.cli("status", "--json").stdout)
    assert data["outbox"]["*"]["silenced"] == 1
    assert "silenced 1" in seeded.cli("status").stdout
    rows = json.loads(seeded.cli("outbox", "--status", "silenced", "--json").stdout)
    assert [r["title"] for r in rows] == ["Qwen3 crash"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--match", "colour=red"], "unknown matcher field 'colour'"),
        (["--match", "org"], "matcher 'org': expected FIELD=VALUE"),
        (["--match", "text=~(unclosed"], "not a regular expression"),
        (["--match", "text="], "matches every hit"),
        (["--match", "org=*"], "matches every hit"),
        (["--match", "text!~(unclosed"], "not a regular expression"),
        (["--match", "org<>x"], "matcher 'org<>x': expected FIELD=VALUE"),
        ([], "at least one --match"),
    ],
)
def test_bad_matchers_are_one_line_usage_errors(seeded, args, message):
    result = silence(seeded, "add", *args, "--for", "2h", "--author", "a", "--comment", "c")
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert seeded.sql("SELECT COUNT(*) FROM silence") == [(0,)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--for", "soon"], "--for: expected a duration like 30m"),
        (["--for", "0s"], "not a positive duration"),
        (["--for", "400d"], "longer than a silence may be"),
        (["--until", "2001-01-01"], "is not after the start"),
        ([], "give exactly one of --for DURATION"),
    ],
)
def test_bad_durations_are_one_line_usage_errors(seeded, args, message):
    result = silence(seeded, "add", "--match", "org=x", *args, "--author", "a", "--comment", "c")
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_silence_needs_an_author_and_a_comment(seeded):
    no_comment = silence(seeded, "add", "--match", "org=x", "--for", "1h", "--author", "a")
    assert no_comment.returncode == 2 and "needs a --comment" in no_comment.stderr
    no_author = silence(seeded, "add", "--match", "org=x", "--for", "1h", "--comment", "c")
    assert no_author.returncode == 2 and "needs an --author" in no_author.stderr


def test_expire_asks_for_yes_without_a_terminal_and_names_unknown_ids(seeded):
    add(seeded, "org=x")
    asked = silence(seeded, "expire", "1")
    assert asked.returncode == 2 and "add --yes to confirm" in asked.stderr
    assert seeded.sql("SELECT expired_at FROM silence") == [(None,)]
    missing = silence(seeded, "expire", "9", "--yes")
    assert missing.returncode == 1 and "there is no silence 9" in missing.stderr


# ---------------------------------------------------------------------- matchers
def _target(**fields) -> SilenceTarget:
    base = {
        "source_key": "huggingface:deepseek-ai:models",
        "resource_id": "deepseek-ai/DeepSeek-V3",
        "event_type": "model_updated",
        "rules": ("deepseek",),
        "title": "DeepSeek-V3 updated",
        "summary": "new FP8 weights",
    }
    return SilenceTarget(**{**base, **fields})


@pytest.mark.sqlite_only("matchers touch no store")
@pytest.mark.parametrize(
    ("matcher", "matches"),
    [
        ("source=huggingface", True),  # a value without wildcards is a prefix
        ("source=huggingface:deepseek-ai:models", True),
        ("source=github", False),
        ("source=*:deepseek-ai:*", True),
        ("org=deepseek-ai", True),
        ("org=DeepSeek-AI", True),
        ("org=deepseek", False),  # an org is whole
        ("org=deepseek*", True),
        ("repo=deepseek-ai/DeepSeek-V3", True),
        ("repo=deepseek-ai/*", True),
        ("repo=deepseek-ai", False),
        ("rule=deepseek", True),
        ("rule=other", False),
        ("type=model_*", True),
        ("type=model", False),
        ("text=fp8", True),  # the summary, case-insensitive
        ("text=v3 upd", True),
        ("text=int4", False),
        ("text=~fp(8|16)", True),
        ("text=~^new", False),  # the title comes first
        ("org=~deep.*", True),  # anchored
        ("org=~deep", False),
        # Negative matchers (Alertmanager's != and !~): the opposite of = and =~.
        ("source!=github", True),
        ("source!=huggingface", False),  # not the prefix
        ("org!=deepseek-ai", False),
        ("org!=qwen", True),
        ("repo!=deepseek-ai/*", False),
        ("type!=model_added", True),
        ("text!=int4", True),
        ("text!=FP8", False),
        ("text!~fp(8|16)", False),
        ("org!~deep", True),  # anchored, as =~
        ("org!~deep.*", False),
    ],
)
def test_matchers(matcher, matches):
    assert parse_matcher(matcher).matches(_target()) is matches


@pytest.mark.sqlite_only("matchers touch no store")
def test_a_rule_matcher_needs_every_notifying_rule_to_match():
    m = parse_matcher("rule=deepseek")
    assert not m.matches(_target(rules=("deepseek", "critical")))
    assert not m.matches(_target(rules=()))
    assert parse_matcher("rule=*").matches(_target(rules=("deepseek", "critical")))


@pytest.mark.sqlite_only("matchers touch no store")
def test_a_negative_matcher_matches_a_field_a_hit_does_not_have():
    """Alertmanager: a label that is absent matches !=; here an org a resource lacks, and the
    rules of an operator's own alert."""
    assert parse_matcher("org!=vllm").matches(_target(resource_id="vllm"))
    assert parse_matcher("rule!=deepseek").matches(_target(rules=()))
    # Every notifying rule must match, as for =: one rule that is x keeps the alert.
    assert not parse_matcher("rule!=deepseek").matches(_target(rules=("other", "deepseek")))
    assert parse_matcher("rule!~deep.*").matches(_target(rules=("qwen", "other")))
    assert str(parse_matcher("source!=github")) == "source!=github"
    assert parse_matcher("text=!x").op == "=" and parse_matcher("text=!x").value == "!x"


def test_a_negative_matcher_silences_what_it_does_not_match_and_is_audited(seeded, github, welink):
    result = add(seeded, "text!~crash|hang", "source!=pypi")
    assert "text!~crash|hang source!=pypi" in result.stdout
    github.add_issue(REPO, "Qwen3 crash")
    github.add_issue(REPO, "Qwen3 slow")
    seeded.once()
    assert [(r[1], r[2]) for r in deliveries(seeded)] == [
        ("Qwen3 crash", "sent"),
        ("Qwen3 slow", "silenced"),
    ]
    [(matchers,)] = seeded.sql("SELECT matchers FROM silence")
    stored = json.loads(matchers) if isinstance(matchers, str) else matchers
    assert [m["op"] for m in stored] == ["!~", "!="]
    assert seeded.sql("SELECT action FROM audit WHERE action = 'silence_add'") == [("silence_add",)]
    listed = silence(seeded, "list")
    assert "text!~crash|hang source!=pypi" in listed.stdout


@pytest.mark.sqlite_only("matchers touch no store")
def test_an_org_matcher_does_not_match_a_resource_without_an_owner():
    assert not parse_matcher("org=vllm").matches(_target(resource_id="vllm"))
    with pytest.raises(SilenceError, match="matches every hit"):
        check_matchers([parse_matcher("org=~.*"), parse_matcher("rule=*")])


def test_a_silence_is_active_in_its_window_only(seeded):
    with seeded.store() as store:
        start = datetime.now(UTC) + timedelta(hours=1)
        silences.add_silence(
            store, ["org=x"], author="a", comment="c", duration="1h", starts_at=start, actor="t"
        )
        [s] = silences.read_current(store, datetime.now(UTC))
    assert not s.active(start - timedelta(seconds=1))
    assert s.active(start) and not s.active(start + timedelta(hours=1))
    assert s.state(start - timedelta(seconds=1)) == "pending"
