"""Slack through the Web API (``chat.postMessage`` with a bot token): the messages of one incident
(a model family across sources) go into one thread, named by the first message's ``ts``, which
the store keeps per (incident, channel). Real engine runs against the Slack simulator."""

from __future__ import annotations

import json

import pytest
from conftest import GH_TOKEN
from test_doctor import checks_of

from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.slack import API_CHANNEL, SlackSimulator

pytestmark = pytest.mark.both_backends

BOT_TOKEN = "xoxb-SECRET-4711-bot-token-9f8e7d"
REPO = "vllm-project/vllm"


@pytest.fixture
def slack():
    sim = SlackSimulator(bot_token=BOT_TOKEN).start()
    yield sim
    sim.stop()


@pytest.fixture
def tracker(make_tracker, hf, modelscope, github, slack):
    """HuggingFace and ModelScope's deepseek-ai, vLLM's pulls; "deepseek" alerts to Slack's Web
    API."""

    def make(settings=None, extra=None):
        github.repo(REPO)
        config = {
            "watch_keywords": ["deepseek", "qwen"],
            "sources": {
                "huggingface": {"orgs": ["deepseek-ai"], "api_base": hf.url},
                "modelscope": {"orgs": ["deepseek-ai"], "api_base": modelscope.url},
                "github": {"repos": [REPO], "token_env": "GH", "api_base": github.url},
            },
            "notify": {
                "slack": {
                    "bot_token_env": "SLACK_BOT",
                    "channel": API_CHANNEL,
                    "api_base_url": slack.api_url,
                    **(settings or {}),
                }
            },
            **(extra or {}),
        }
        return make_tracker(config, {"GH": GH_TOKEN, "SLACK_BOT": BOT_TOKEN})

    return make


def threads(t) -> list[tuple]:
    return t.sql("SELECT incident_id, channel, thread_ts FROM incident_thread ORDER BY id")


def deliveries(t) -> list[tuple]:
    return t.sql("SELECT id, status, attempts, last_error FROM delivery ORDER BY id")


def three_sources(t, hf, modelscope, github) -> None:
    """DeepSeek-V3.2 on HuggingFace, then on ModelScope, then in a vLLM pull request: each
    polled (and delivered) by an engine of its own, as after a restart."""
    assert t.once() == 0  # the baseline
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    assert t.once() == 0
    modelscope.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    assert t.once(later=600) == 0
    github.add_issue(REPO, "[Model] Support deepseek v3.2", pull=True)
    assert t.once(later=1200) == 0


def test_the_messages_of_one_incident_on_three_sources_are_one_slack_thread(
    tracker, hf, modelscope, github, slack
):
    t = tracker()
    three_sources(t, hf, modelscope, github)
    root, second, third = slack.messages
    assert root.thread_ts is None and root.ts
    assert second.thread_ts == root.ts and third.thread_ts == root.ts
    assert "reply_broadcast" not in second.payload  # off unless the channel asks
    assert root.payload["channel"] == API_CHANNEL
    assert "2nd source for DeepSeek-V3.2" in second.payload["blocks"][0]["text"]["text"]
    # Recorded with the first send, kept by the store across the engines.
    [(incident_id, channel, ts)] = threads(t)
    assert (channel, ts) == ("slack", root.ts)
    assert t.sql("SELECT id FROM incident") == [(incident_id,)]
    assert [row[1:3] for row in deliveries(t)] == [("sent", 1)] * 3


def test_another_family_starts_a_thread_of_its_own(tracker, hf, slack):
    t = tracker()
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-R2")
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp-Base")
    assert t.once(later=60) == 0
    by_title = {p.payload["blocks"][0]["text"]["text"].splitlines()[1]: p for p in slack.messages}
    root = by_title["deepseek-ai/DeepSeek-V3.2-Exp"]
    assert by_title["deepseek-ai/DeepSeek-V3.2-Exp-Base"].thread_ts == root.ts
    assert by_title["deepseek-ai/DeepSeek-R2"].thread_ts is None
    assert len(threads(t)) == 2


