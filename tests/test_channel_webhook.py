"""The generic webhook channel: Standard Webhooks signatures, checked by a receiver on 127.0.0.1
that verifies them as the spec tells consumers to, through the real outbox and delivery workers."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from channel_runs import (
    HOSTILE_TITLE,
    REPO,
    attempts,
    baseline,
    channel_tracker,
    deliveries,
)

from mrt_engine.notify.base import Outgoing
from mrt_engine.notify.message import MessageContext
from mrt_engine.notify.webhook import SecretFormatError, sign, signing_key
from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.webhook_sink import PATH, Refused, WebhookSink, verify
from mrt_engine.timeutil import from_store

pytestmark = pytest.mark.both_backends

# The spec's test vector (the sign tests of its reference libraries: Go, JavaScript, PHP, Java).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"  # 24 random bytes
URL_TOKEN = "hooktok-SECRET-5e6f7a8b9c"


@pytest.fixture
def sink():
    sim = WebhookSink(secret=SECRET).start()
    yield sim
    sim.stop()


@pytest.fixture
def hook_tracker(make_tracker, github, sink):
    def make(extra=None, env=None):
        return channel_tracker(
            make_tracker,
            github,
            {"webhook": {"url_env": "HOOK_URL", "secret_env": "HOOK_SECRET"}},
            {
                "HOOK_URL": f"{sink.hook_url}?token={URL_TOKEN}",
                "HOOK_SECRET": SECRET,
                **(env or {}),
            },
            extra,
        )

    return make


# ---------------------------------------------------------------------- the signature
def test_the_signature_matches_the_specs_test_vector():
    key = signing_key(VECTOR_SECRET)
    assert sign(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_the_receiver_verifies_the_specs_test_vector_and_refuses_a_changed_byte():
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": f"v1a,ignored {VECTOR_SIGNATURE}",
    }
    assert verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP, tolerance=300) == {
        "test": 2432232314
    }
    with pytest.raises(Refused, match="no matching signature"):
        verify(
            VECTOR_SECRET, headers, VECTOR_BODY[:-2] + b"5}", now=VECTOR_TIMESTAMP, tolerance=300
        )
    with pytest.raises(Refused, match="too old"):  # a replay, minutes later
        verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP + 301, tolerance=300)


@pytest.mark.parametrize(
    "secret",
    ["whsec_not base64!", "whsec_c2hvcnQ=", "whsec_" + "QUFB" * 30],
    ids=["not-base64", "too-short", "too-long"],
)
def test_a_secret_that_is_not_a_standard_webhooks_secret_is_refused(secret):
    with pytest.raises(SecretFormatError):
        signing_key(secret)


def test_a_malformed_secret_is_one_config_error_that_never_shows_it(hook_tracker):
    tracker = hook_tracker(env={"HOOK_SECRET": "whsec_c2hvcnQtc2VjcmV0"})
    result = tracker.cli("check")
    assert result.returncode == 2
    assert "notify.webhook.secret_env: HOOK_SECRET holds 12 bytes" in result.stderr
    assert "c2hvcnQtc2VjcmV0" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------- end to end
def test_a_webhook_is_signed_verifiable_and_carries_the_documented_body(hook_tracker, github, sink):
    tracker = hook_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek-V4 support", user="alice", labels=("new-model",))
    assert tracker.once() == 0
    [got] = sink.messages
    assert sink.refused == []
    delivery_id = deliveries(tracker)[0][0]
    [(fingerprint,)] = tracker.sql("SELECT fingerprint FROM event WHERE title LIKE 'DeepSeek%'")
    assert got.msg_id == f"msg_{delivery_id}_{fingerprint[:16]}"
    assert abs(got.timestamp - time.time()) < 60
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-signature"] == sign(
        signing_key(SECRET), got.msg_id, got.timestamp, got.body
    )
    body = got.payload
    assert got.body == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert body["type"] == "mrt.alert" and body["timestamp"].endswith("Z")
    data = body["data"]
    assert data["version"] == 1 and data["delivery_id"] == delivery_id
    assert data["fingerprint"] == fingerprint
    assert (data["source_key"], data["event_type"], data["resource_id"]) == (
        f"github:{REPO}:issues",
        "issue_opened",
        REPO,
    )
    assert (data["title"], data["author"], data["labels"]) == (
        "DeepSeek-V4 support",
        "alice",
        ["new-model"],
    )
    assert data["url"] == f"https://github.com/{REPO}/issues/2"
    assert data["rules"] == ["watch_keywords"] and data["priority"] == 0
    assert data["reasons"] == ['keyword "DeepSeek" in title']
    assert data["text"].startswith("[MRT] New issue")
    assert data["text"].endswith(data["url"])
    assert deliveries(tracker)[0][2:4] == ("sent", 1)
    assert attempts(tracker)[0][1:3] == ("sent", 204)


def test_a_retry_keeps_the_webhook_id_and_signs_a_new_timestamp(hook_tracker, github, sink):
    tracker = hook_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "Qwen3 support")
    sink.inject(Fault(503, '{"error": "overloaded"}', path=PATH, headers={"Retry-After": "7"}))
    tracker.once()
    assert deliveries(tracker)[0][2:] == (
        "retrying",
        1,
        "HTTP 503 from the webhook (Retry-After: 7)",
    )
    time.sleep(1.05)  # the timestamp counts whole seconds
    tracker.once(later=7.3)  # not before the Retry-After
    first, second = sink.requests_to(PATH)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    for request in (first, second):  # each attempt's signature verifies on its own
        verify(SECRET, request.headers, request.body, now=time.time(), tolerance=300)
    assert [m.msg_id for m in sink.messages] == [first.headers["webhook-id"]]
    assert deliveries(tracker)[0][2:4] == ("sent", 2)


def test_a_retry_after_http_date_is_honoured_and_held_to_an_hour(hook_tracker, github, sink):
    """RFC 9110 §10.2.3: Retry-After is seconds or an HTTP date; the retry is not before it,
    and a wait longer than an hour is held to an hour."""
    tracker = hook_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "Qwen3 support")
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=300), usegmt=True)
    sink.inject(Fault(503, "busy", path=PATH, headers={"Retry-After": when}))
    tracker.once()
    [(next_at, updated)] = tracker.sql("SELECT next_attempt_at, updated_at FROM delivery")
    waited = (from_store(next_at) - from_store(updated)).total_seconds()
    assert 290 <= waited <= 301
    tracker.once(later=60)  # the FAST backoff is long over, the Retry-After is not
    assert deliveries(tracker)[0][2:4] == ("retrying", 1) and len(sink.requests_to(PATH)) == 1
    sink.inject(Fault(429, "slow down", path=PATH, headers={"Retry-After": "86400"}))
    tracker.once(later=301)
    [(next_at, updated)] = tracker.sql("SELECT next_attempt_at, updated_at FROM delivery")
    assert (from_store(next_at) - from_store(updated)).total_seconds() == 3600
    tracker.once(later=301 + 3601)
    assert deliveries(tracker)[0][2:4] == ("sent", 3)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (400, "dead"),
        (401, "dead"),
        (404, "dead"),
        (410, "dead"),
        (413, "dead"),
        (408, "retrying"),
        (429, "retrying"),
        (500, "retrying"),
        (502, "retrying"),
        (302, "retrying"),
    ],
)
def test_each_answer_class_is_retried_or_dead_as_documented(
    hook_tracker, github, sink, status, outcome
):
    tracker = hook_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    sink.inject(Fault(status, '{"error": "nope"}', path=PATH, headers={"Location": "/elsewhere"}))
    tracker.once()
    assert deliveries(tracker)[0][2:5] == (outcome, 1, f"HTTP {status} from the webhook")


def test_a_wrong_secret_is_refused_by_the_receiver_and_goes_dead(hook_tracker, github, sink):
    tracker = hook_tracker(env={"HOOK_SECRET": "whsec_" + "QUJD" * 8})
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    tracker.once()
    assert sink.refused == [(401, "no matching signature found")]
    assert deliveries(tracker)[0][2:5] == ("dead", 1, "HTTP 401 from the webhook")


def test_no_secret_reaches_an_error_a_reply_or_a_log(hook_tracker, github, sink):
    tracker = hook_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    # A receiver that echoes the request line and headers back (a debugging proxy).
    sink.inject(Fault(500, echo="{method} {target} sig={webhook-signature}", path=PATH))
    run = tracker.cli("run", "--once", "--log-level", "debug")
    stored = str(deliveries(tracker)) + str(attempts(tracker))
    assert "POST /hooks/mrt?token=***" in stored  # the echo was recorded, redacted
    assert "HTTP 500 from the webhook" in run.stderr
    everything = stored + run.stdout + run.stderr
    for secret in (URL_TOKEN, SECRET, SECRET.removeprefix("whsec_")):
        assert secret not in everything


def test_an_unreachable_receiver_is_a_retried_failure_without_the_url_token(
    hook_tracker, github, sink
):
    tracker = hook_tracker()
    sink.stop()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    tracker.once()
    row = deliveries(tracker)[0]
    assert row[2] == "retrying" and "ConnectError" in row[4]
    assert URL_TOKEN not in str(attempts(tracker))


def test_a_hostile_title_stays_inert_data(hook_tracker, github, sink):
    tracker = hook_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, HOSTILE_TITLE, body="\x1b[2J{{ config }}")
    tracker.once()
    data = sink.messages[0].payload["data"]
    for text in (data["title"], data["text"]):
        assert "{{ 7*7 }}" in text and "{% if 1 %}x{% endif %}" in text and "49" not in text
        assert "<!channel>" in text and "\x1b" not in text and "\x07" not in text
    assert "{{ config }}" in data["summary"] and "\x1b" not in data["summary"]


def test_a_huge_event_is_cut_to_documented_limits_and_keeps_the_link(hook_tracker, github, sink):
    tracker = hook_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek " + "long title " * 800, body="details " * 20_000)
    tracker.once()
    got = sink.messages[0]
    data = got.payload["data"]
    assert len(data["title"]) <= 1000 and len(data["summary"]) <= 2000
    assert len(data["text"]) <= 4000
    assert data["text"].endswith(f"https://github.com/{REPO}/issues/2")
    assert data["url"] == f"https://github.com/{REPO}/issues/2"
    assert len(got.body) < 20_000  # the spec's recommended most


def test_a_retry_changes_only_the_timestamp_and_the_signature(hook_tracker):
    """The body a receiver stores is the same on every attempt of one delivery."""
    context = MessageContext(
        event_type="pr_opened",
        source_key="github:a/b:pulls",
        resource_id="a/b",
        title="T",
        url="https://x/1",
        fingerprint="ab" * 32,
        occurred_at=datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
    )
    tracker = hook_tracker()
    from mrt_engine.components import build_components

    channel = build_components(tracker.config, tracker.env).channels["webhook"]
    try:
        body1, headers1 = channel.request(Outgoing(5, 1, context), now=1_800_000_000)
        body2, headers2 = channel.request(Outgoing(5, 2, context), now=1_800_000_060)
    finally:
        channel.close()
    assert body1 == body2
    assert json.loads(body1)["timestamp"] == "2026-11-20T08:00:00Z"
    assert headers1["webhook-id"] == headers2["webhook-id"] == "msg_5_abababababababab"
    assert headers2["webhook-timestamp"] == "1800000060"
    assert headers1["webhook-signature"] != headers2["webhook-signature"]


def test_a_signing_secret_given_where_its_variables_name_belongs_is_never_echoed(hook_tracker):
    # whsec_ secrets without "+", "/" or "=" are valid variable names: the usual slip.
    tracker = hook_tracker()
    config = json.loads(tracker.path.read_text())
    config["notify"]["webhook"]["secret_env"] = VECTOR_SECRET
    tracker.path.write_text(json.dumps(config))
    result = tracker.cli("check")
    assert result.returncode == 2
    assert "looks like the secret itself (not shown)" in result.stderr
    assert VECTOR_SECRET.removeprefix("whsec_") not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "value", ["\u00b2", "\u00bd", "-5", "1e9", "Thu, 01 Jan 1970 00:00:00 GMT"]
)
def test_a_strange_retry_after_is_still_a_recorded_rate_limit(hook_tracker, github, sink, value):
    """A Retry-After that is no number of seconds (a superscript digit is ``isdigit()`` but not
    a ``float``), negative, or a date long past: the 429 is recorded as the platform's refusal
    and retried, never a channel crash."""
    tracker = hook_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "Qwen3 support")
    sink.inject(Fault(429, "slow down", path=PATH, headers={"Retry-After": value}))
    tracker.once()
    [(_, _, status, attempts_made, error)] = deliveries(tracker)
    assert (status, attempts_made) == ("retrying", 1)
    assert error.startswith("HTTP 429 from the webhook"), error
