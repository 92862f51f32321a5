"""WeCom group robot: payload, byte limits, answers, secrets, hostile text, and the outbox."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from channel_cases import HOSTILE_TITLE, LINK, build, context, hostile, outgoing, rule_routed_config
from conftest import GH_TOKEN

from mrt_engine.notify import wecom
from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.wecom import WeComSimulator

pytestmark = pytest.mark.both_backends  # the outbox test runs on SQLite and PostgreSQL

KEY = "wc-key-693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
REPO = "vllm-project/vllm"
LINK_TARGET = "https://huggingface.co/deepseek-ai/DeepSeek%5FV4%7Ebeta"


@pytest.fixture
def sim() -> Iterator[WeComSimulator]:
    server = WeComSimulator(token=KEY).start()
    yield server
    server.stop()


def channel(sim: WeComSimulator, **settings):
    made, errors = build(wecom, {"webhook_env": "WC", **settings}, {"WC": sim.webhook_url})
    assert errors == [] and made is not None
    return made


def test_a_markdown_message_has_the_text_the_link_and_userid_mentions(sim):
    assert channel(sim, at_user_ids=["wangqing", "lisi"]).send(outgoing()).ok
    [request] = sim.requests
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.target == f"/cgi-bin/webhook/send?key={KEY}"
    body = json.loads(request.body)
    assert set(body) == {"msgtype", "markdown"} and set(body["markdown"]) == {"content"}
    content = body["markdown"]["content"]
    # An underscore inside a word formats nothing: it stays (markup.py).
    assert content.startswith("［MRT］ New model · deepseek-ai/DeepSeek_V4～beta\n")
    assert content.endswith(f"[{LINK_TARGET}]({LINK_TARGET})\n<@wangqing>\n<@lisi>")


def test_a_text_message_mentions_through_its_lists(sim):
    made = channel(
        sim, message_type="text", at_user_ids=["wangqing"], at_mobiles=["13800001111"], at_all=True
    )
    assert made.send(outgoing()).ok
    body = json.loads(sim.requests[0].body)
    assert body == {
        "msgtype": "text",
        "text": {
            "content": body["text"]["content"],
            "mentioned_list": ["wangqing", "@all"],
            "mentioned_mobile_list": ["13800001111"],
        },
    }
    assert body["text"]["content"].startswith("[MRT] New model") and body["text"][
        "content"
    ].endswith(LINK)


def test_markdown_cannot_mention_mobiles_or_everyone():
    with pytest.raises(ValueError, match="at_mobiles and at_all need message_type: text"):
        wecom.WeComSettings(at_all=True)
    wecom.WeComSettings(message_type="text", at_all=True, at_mobiles=["13800001111"])


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        (93000, False),  # invalid webhook URL: an operator fixes the key, the retry delivers
        (45009, False),  # over 20 a minute
        (40058, True),  # invalid parameter: this body never succeeds
        (44004, True),
        (40008, True),
        (-1, False),
    ],
)
def test_each_error_code_is_retried_or_dead_lettered(sim, code, permanent):
    sim.fail_next(code)
    result = channel(sim).send(outgoing())
    assert not result.ok and result.permanent is permanent and result.http_status == 200
    assert result.error.startswith(f"WeCom code {code} (")
    assert json.loads(result.reply)["errcode"] == code


def test_the_receiver_enforces_the_byte_limits_and_the_rate(sim):
    made = channel(sim)
    sim.rate_per_minute = 2
    results = [made.send(outgoing()) for _ in range(3)]
    assert [r.ok for r in results] == [True, True, False]
    assert results[2].error.startswith("WeCom code 45009 (API frequency over the limit)")
    assert not results[2].permanent


def test_a_hostile_event_stays_inert_within_4096_bytes_and_keeps_its_link(sim):
    assert channel(sim, at_user_ids=["wangqing"]).send(outgoing(hostile())).ok
    assert channel(sim, message_type="text").send(outgoing(hostile())).ok
    markdown, text = (json.loads(r.body) for r in sim.requests)
    shown = markdown["markdown"]["content"]
    assert len(shown.encode()) <= 4096 and len(text["text"]["content"].encode()) <= 2048
    # Only our mention and our link are markup.
    assert shown.count("<") == 1 and shown.endswith("\n<@wangqing>")
    assert shown.count("](") == 1 and f"[{LINK_TARGET}]({LINK_TARGET})" in shown
    assert "＜@all＞" in shown and "［click me］" in shown and "\n#" not in shown
    assert "{{ 7＊7 }}" in shown and "\x1b" not in shown
    plain = text["text"]["content"]
    assert "<" not in plain and "＜@all＞" in plain and "{{ 7*7 }}" in plain
    assert plain.endswith(LINK)


def test_a_long_chinese_summary_is_cut_to_the_byte_limit_not_refused(sim):
    long = context(summary="深度求索" * 7500)
    assert channel(sim).send(outgoing(long)).ok
    content = json.loads(sim.requests[0].body)["markdown"]["content"]
    assert 3500 < len(content.encode()) <= 4096 and content.endswith(f"({LINK_TARGET})")


def test_the_key_stays_out_of_errors_replies_and_the_description(sim):
    made = channel(sim)
    assert KEY not in made.describe() and "key=***" in made.describe()
    sim.inject(Fault(502, echo="bad gateway for POST {target}", path="/cgi-bin"))
    results = [made.send(outgoing())]
    sim.stop()
    results.append(made.send(outgoing()))
    recorded = repr([(r.error, r.reply) for r in results])
    assert KEY not in recorded and "key=***" in recorded


def test_the_default_rate_is_wecoms():
    assert wecom.DEFAULT_RATE_PER_MINUTE == 20


def test_a_rule_routes_an_event_to_wecom_through_the_outbox(gh_tracker, github):
    with WeComSimulator(token=KEY) as server:
        tracker = gh_tracker(rule_routed_config("wecom", {"webhook_env": "WC"}))
        tracker.env.update(WC=server.webhook_url, GH=GH_TOKEN)
        github.add_issue(REPO, "seed")
        tracker.once()
        github.add_issue(REPO, HOSTILE_TITLE.replace("{{", "DeepSeek {{"))
        server.fail_next(93000)
        run = tracker.cli("run", "--once", "--log-level", "debug")
        assert run.returncode == 1, run.stderr
        assert tracker.once(later=0.3) == 0
        [message] = server.messages
    assert message.text.endswith("(https://github.com/vllm-project/vllm/issues/2)")
    rows = tracker.sql(
        "SELECT d.channel, d.status, a.outcome, a.error FROM delivery d"
        " JOIN attempt a ON a.delivery_id = d.id ORDER BY a.id"
    )
    assert [r[:3] for r in rows] == [("wecom", "sent", "failed"), ("wecom", "sent", "sent")]
    assert rows[0][3].startswith("WeCom code 93000 (invalid webhook URL)")
    everything = run.stdout + run.stderr + repr(tracker.sql("SELECT * FROM attempt"))
    assert KEY not in everything


def test_a_rate_limit_code_is_retried_not_before_a_minute(sim):
    sim.fail_next(45009)
    result = channel(sim).send(outgoing())
    assert not result.ok and not result.permanent
    assert result.rate_limited and result.retry_after == 60