def test_replies_are_broadcast_to_the_channel_when_it_asks(tracker, hf, modelscope, github, slack):
    t = tracker({"reply_broadcast": True})
    three_sources(t, hf, modelscope, github)
    root, second, third = slack.messages
    assert "reply_broadcast" not in root.payload  # a thread's first message is in the channel
    assert second.payload["reply_broadcast"] is True and third.payload["reply_broadcast"] is True


def test_a_message_whose_thread_is_not_known_yet_goes_to_the_channel_and_none_is_lost(
    tracker, hf, modelscope, slack
):
    t = tracker()
    assert t.once() == 0
    slack.api_errors = ["ratelimited"]  # the incident's first message waits 30 s to retry
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    t.once()
    assert [row[1] for row in deliveries(t)] == ["retrying"] and threads(t) == []
    modelscope.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    assert t.once(later=1) == 0  # the first's retry is not due: the second starts the thread
    [started] = slack.messages
    assert started.thread_ts is None
    assert [row[2] for row in threads(t)] == [started.ts]
    assert t.once(later=3600) == 0  # the retry goes into the thread the second started
    assert slack.messages[1].thread_ts == started.ts
    assert [row[1] for row in deliveries(t)] == ["sent", "sent"]


@pytest.mark.parametrize(
    "code, outcome",
    [
        ("invalid_auth", "retrying"),  # an operator fixes the token, a retry delivers
        ("not_authed", "retrying"),
        ("account_inactive", "retrying"),
        ("token_revoked", "retrying"),
        ("channel_not_found", "retrying"),
        ("not_in_channel", "retrying"),
        ("is_archived", "retrying"),
        ("invalid_blocks", "dead"),  # this message is wrong: the same bytes fail again
        ("msg_too_long", "dead"),
        ("no_text", "dead"),
        ("invalid_arguments", "dead"),
        ("internal_error", "retrying"),
        ("fatal_error", "retrying"),
        ("service_unavailable", "retrying"),
    ],
)
def test_each_web_api_error_is_retried_or_dead_as_documented(tracker, hf, slack, code, outcome):
    t = tracker()
    assert t.once() == 0
    slack.api_errors = [code]
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    t.once()
    [(_, status, attempts, error)] = deliveries(t)
    assert (status, attempts) == (outcome, 1)
    assert error.startswith(f"Slack code {code} (")
    [(http_status, reply)] = t.sql("SELECT http_status, reply FROM attempt")
    assert http_status == 200 and code in reply
    assert threads(t) == []


def test_a_server_error_without_a_body_is_retried(tracker, hf, slack):
    t = tracker()
    assert t.once() == 0
    slack.inject(Fault(503, "upstream down", path="/api/chat.postMessage"))
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    t.once()
    assert deliveries(t)[0][1:] == ("retrying", 1, "HTTP 503 from Slack")


def test_ratelimited_is_retried_not_before_its_retry_after(tracker, hf, slack):
    t = tracker()
    assert t.once() == 0
    slack.api_errors = ["ratelimited"]
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    t.once()
    [(_, status, attempts, error)] = deliveries(t)
    assert (status, attempts) == ("retrying", 1) and "ratelimited" in error
    assert t.sql("SELECT http_status FROM attempt") == [(429,)]
    t.once(later=10)  # the backoff alone would retry now: Slack asked for 30 s
    assert deliveries(t)[0][1:3] == ("retrying", 1) and slack.messages == []
    t.once(later=31)
    assert deliveries(t)[0][1:3] == ("sent", 2) and len(slack.messages) == 1


