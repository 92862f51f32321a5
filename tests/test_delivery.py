"""Delivery (R1/R2): the outbox, retries, dead letters, WeLink and e-mail against real servers."""

from __future__ import annotations

import email
import email.policy
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import WL_TOKEN

from mrt_engine.delivery.backoff import retry_delay
from mrt_engine.notify.message import MessageContext, render
from mrt_engine.simulators.base import Fault

# The suite runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def baseline(tracker, github) -> None:
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()


def deliveries(tracker) -> list[tuple]:
    return tracker.sql("SELECT id, channel, status, attempts, last_error FROM delivery ORDER BY id")


def attempts(tracker) -> list[tuple]:
    return tracker.sql(
        "SELECT delivery_id, outcome, http_status, reply, error, duration_ms FROM attempt ORDER BY id"
    )


# ---------------------------------------------------------------------- WeLink
def test_welink_message_follows_the_documented_format(gh_tracker, github, welink):
    tracker = gh_tracker(
        {"notify": {"welink": {"at_accounts": ["zhangsan@corp", "lisi@corp"], "is_at_all": True}}}
    )
    baseline(tracker, github)
    github.add_issue(
        REPO, "DeepSeek-V3.2 sparse attention", pull=True, user="alice", labels=("new-model",)
    )
    assert tracker.once() == 0
    [received] = welink.messages
    body = received.payload
    assert body["messageType"] == "text"
    assert body["isAt"] is True and body["isAtAll"] is True
    assert body["atAccounts"] == ["zhangsan@corp", "lisi@corp"]
    assert (
        isinstance(body["timeStamp"], int) and abs(body["timeStamp"] - time.time() * 1000) < 60_000
    )
    assert len(body["uuid"]) == 32
    text = body["content"]["text"]
    assert text.startswith("@all @zhangsan@corp @lisi@corp [MRT] New PR · vllm-project/vllm\n")
    assert "DeepSeek-V3.2 sparse attention" in text
    assert 'Matched: watch_keywords (keyword "DeepSeek" in title)' in text
    assert text.endswith("https://github.com/vllm-project/vllm/pull/2")
    assert 1 <= len(text) <= 500


def test_a_long_message_is_cut_to_500_characters_and_keeps_the_link(gh_tracker, github, welink):
    tracker = gh_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek " + "very long title " * 40, body="details " * 400)
    tracker.once()
    text = welink.texts()[0]
    assert len(text) <= 500
    assert text.endswith("https://github.com/vllm-project/vllm/issues/2")
    assert "Matched: watch_keywords" in text


def test_render_keeps_the_link_even_when_everything_else_is_huge():
    context = MessageContext(
        event_type="pr_opened",
        source_key="github:a/b:pulls",
        resource_id="a/b",
        title="T" * 2000,
        url="https://github.com/a/b/pull/1",
        fingerprint="f" * 64,
        summary="S" * 5000,
        rules=tuple(f"rule{i}" for i in range(30)),
        reasons=tuple("keyword x in title " * 5 for _ in range(30)),
    )
    for limit in (500, 200, 80):
        text = render(context, limit)
        assert len(text) <= limit and text.endswith("https://github.com/a/b/pull/1")


def test_event_text_is_never_evaluated_as_a_template():
    context = MessageContext(
        event_type="issue_opened",
        source_key="github:a/b:issues",
        resource_id="a/b",
        title="{{ 7*7 }} {% for x in range(3) %}boom{% endfor %} {{ ''.__class__ }}",
        url="https://x/1",
        fingerprint="0" * 64,
        summary="\x1b[31mred\x1b[0m \u202eevil",
    )
    text = render(context, None)
    assert "{{ 7*7 }} {% for x in range(3) %}boom{% endfor %} {{ ''.__class__ }}" in text
    assert "\x1b" not in text and "\u202e" not in text


