"""The Slack channel: Block Kit messages to an incoming webhook on 127.0.0.1 that checks them as
Slack does, through the real outbox and delivery workers."""

from __future__ import annotations

import json

import pytest
from channel_runs import HOSTILE_TITLE, REPO, attempts, baseline, channel_tracker, deliveries

from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.slack import SlackSimulator, slack_length

pytestmark = pytest.mark.both_backends

TOKEN = "xoxslacktok-SECRET-8d7c6b5a4f3e"


@pytest.fixture
def slack():
    sim = SlackSimulator(token=TOKEN).start()
    yield sim
    sim.stop()


@pytest.fixture
def slack_tracker(make_tracker, github, slack):
    def make(settings=None, url=None):
        return channel_tracker(
            make_tracker,
            github,
            {"slack": {"webhook_env": "SLACK_URL", **(settings or {})}},
            {"SLACK_URL": url or slack.webhook_url},
        )

    return make


def test_a_slack_message_has_blocks_mentions_the_link_and_a_fallback(slack_tracker, github, slack):
    tracker = slack_tracker({"mentions": ["U0ALICE1", "S0ONCALL", "here"]})
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek-V4 support", user="alice", labels=("new-model",))
    assert tracker.once() == 0
    [posted] = slack.messages
    body = posted.payload
    link = f"https://github.com/{REPO}/issues/2"
    mentions, section, actions = body["blocks"]
    assert mentions == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "<@U0ALICE1> <!subteam^S0ONCALL> <!here>"},
    }
    assert section["type"] == "section" and section["text"]["type"] == "plain_text"
    text = section["text"]["text"]
    assert text.startswith("[MRT] New issue · vllm-project/vllm\nDeepSeek-V4 support\n")
    assert 'Matched: watch_keywords (keyword "DeepSeek" in title)' in text
    assert text.endswith(link)
    assert actions == {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Open", "emoji": False},
                "url": link,
            }
        ],
    }
    assert body["text"].startswith("<@U0ALICE1> <!subteam^S0ONCALL> <!here> [MRT] New issue")
    assert body["unfurl_links"] is False and body["unfurl_media"] is False
    assert slack.markup() == ["@U0ALICE1", "!subteam^S0ONCALL", "!here"] * 2
    assert deliveries(tracker)[0][2:4] == ("sent", 1)
    assert attempts(tracker)[0][1:4] == ("sent", 200, "ok")


def test_a_hostile_title_can_form_no_mention_link_or_template(slack_tracker, github, slack):
    tracker = slack_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, HOSTILE_TITLE, body="<!everyone> ping")
    tracker.once()
    [posted] = slack.messages
    assert slack.markup() == []  # nothing Slack would parse as a link or a mention
    text = posted.payload["blocks"][0]["text"]["text"]
    assert "<!channel> <@U0BOSS> <http://evil.example|click>" in text  # plain_text: inert
    assert "{{ 7*7 }}" in text and "49" not in text
    assert "\x1b" not in posted.body.decode() and "\\u001b" not in posted.body.decode()
    fallback = posted.payload["text"]
    assert "&lt;!channel&gt; &lt;@U0BOSS&gt; &lt;http://evil.example|click&gt;" in fallback
    assert "&amp; &lt;b&gt;" in fallback


def test_the_fallback_text_cannot_be_formatted_by_a_title(slack_tracker, github, slack):
    """Slack's mrkdwn has no escape for * _ ~ ` (only &amp; &lt; &gt; are decoded): in the
    fallback they are shown in their full-width forms, as in the robots' markdown; an
    underscore inside a word formats nothing and stays; the link is kept as it is."""
    tracker = slack_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek *bold* _it_ ~strike~ `code` deepseek_v3_base ```x```")
    tracker.once()
    [posted] = slack.messages
    fallback = posted.payload["text"]
    assert "DeepSeek ＊bold＊ ＿it＿ ～strike～ ｀code｀ deepseek_v3_base ｀｀｀x｀｀｀" in fallback
    assert not {"*", "~", "`"} & set(fallback)
    assert fallback.endswith(f"https://github.com/{REPO}/issues/2")
    # The section block is plain_text: there the title is shown as it is.
    assert "*bold* _it_ ~strike~ `code`" in posted.payload["blocks"][0]["text"]["text"]


def test_the_button_speaks_the_channels_locale_unless_it_is_set(slack_tracker, github, slack):
    tracker = slack_tracker({"locale": "zh"})
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    tracker.once()
    [posted] = slack.messages
    assert posted.payload["blocks"][-1]["elements"][0]["text"]["text"] == "打开"