def test_the_bot_token_never_reaches_the_store_an_error_or_a_log(tracker, hf, slack):
    t = tracker()
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    # A chatty proxy that echoes the request's headers back.
    slack.inject(Fault(500, echo="oops {authorization}", path="/api/chat.postMessage"))
    run = t.cli("run", "--once", "--log-level", "debug")
    assert "oops" in str(t.sql("SELECT reply FROM attempt"))
    t.once(later=3600)
    assert slack.messages and threads(t)
    check = t.cli("check")
    preview = t.cli("preview", "--channel", "slack", "event:2")
    shown = run.stdout + run.stderr + check.stdout + check.stderr + preview.stdout + preview.stderr
    assert BOT_TOKEN not in shown
    stored = "".join(
        str(t.sql(f"SELECT * FROM {table}"))
        for table in ("delivery", "attempt", "incident_thread", "audit")
    )
    assert BOT_TOKEN not in stored and "xoxb-SECRET" not in stored
    if not t.is_postgresql:  # every byte of the store's files
        for path in t.db.parent.glob(t.db.name + "*"):
            assert BOT_TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "settings, env, expected",
    [
        (
            {"webhook_env": "SLACK_URL"},
            {},
            "notify.slack: webhook_env and bot_token_env: give one of them, not both",
        ),
        ({"channel": None}, {}, "notify.slack: channel: required with bot_token_env"),
        ({"channel": "#alerts"}, {}, "notify.slack.channel"),
        (
            {"reply_broadcast": True, "bot_token_env": None, "channel": None},
            {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x"},
            "notify.slack: reply_broadcast: only with bot_token_env",
        ),
        ({"bot_token_env": "SLACK_BOT_UNSET"}, {}, "notify.slack.bot_token_env"),
    ],
)
def test_a_web_api_setting_that_cannot_work_is_one_clear_config_error(
    tracker, settings, env, expected
):
    t = tracker(settings)
    t.env.update(env)
    result = t.cli("check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert BOT_TOKEN not in result.stderr


def test_doctor_checks_the_token_with_auth_test_and_sends_a_test_message(tracker, slack):
    t = tracker()
    result = t.cli("doctor", "--network", "--send-test", "--json")
    checks = checks_of(result)
    assert checks["channel slack"]["ok"], checks["channel slack"]
    assert checks["test message slack"]["ok"], checks["test message slack"]
    assert [r.path for r in slack.requests_to("/api/")] == [
        "/api/auth.test",
        "/api/chat.postMessage",
    ]
    assert len(slack.messages) == 1 and BOT_TOKEN not in result.stdout
    offline = t.cli("doctor")
    assert offline.returncode == 0 and "Traceback" not in offline.stdout + offline.stderr
    assert BOT_TOKEN not in offline.stdout + offline.stderr
    assert "chat.postMessage" in json.dumps(checks) or "Web API" in json.dumps(checks)


def test_doctor_says_when_slack_refuses_the_token(tracker, slack):
    t = tracker()
    t.env["SLACK_BOT"] = "xoxb-wrong-token-0000"
    checks = checks_of(t.cli("doctor", "--network", "--json"))
    assert not checks["channel slack"]["ok"]
    assert "invalid_auth" in json.dumps(checks["channel slack"])


def test_preview_shows_the_web_api_request_with_its_thread_and_no_token(
    tracker, hf, modelscope, github, slack
):
    t = tracker()
    three_sources(t, hf, modelscope, github)
    [(event_id,)] = t.sql("SELECT id FROM event WHERE source_key LIKE 'modelscope%'")
    done = t.cli("preview", "--channel", "slack", f"event:{event_id}")
    assert done.returncode == 0, done.stderr
    assert "chat.postMessage" in done.stdout and f'"channel": "{API_CHANNEL}"' in done.stdout
    assert f'"thread_ts": "{slack.messages[0].ts}"' in done.stdout
    assert BOT_TOKEN not in done.stdout


def test_a_batch_of_one_incidents_messages_threads_before_its_sends_are_recorded(
    tracker, hf, modelscope, github, slack
):
    """A delivery worker claims several due deliveries at once and records their sends after
    the batch: the thread the batch's first message started is known to the rest already."""
    import threading

    from conftest import wait_until

    from mrt_engine.delivery.worker import CLAIM_BATCH, DeliveryWorkers

    t = tracker(extra={"delivery": {"group_wait_seconds": 0, "group_interval_seconds": 0}})
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    modelscope.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    github.add_issue(REPO, "[Model] Support deepseek v3.2", pull=True)
    engine = t.engine()
    engine.open()
    stop = threading.Event()
    workers = DeliveryWorkers(engine.outbox, engine.channels, workers=1, stop=stop)
    try:
        engine.poll_all()
        assert CLAIM_BATCH >= 3
        workers.start()
        workers.notify()
        assert wait_until(lambda: len(slack.messages) == 3, timeout=20)
    finally:
        stop.set()
        workers.join(10)
        workers.close()
        engine.close()
    root, *replies = slack.messages
    assert root.thread_ts is None and [r.thread_ts for r in replies] == [root.ts, root.ts]
    assert [row[2] for row in threads(t)] == [root.ts]
    assert [row[1] for row in deliveries(t)] == ["sent"] * 3


def test_a_cluster_of_one_incidents_alike_alerts_goes_into_its_thread(tracker, hf, github, slack):
    """AI3's bundle of alike alerts of one incident is one message: it threads like one alert."""
    alike = [
        "DeepSeek-V4 fails to load with FP8",
        "DeepSeek-V4 FP8 checkpoint fails to load",
        "deepseek v4: fails to load FP8 weights",
    ]
    t = tracker(
        extra={
            "delivery": {"group_wait_seconds": 30, "group_interval_seconds": 300},
            "scheduler": {"poll_workers": 1},
        }
    )
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V4")
    assert t.once() == 0
    assert t.once(later=61) == 0  # after the group's wait
    [root] = slack.messages
    for title in alike:
        github.add_issue(REPO, title)
    assert t.once(later=120) == 0
    assert t.once(later=400) == 0
    assert len(slack.messages) == 2, [m.payload["text"][:80] for m in slack.messages]
    cluster = slack.messages[1]
    assert "3 alerts" in cluster.payload["blocks"][0]["text"]["text"]
    assert cluster.thread_ts == root.ts


def test_preview_of_an_alert_not_routed_to_slack_shows_the_thread_it_would_join(
    tracker, hf, github, slack, welink
):
    t = tracker(
        extra={
            "watch_keywords": [],
            "rules": [
                {
                    "name": "models",
                    "keywords": ["deepseek"],
                    "source": ["huggingface"],
                    "channels": ["slack"],
                },
                {
                    "name": "pulls",
                    "keywords": ["deepseek"],
                    "source": ["github"],
                    "channels": ["welink"],
                },
            ],
        }
    )
    config = json.loads(t.path.read_text())
    config["notify"]["welink"] = {"webhook_env": "WL"}
    t.path.write_text(json.dumps(config))
    t.env["WL"] = welink.webhook_url
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    assert t.once() == 0
    github.add_issue(REPO, "[Model] Support deepseek v3.2", pull=True)
    assert t.once() == 0
    [root] = slack.messages
    [(event_id,)] = t.sql("SELECT id FROM event WHERE source_key LIKE 'github%pulls'")
    done = t.cli("preview", "--channel", "slack", f"event:{event_id}")
    assert done.returncode == 0, done.stderr
    assert f'"thread_ts": "{root.ts}"' in done.stdout


def test_an_error_code_that_echoes_the_token_is_redacted_before_it_is_cut(tracker, hf, slack):
    """The error code is cut to 80 characters: a token cut there must still be redacted (the
    cut used to come first, leaving the token's start in the middle of the recorded error)."""
    t = tracker()
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    pad = "x" * 45  # the token starts at about the 60th character of the code: the cut is inside
    slack.inject(
        Fault(
            200,
            echo='{"ok": false, "error": "invalid_auth_' + pad + ' {authorization} more"}',
            path="/api/chat.postMessage",
        )
    )
    run = t.cli("run", "--once", "--log-level", "debug")
    [(error,)] = t.sql("SELECT error FROM attempt")
    assert error.startswith("Slack code invalid_auth_x")
    for shown in (error, run.stdout + run.stderr):
        assert "xoxb-SECRET" not in shown and "xoxb-SECRE" not in shown