def test_failed_sends_are_retried_with_backoff_and_every_attempt_is_recorded(
    gh_tracker, github, welink
):
    tracker = gh_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "Qwen3-Next support")
    welink.inject(Fault(500, "upstream broke", path="/api/werobot"))
    welink.inject(
        Fault(
            200,
            '{"code": "58500", "data": null, "message": "service exception"}',
            path="/api/werobot",
        )
    )
    assert tracker.once() == 1  # the poll worked; the first send failed
    assert deliveries(tracker)[0][2:4] == ("retrying", 1)
    # Each backoff is at most 0.2 s (tests' FAST delivery config): 0.3 s later the retry is due.
    assert tracker.once(later=0.3) == 1
    assert deliveries(tracker)[0][2:4] == ("retrying", 2)
    assert tracker.once(later=0.6) == 0
    assert deliveries(tracker)[0][2:4] == ("sent", 3)
    rows = attempts(tracker)
    assert [(r[1], r[2]) for r in rows] == [("failed", 500), ("failed", 200), ("sent", 200)]
    assert rows[0][4] == "HTTP 500 from WeLink"
    assert rows[1][4] == "WeLink code 58500 (WeLink service error): service exception"
    assert all(r[5] is not None and r[5] >= 0 for r in rows)
    assert len(welink.texts()) == 1


def test_a_sleeping_worker_wakes_for_a_retry_when_its_backoff_ends(gh_tracker, github, welink):
    """Workers sleep until woken; a retry needs no waker (here no engine runs a control job):
    the worker that read when the retry is due wakes then by itself."""
    import threading

    from conftest import wait_until

    from mrt_engine.delivery.worker import DeliveryWorkers

    tracker = gh_tracker({"delivery": {"backoff_initial_seconds": 2, "backoff_max_seconds": 2}})
    baseline(tracker, github)
    github.add_issue(REPO, "Qwen3-Next support")
    welink.inject(Fault(500, "upstream broke", path="/api/werobot"))
    assert tracker.once() == 1  # the poll worked; the first send failed
    assert deliveries(tracker)[0][2:4] == ("retrying", 1)  # due in about two seconds
    engine = tracker.engine()
    engine.open()
    stop = threading.Event()
    assert engine.outbox is not None
    workers = DeliveryWorkers(engine.outbox, engine.channels, workers=1, stop=stop)
    try:
        workers.start()
        # The worker finds the retry not due yet and sleeps; nobody wakes it (60 s at most).
        assert wait_until(lambda: len(welink.texts()) == 1, timeout=20)
    finally:
        stop.set()
        workers.join(10)
        workers.close()
        engine.close()
    assert deliveries(tracker)[0][2:4] == ("sent", 2)


def test_a_delivery_goes_dead_after_max_attempts(gh_tracker, github, welink):
    tracker = gh_tracker({"delivery": {"max_attempts": 2}})
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    welink.inject(Fault(503, path="/api/werobot", times=5))
    tracker.once()
    tracker.once(later=0.3)
    assert deliveries(tracker)[0][2:] == ("dead", 2, "HTTP 503 from WeLink")


def test_invalid_parameters_go_dead_at_once(gh_tracker, github, welink):
    tracker = gh_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    welink.inject(
        Fault(200, '{"code": "58601", "data": null, "message": "param error"}', path="/api/werobot")
    )
    tracker.once()
    assert deliveries(tracker)[0][2:4] == ("dead", 1)


def test_wrong_webhook_token_is_reported_as_robot_missing(gh_tracker, github, welink):
    tracker = gh_tracker()
    tracker.env["WL"] = welink.webhook_url.replace(WL_TOKEN, "wrong-token-123")
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    tracker.once()
    row = deliveries(tracker)[0]
    assert row[2] == "retrying" and "58404 (robot does not exist)" in row[4]
    assert "wrong-token-123" not in str(attempts(tracker))


def test_backoff_is_exponential_capped_and_jittered():
    rng = random.Random(7)
    delays = [retry_delay(n, initial=5, maximum=3600, jitter=0.2, rng=rng) for n in range(1, 13)]
    for n, delay in enumerate(delays[:8], start=1):
        assert 5 * 2 ** (n - 1) * 0.8 <= delay <= 5 * 2 ** (n - 1) * 1.2
    assert all(d <= 3600 for d in delays)
    assert delays[-1] >= 3600 * 0.8
    assert len({round(d, 6) for d in delays[:6]}) == 6


# ---------------------------------------------------------------------- e-mail
def test_a_wait_the_platform_asked_for_is_kept_held_to_an_hour_never_under_the_backoff():
    rng = random.Random(1)
    plain = dict(initial=5.0, maximum=3600.0, jitter=0.0, rng=rng)
    assert retry_delay(1, asked=120, **plain) == 120
    assert retry_delay(1, asked=10**9, **plain) == 3600  # a hostile header: an hour at most
    assert retry_delay(1, asked=float("inf"), **plain) == 3600
    assert retry_delay(5, asked=1, **plain) == 80  # never earlier than the backoff
    assert retry_delay(1, asked=-5, **plain) == 5
    assert retry_delay(1, asked=float("nan"), **plain) == 5


