"""``mrt-engine preview --channel C FINGERPRINT``: what a channel would send, rendered from the
stored event, never sent, the store only read."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from conftest import WL_TOKEN

pytestmark = pytest.mark.both_backends

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
SMTP_PASSWORD = "smtp-pass-0123456789"


@pytest.fixture
def tracker(gh_tracker, github):
    """A tracker that has sent one alert (a new DeepSeek PR) to WeLink."""
    tracker = gh_tracker(
        {
            "notify": {
                "welink": {"locale": "zh", "at_accounts": ["zhangsan@corp"]},
                "email": {
                    "smtp_host": "127.0.0.1",
                    "smtp_port": 1,  # nothing listens: a preview never connects
                    "to_list": ["oncall@example.com"],
                    "from_addr": "mrt@tracker.example",
                    "user_env": "SMTP_USER",
                    "password_env": "SMTP_PASS",
                },
            },
            "rules": [{"name": "deepseek", "keywords": ["deepseek"], "channels": ["welink"]}],
        }
    )
    tracker.env.update({"SMTP_USER": "mrt-bot", "SMTP_PASS": SMTP_PASSWORD})
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    later = datetime.now(UTC) + timedelta(seconds=1)
    github.add_issue(REPO, "DeepSeek-V4 support", pull=True, labels=("new-model",), at=later)
    github.add_issue(REPO, "Unrelated cleanup", at=later)
    tracker.once()
    return tracker


def fingerprint(tracker, title: str, event_type: str) -> str:
    rows = tracker.sql(
        "SELECT fingerprint FROM event WHERE title = ? AND event_type = ?", title, event_type
    )
    assert len(rows) == 1
    return rows[0][0]


def store_rows(tracker) -> tuple:
    """Every row a write could change (both backends)."""
    tables = ("event", "rule_hit", "alert", "delivery", "attempt", "audit", "source_state")
    return tuple(tuple(tracker.sql(f"SELECT * FROM {t} ORDER BY 1")) for t in tables)


@contextmanager
def commits_seen(tracker) -> Iterator[Callable[[], int]]:
    """On SQLite, a connection held open across the test: its ``PRAGMA data_version`` changes
    when any other connection commits (a checkpoint of the WAL, which a connection closing late
    may run, is not a commit). Yields how many changes it has seen (0 on PostgreSQL)."""
    if tracker.is_postgresql:
        yield lambda: 0
        return
    with closing(sqlite3.connect(tracker.db)) as conn:
        first = conn.execute("PRAGMA data_version").fetchone()[0]
        yield lambda: conn.execute("PRAGMA data_version").fetchone()[0] - first


def test_preview_shows_the_welink_request_without_sending_or_writing(tracker, welink):
    sent = welink.texts()
    assert len(sent) == 1
    before = store_rows(tracker)
    fp = fingerprint(tracker, "DeepSeek-V4 support", "pr_opened")

    with commits_seen(tracker) as changes:
        done = tracker.cli("preview", "--channel", "welink", fp[:10])
        assert changes() == 0  # nothing written

    assert done.returncode == 0, done.stderr
    request, _, body = done.stdout.partition("\n\n")
    assert request.startswith(f"POST {welink.url}/api/werobot/v1/webhook/send?token=***")
    assert WL_TOKEN not in done.stdout
    payload = json.loads(body)
    # What was sent, in the channel's locale with its mentions (uuid and time are per call).
    assert payload["content"]["text"] == sent[0]
    assert payload["content"]["text"].startswith("@zhangsan@corp 【MRT】新 PR · vllm-project/vllm")
    assert payload["atAccounts"] == ["zhangsan@corp"]
    assert welink.texts() == sent  # nothing sent
    assert store_rows(tracker) == before


def test_preview_shows_the_email_as_text_with_no_secret(tracker):
    fp = fingerprint(tracker, "DeepSeek-V4 support", "pr_opened")
    done = tracker.cli("preview", "--channel", "email", fp)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "SMTP 127.0.0.1:1 MAIL FROM:<mrt@tracker.example> RCPT TO:<oncall@example.com>"
    )
    assert "Subject: [MRT] New PR · github:vllm-project/vllm:pulls" in lines
    # The body as a reader sees it (not quoted-printable), with the key fields.
    assert "DeepSeek-V4 support" in lines
    assert "Author: octocat · Labels: new-model" in lines
    assert lines[-1] == "https://github.com/vllm-project/vllm/pull/2"
    assert SMTP_PASSWORD not in done.stdout


def test_preview_of_an_event_no_rule_matched_reads_as_an_operator_resend(tracker):
    fp = fingerprint(tracker, "Unrelated cleanup", "issue_opened")
    done = tracker.cli("preview", "--channel", "welink", fp)
    assert done.returncode == 0, done.stderr
    text = json.loads(done.stdout.partition("\n\n")[2])["content"]["text"]
    assert "命中规则：由操作员手动发送" in text


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--channel", "welink", "0000000000"],
            "mrt-engine: no event matches '0000000000' (give a fingerprint or a prefix of it,"
            " a URL, event:ID or delivery:ID)",
        ),
        (
            ["--channel", "slack", "event:1"],
            "mrt-engine: --channel: 'slack' is not configured under notify (email, welink)",
        ),
    ],
    ids=["unknown fingerprint", "unknown channel"],
)
def test_an_unknown_fingerprint_or_channel_is_one_line_and_exit_2(tracker, args, error):
    done = tracker.cli("preview", *args)
    assert done.returncode == 2
    assert done.stderr.strip() == error
    assert done.stdout == ""


def test_a_reference_to_several_events_asks_for_the_fingerprint(tracker, github):
    github.close(REPO, 3, at=datetime.now(UTC) + timedelta(seconds=2))
    tracker.once()  # the issue's second event (issue_closed): one URL, two events
    url = "https://github.com/vllm-project/vllm/issues/3"
    done = tracker.cli("preview", "--channel", "welink", url)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"mrt-engine: 2 events match {url!r} (")
    assert line.endswith("): give more of the fingerprint")


# A channel module's limits (see mrt_engine/notify/base.py), for Plain below.
MAX_TEXT = 90
MAX_BYTES = None


def test_a_channel_without_its_own_preview_shows_its_text_cut_to_its_module_limit():
    from mrt_engine.notify.base import Channel, Outgoing, SendResult
    from mrt_engine.notify.message import MessageContext

    class Plain(Channel):
        name = "plain"

        def __init__(self, settings) -> None:
            self.settings = settings

        def send(self, outgoing):  # pragma: no cover - never called by a preview
            return SendResult(ok=False)

        def describe(self) -> str:
            return "plain"

    class Settings:
        locale = "zh"
        message_template = None

    url = "https://github.com/vllm-project/vllm/pull/9"
    context = MessageContext(
        event_type="pr_opened",
        source_key="github:vllm-project/vllm:pulls",
        resource_id=REPO,
        title="DeepSeek " * 40,
        url=url,
        fingerprint="f" * 64,
    )
    text = Plain(Settings()).preview(Outgoing(0, 1, context))
    assert text.startswith("【MRT】新 PR · vllm-project/vllm")
    assert len(text) <= MAX_TEXT and text.endswith(url)


PAYLOAD_CHANNELS = {
    "slack": ({}, {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/slacksecret0001"}),
    "webhook": (
        {},
        {
            "WEBHOOK_URL": "https://receiver.example/hook?token=hooksecret0001",
            "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        },
    ),
    "feishu": (
        {"secret_env": "FEISHU_SECRET"},
        {
            "FEISHU_WEBHOOK_URL": "https://open.feishu.cn/open-apis/bot/v2/hook/feishusecret0001",
            "FEISHU_SECRET": "signsecret0001",
        },
    ),
    "dingtalk": (
        {"secret_env": "DINGTALK_SECRET"},
        {
            "DINGTALK_WEBHOOK_URL": "https://oapi.dingtalk.com/robot/send?access_token=dingsecret0001",
            "DINGTALK_SECRET": "SECsignsecret0001",
        },
    ),
    "wecom": (
        {},
        {
            "WECOM_WEBHOOK_URL": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecomsecret0001"
        },
    ),
}


@pytest.mark.parametrize("name", sorted(PAYLOAD_CHANNELS))
def test_a_payload_channel_previews_its_request_body_with_no_secret(name):
    """Preview shows what goes over the wire (the platform's JSON), not only the text."""
    from mrt_engine.notify import kinds
    from mrt_engine.notify.base import ChannelContext, Outgoing
    from mrt_engine.notify.message import MessageContext
    from mrt_engine.secrets import SecretResolver

    options, env = PAYLOAD_CHANNELS[name]
    kind = kinds()[name]
    resolver = SecretResolver(env)
    channel = kind.build(kind.settings(**options), ChannelContext(resolver, 5.0))
    assert channel is not None, resolver.errors
    context = MessageContext(
        event_type="pr_opened",
        source_key="github:vllm-project/vllm:pulls",
        resource_id="vllm-project/vllm",
        title="DeepSeek-V4 support",
        url="https://github.com/vllm-project/vllm/pull/2",
        fingerprint="a" * 64,
        rules=("deepseek",),
    )
    try:
        shown = channel.preview(Outgoing(7, 1, context))
    finally:
        channel.close()
    head, _, body = shown.partition("\n\n")
    assert head.startswith("POST to ")
    assert isinstance(json.loads(body), dict)
    assert "DeepSeek-V4 support" in body
    for value in env.values():
        assert value not in shown
    assert not any(word in shown for word in ("secret0001", "signsecret"))


# ---------------------------------------------------------------------- the optional AI
@pytest.fixture
def ai_tracker(gh_tracker, github):
    """A tracker with the optional AI on (a local OpenAI-compatible server) and one alert
    whose summary the model has not written yet."""
    from mrt_engine.simulators.openai_compat import OpenAICompatSimulator

    with OpenAICompatSimulator(api_key=None) as llm:
        tracker = gh_tracker(
            {
                "rules": [{"name": "deepseek", "keywords": ["deepseek"]}],
                "ai": {"enabled": True, "base_url": llm.base_url, "model": "qwen3-8b"},
            }
        )
        github.add_issue(REPO, "seed", at=T0)
        tracker.once()
        later = datetime.now(UTC) + timedelta(seconds=1)
        github.add_issue(
            REPO,
            "DeepSeek-V4 support",
            pull=True,
            at=later,
            body="Adds **DeepSeek-V4** to the model registry. It needs the new MLA kernels.",
        )
        llm.mode = "failing"  # the send goes with the extractive summary: none is cached
        tracker.once()
        llm.mode = "deterministic"
        yield tracker, llm


def test_preview_with_the_ai_on_says_the_extractive_summary_would_go_until_the_model_wrote_one(
    ai_tracker,
):
    tracker, llm = ai_tracker
    fp = fingerprint(tracker, "DeepSeek-V4 support", "pr_opened")
    asked = len(llm.chat_requests())
    done = tracker.cli("preview", "--channel", "welink", fp[:10])
    assert done.returncode == 0, done.stderr
    assert "Adds DeepSeek-V4 to the model registry." in done.stdout  # extractive: no ** marks
    assert "extractive" in done.stderr and "--ai" in done.stderr
    assert len(llm.chat_requests()) == asked  # a preview asks nothing by itself

    done = tracker.cli("preview", "--channel", "welink", "--ai", fp[:10])
    assert done.returncode == 0, done.stderr
    assert "AI: " in done.stdout and "by the AI" in done.stderr
    assert len(llm.chat_requests()) == asked + 1

    done = tracker.cli("preview", "--channel", "welink", fp[:10])  # now from the cache
    assert "AI: " in done.stdout and "by the AI" in done.stderr
    assert len(llm.chat_requests()) == asked + 1