def test_a_long_message_fits_a_section_and_keeps_the_link(slack_tracker, github, slack):
    tracker = slack_tracker()
    baseline(tracker, github)
    # Astral characters count two each where Slack counts (UTF-16).
    github.add_issue(REPO, "DeepSeek " + "🚀 long title " * 400, body="details 😀 " * 3000)
    tracker.once()
    [posted] = slack.messages  # accepted: every block within Slack's limits
    text = posted.payload["blocks"][0]["text"]["text"]
    assert slack_length(text) <= 3000
    assert text.endswith(f"https://github.com/{REPO}/issues/2")
    assert posted.payload["blocks"][1]["elements"][0]["url"].endswith("/issues/2")


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (400, "invalid_payload", "dead"),
        (400, "no_text", "dead"),
        (400, "invalid_blocks", "dead"),
        (403, "invalid_token", "retrying"),
        (403, "action_prohibited", "retrying"),
        (403, "posting_to_general_channel_denied", "retrying"),
        (404, "channel_not_found", "retrying"),
        (404, "no_service", "retrying"),
        (410, "channel_is_archived", "retrying"),
        (500, "rollup_error", "retrying"),
    ],
)
def test_each_slack_error_is_retried_or_dead_as_documented(
    slack_tracker, github, slack, status, code, outcome
):
    tracker = slack_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    slack.inject(Fault(status, code, path="/services/", headers={"Content-Type": "text/html"}))
    tracker.once()
    assert deliveries(tracker)[0][2:5] == (outcome, 1, f"HTTP {status} from Slack: {code}")


def test_rate_limited_is_retried_not_before_its_retry_after(slack_tracker, github, slack):
    tracker = slack_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    slack.inject(Fault(429, "rate_limited", path="/services/", headers={"Retry-After": "30"}))
    tracker.once()
    assert deliveries(tracker)[0][2:] == (
        "retrying",
        1,
        "HTTP 429 from Slack: rate_limited (Retry-After: 30)",
    )
    tracker.once(later=5)  # the backoff alone would retry now: Slack asked for 30 s
    assert deliveries(tracker)[0][2:4] == ("retrying", 1) and slack.messages == []
    tracker.once(later=30.5)
    assert deliveries(tracker)[0][2:4] == ("sent", 2)
    assert len(slack.messages) == 1


def test_the_simulator_answers_slacks_own_errors(slack_tracker, github, slack):
    """Not injected: the simulator's own checks (a wrong token, an archived channel)."""
    tracker = slack_tracker(url=slack.webhook_url.replace(TOKEN, "wrongtoken-0000"))
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    tracker.once()
    assert deliveries(tracker)[0][2:5] == ("retrying", 1, "HTTP 403 from Slack: invalid_token")
    slack.archived = True
    tracker.env["SLACK_URL"] = slack.webhook_url
    tracker.once(later=0.3)
    assert deliveries(tracker)[0][2:5] == (
        "retrying",
        2,
        "HTTP 410 from Slack: channel_is_archived",
    )
    assert slack.refused == [(403, "invalid_token"), (410, "channel_is_archived")]


def test_the_webhook_token_never_reaches_an_error_a_reply_or_a_log(slack_tracker, github, slack):
    tracker = slack_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    slack.inject(Fault(500, echo="rollup_error for {method} {target}", path="/services/"))
    run = tracker.cli("run", "--once", "--log-level", "debug")
    stored = str(deliveries(tracker)) + str(attempts(tracker))
    assert "rollup_error for POST /services/" in stored
    assert TOKEN not in stored + run.stdout + run.stderr
    check = tracker.cli("check")
    assert TOKEN not in check.stdout + check.stderr


@pytest.mark.parametrize("mention", ["<!channel>", "U1 x", "@here", "u0lower", "C0CHANNEL"])
def test_a_mention_that_is_not_an_id_or_special_is_a_config_error(slack_tracker, mention):
    result = slack_tracker({"mentions": [mention]}).cli("check")
    assert result.returncode == 2
    assert "notify.slack.mentions" in result.stderr and "Traceback" not in result.stderr


def test_a_link_that_is_not_http_is_kept_in_the_text_but_not_made_a_button(slack):
    from mrt_engine.notify.base import Outgoing
    from mrt_engine.notify.message import MessageContext
    from mrt_engine.notify.slack import SlackChannel, SlackSettings
    from mrt_engine.secrets import Secret

    channel = SlackChannel(SlackSettings(), Secret(slack.webhook_url, "SLACK_URL"), 5)
    try:
        context = MessageContext(
            event_type="feed_entry",
            source_key="feed:x",
            resource_id="x",
            title="t",
            url="javascript:alert(1)",
            fingerprint="0" * 64,
        )
        payload = channel.payload(Outgoing(1, 1, context))
        assert [b["type"] for b in payload["blocks"]] == ["section"]
        assert payload["blocks"][0]["text"]["text"].endswith("javascript:alert(1)")
        assert channel.send(Outgoing(1, 1, context)).ok
    finally:
        channel.close()
    assert json.loads(slack.messages[0].body)["blocks"] == payload["blocks"]