def email_config(server, **extra) -> dict:
    return {
        "notify": {
            "email": {
                "smtp_host": server.host,
                "smtp_port": server.port,
                "user_env": "SMTP_USER",
                "password_env": "SMTP_PASS",
                "from_addr": "mrt@tracker.example",
                "to_list": ["oncall@example.com", "lead@example.com"],
                "ca_file": server.ca_file,
                **extra,
            }
        }
    }


@pytest.fixture
def mail_tracker(gh_tracker):
    def make(server, **extra):
        tracker = gh_tracker(email_config(server, **extra))
        tracker.env.update(SMTP_USER="mrt-bot", SMTP_PASS="smtp-pass-123")
        return tracker

    return make


def test_email_over_starttls_with_login_and_a_stable_message_id(mail_tracker, github, smtp):
    tracker = mail_tracker(smtp)
    baseline(tracker, github)
    # No model named: not an incident's (whose first e-mail has the incident's Message-ID,
    # tests/test_incidents.py), so the Message-ID is the delivery's.
    github.add_issue(REPO, "DeepSeek eval results", body="numbers inside")
    smtp.fail_next.append((451, "4.3.0 try again later"))
    tracker.once()
    tracker.once(later=0.3)
    assert smtp.logins == [("mrt-bot", "smtp-pass-123")] * 2
    [envelope] = smtp.messages
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert envelope.rcpt_tos == ["oncall@example.com", "lead@example.com"]
    assert message["Subject"] == "[MRT] New issue · github:vllm-project/vllm:issues"
    assert message["From"] == "mrt@tracker.example"
    [delivery_id] = [r[0] for r in deliveries(tracker) if r[1] == "email"]
    [(fingerprint,)] = tracker.sql("SELECT fingerprint FROM event WHERE title LIKE 'DeepSeek ev%'")
    assert (
        message["Message-ID"] == f"<mrt.delivery.{delivery_id}.{fingerprint[:16]}@tracker.example>"
    )
    body = message.get_content()
    assert (
        "DeepSeek eval results" in body and "https://github.com/vllm-project/vllm/issues/2" in body
    )
    rows = [r for r in attempts(tracker) if r[0] == delivery_id]
    # One recipient deferred: nobody got the first attempt, everybody got the retry.
    assert rows[0][1] == "failed" and "451" in rows[0][4]
    assert rows[1][1] == "sent" and rows[1][3] == "250 2.0.0 Ok: queued as MRT123"


def test_a_permanently_refused_recipient_does_not_block_the_others(mail_tracker, github, smtp):
    tracker = mail_tracker(smtp)
    baseline(tracker, github)
    github.add_issue(REPO, "Qwen3 release")
    smtp.fail_next.append((550, "5.1.1 no such user"))
    assert tracker.once() == 0
    [envelope] = smtp.messages
    assert envelope.rcpt_tos == ["lead@example.com"]
    [reply] = tracker.sql(
        "SELECT a.reply FROM attempt a JOIN delivery d ON d.id = a.delivery_id WHERE d.channel = 'email'"
    )
    assert reply[0] == "250 2.0.0 Ok: queued as MRT123; refused: oncall@example.com (550)"


def test_email_over_implicit_ssl(mail_tracker, github, smtps):
    tracker = mail_tracker(smtps, use_ssl=True, use_tls=False)
    baseline(tracker, github)
    github.add_issue(REPO, "Qwen3 release")
    assert tracker.once() == 0
    assert len(smtps.messages) == 1


def test_hostile_title_never_becomes_an_email_header(mail_tracker, github, smtp):
    tracker = mail_tracker(smtp)
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek\r\nBcc: victim@evil.example\r\nSubject: pwned")
    tracker.once()
    [envelope] = smtp.messages
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["Bcc"] is None
    assert message.get_all("Subject") == ["[MRT] New issue · github:vllm-project/vllm:issues"]
    assert envelope.rcpt_tos == ["oncall@example.com", "lead@example.com"]


def test_wrong_smtp_password_is_a_failed_attempt_not_a_crash(mail_tracker, github, smtp):
    tracker = mail_tracker(smtp, timeout_seconds=1)
    tracker.env["SMTP_PASS"] = "bad-password-xyz"
    baseline(tracker, github)
    github.add_issue(REPO, "Qwen3 release")
    assert tracker.once() == 1
    row = next(r for r in deliveries(tracker) if r[1] == "email")
    assert row[2] == "retrying" and row[4].startswith("SMTP login refused: 535")
    assert smtp.logins[0] == ("mrt-bot", "bad-password-xyz")
    assert "bad-password-xyz" not in str(attempts(tracker))


def test_channels_retry_independently(mail_tracker, github, welink, smtp):
    tracker = mail_tracker(smtp)
    tracker.config  # noqa: B018 - the config is valid with both channels
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek-V4 weights")
    welink.inject(Fault(503, path="/api/werobot", times=100))
    tracker.once()
    status = {r[1]: r[2] for r in deliveries(tracker)}
    assert status == {"welink": "retrying", "email": "sent"}
    assert len(smtp.messages) == 1


# ---------------------------------------------------------------------- crash recovery
def test_a_restarted_engine_takes_back_claims_at_once_and_marks_the_send_interrupted(
    gh_tracker, github, welink
):
    tracker = gh_tracker({"delivery": {"lease_seconds": 3600}})
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    welink.inject(Fault(503, path="/api/werobot"))
    tracker.once()
    # Simulate an engine killed mid-send: a long lease and an in-flight attempt left behind.
    now = datetime.now(UTC)
    with tracker.store() as store:
        store.db.execute_sql(
            "UPDATE delivery SET status='pending', next_attempt_at=?, lease_owner='dead-engine',"
            " lease_expires_at=?",
            (
                now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            ),
        )
        store.db.execute_sql(
            "INSERT INTO attempt (delivery_id, started_at, outcome, worker) VALUES (1, ?, 'in_flight', 'dead-engine/w1')",
            (now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),),
        )
    assert tracker.once() == 0
    assert deliveries(tracker)[0][2] == "sent"
    outcomes = [r[1] for r in attempts(tracker)]
    assert outcomes == ["failed", "interrupted", "sent"]
    error = tracker.sql("SELECT error FROM attempt WHERE outcome = 'interrupted'")[0][0]
    assert "may or may not have been delivered" in error


def test_a_channel_that_raises_is_a_failed_attempt_and_one_log_line(gh_tracker, github, caplog):
    import logging

    from mrt_engine.config import load_config
    from mrt_engine.engine import Engine
    from mrt_engine.notify.base import Channel

    class Broken(Channel):  # a channel with a bug: a plugin of ours, not a mock of one
        name = "welink"

        def send(self, outgoing):
            raise RuntimeError("boom in the channel")

        def describe(self) -> str:
            return "broken"

    tracker = gh_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek-V4 support")
    engine = Engine(load_config(tracker.path), environ=tracker.env)
    engine.open()
    try:
        engine.poll_all()
        engine.workers.channels["welink"] = Broken()
        with caplog.at_level(logging.INFO):
            report = engine.deliver_once()
    finally:
        engine.close()
    assert (report.attempted, report.failed) == (1, 1)
    [(_, outcome, _, _, error, _)] = attempts(tracker)
    assert outcome == "failed" and error == "RuntimeError: boom in the channel"
    assert deliveries(tracker)[0][2] == "retrying"
    logged = [r for r in caplog.records if r.name == "mrt_engine.delivery.worker"]
    assert [r.getMessage() for r in logged] == [
        "channel welink raised while sending delivery 1: RuntimeError: boom in the channel"
    ]
    assert all(r.exc_info is None for r in caplog.records)  # the traceback only at debug


def test_a_byte_limit_cuts_cjk_text_to_fit_and_keeps_the_link():
    """WeCom counts 4096 bytes, not characters: Chinese text is 3 bytes a character."""
    context = MessageContext(
        event_type="issue_opened",
        source_key="github:vllm",
        resource_id="vllm-project/vllm#1",
        title="支持深度求索模型" * 200,
        url="https://github.com/vllm-project/vllm/issues/1",
        fingerprint="f" * 64,
        summary="摘要内容" * 2000,
        rules=("deepseek",),
    )
    text = render(context, None, limit_bytes=4096)
    assert len(text.encode("utf-8")) <= 4096
    assert text.endswith(context.url)
    assert len(text.encode("utf-8")) > 3000  # cut near the limit, not to a stub
