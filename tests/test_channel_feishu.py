"""Feishu/Lark custom bot: payload, signature, answers, secrets, hostile text, and the outbox."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from channel_cases import HOSTILE_TITLE, LINK, build, context, hostile, outgoing, rule_routed_config
from conftest import GH_TOKEN

from mrt_engine.notify import feishu
from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.feishu import FeishuSimulator

pytestmark = pytest.mark.both_backends  # the outbox test runs on SQLite and PostgreSQL

TOKEN = "fs-hook-5e3d587e-d78e-4a07-bd07-SECRET"
SECRET = "fs-sign-nIMtb7r3N9pkXyXdtAbx6e"
REPO = "vllm-project/vllm"


@pytest.fixture
def sim() -> Iterator[FeishuSimulator]:
    server = FeishuSimulator(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def signed_sim() -> Iterator[FeishuSimulator]:
    server = FeishuSimulator(token=TOKEN, secret=SECRET).start()
    yield server
    server.stop()


def channel(sim: FeishuSimulator, **settings):
    env = {"FS": sim.webhook_url, "FS_SECRET": SECRET}
    made, errors = build(feishu, {"webhook_env": "FS", **settings}, env)
    assert errors == [] and made is not None
    return made


def expected_sign(timestamp: str, secret: str) -> str:
    # Written out from Feishu's documentation, independently of the channel's code.
    string_to_sign = timestamp + "\n" + secret
    mac = hmac.new(string_to_sign.encode("utf-8"), digestmod=hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def test_a_post_message_has_the_title_the_text_the_link_as_an_a_element_and_the_mentions(sim):
    made = channel(sim, at_user_ids=["ou_7d8a6e6df7621556ce0d21922b676706ccs"], at_all=True)
    result = made.send(outgoing())
    assert result.ok and result.http_status == 200
    [request] = sim.requests
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    body = json.loads(request.body)
    assert set(body) == {"msg_type", "content"}  # unsigned: no timestamp or sign
    assert body["msg_type"] == "post"
    post = body["content"]["post"]["zh_cn"]
    assert post["title"] == "[MRT] New model · huggingface:deepseek-ai:models"
    paragraphs = post["content"]
    assert paragraphs[0] == [
        {"tag": "at", "user_id": "all"},
        {"tag": "at", "user_id": "ou_7d8a6e6df7621556ce0d21922b676706ccs"},
    ]
    assert paragraphs[-1] == [{"tag": "a", "text": LINK, "href": LINK}]
    assert all(e["tag"] in ("text", "a", "at") for p in paragraphs for e in p)
    assert 'Matched: watch_deepseek (keyword "deepseek" in title)' in sim.texts()[0]


def test_a_text_message_mentions_with_at_tags(sim):
    made = channel(sim, message_type="text", at_user_ids=["ou_abc"], at_all=True)
    assert made.send(outgoing()).ok
    body = json.loads(sim.requests[0].body)
    assert body["msg_type"] == "text"
    text = body["content"]["text"]
    assert text.startswith('<at user_id="all"></at> <at user_id="ou_abc"></at> [MRT] New model')
    assert text.endswith(LINK)


def test_a_signed_message_carries_the_timestamp_and_the_documented_signature(signed_sim):
    made = channel(signed_sim, secret_env="FS_SECRET")
    assert made.send(outgoing()).ok
    body = json.loads(signed_sim.requests[0].body)
    assert isinstance(body["timestamp"], str) and abs(int(body["timestamp"]) - time.time()) < 60
    assert body["sign"] == expected_sign(body["timestamp"], SECRET)
    assert feishu.sign(1599360473, "test") == expected_sign("1599360473", "test")


def test_a_wrong_signing_secret_is_refused_with_19021_and_retried(signed_sim):
    env = {"FS": signed_sim.webhook_url, "FS_SECRET": "not-the-secret"}
    made, _ = build(feishu, {"webhook_env": "FS", "secret_env": "FS_SECRET"}, env)
    result = made.send(outgoing())
    assert not result.ok and not result.permanent
    assert result.error.startswith("Feishu code 19021 (signature mismatch or timestamp expired)")
    assert signed_sim.messages == []


def test_the_receiver_refuses_a_signature_over_an_hour_old(signed_sim):
    made = channel(signed_sim, secret_env="FS_SECRET")
    old = made.payload(outgoing(), now=int(time.time()) - 3700)
    answer = httpx.post(signed_sim.webhook_url, json=old).json()
    assert answer["code"] == 19021 and signed_sim.messages == []
    fresh = made.payload(outgoing(), now=int(time.time()) - 3500)
    assert httpx.post(signed_sim.webhook_url, json=fresh).json()["code"] == 0


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        (19001, False),  # the webhook's token: an operator fixes the URL, the retry delivers
        (19002, True),  # msg_type missing: this body can never succeed
        (19007, False),
        (19021, False),  # signature or clock: a retry signs again
        (19022, False),
        (19024, True),  # this message lacks the bot's keyword
        (9499, True),
        (11232, False),  # frequency limited
        (19999, False),  # unknown: retried, never lost
    ],
)
def test_each_error_code_is_retried_or_dead_lettered(sim, code, permanent):
    sim.MESSAGES.setdefault(19999, "something new")
    sim.fail_next(code)
    result = channel(sim).send(outgoing())
    assert not result.ok and result.permanent is permanent and result.http_status == 200
    assert result.error.startswith(f"Feishu code {code} (")
    assert json.loads(result.reply)["code"] == code


def test_the_older_status_code_answer_is_a_success(sim):
    sim.inject(Fault(200, '{"StatusCode": 0, "StatusMessage": "success"}', path="/open-apis"))
    assert channel(sim).send(outgoing()).ok
    sim.inject(Fault(200, '{"StatusCode": 19021, "StatusMessage": "sign fail"}', path="/open"))
    result = channel(sim).send(outgoing())
    assert not result.ok and "19021" in result.error


def test_http_errors_and_non_json_answers_are_retried(sim):
    sim.inject(Fault(503, "busy", path="/open-apis"))
    assert channel(sim).send(outgoing()).error == "HTTP 503 from Feishu"
    sim.inject(Fault(kind="html", path="/open-apis"))
    result = channel(sim).send(outgoing())
    assert result.error == "Feishu answered non-JSON" and not result.permanent


def test_a_hostile_event_stays_text_within_20_kb_and_keeps_its_link(sim):
    for message_type in ("post", "text"):
        result = channel(sim, message_type=message_type).send(outgoing(hostile()))
        assert result.ok, result
    post, text = (json.loads(r.body) for r in sim.requests)
    assert all(len(r.body) <= 20 * 1024 for r in sim.requests)
    elements = [e for p in post["content"]["post"]["zh_cn"]["content"] for e in p]
    assert [e["tag"] for e in elements if e["tag"] != "text"] == ["a"]  # no at, only the link
    assert elements[-1] == {"tag": "a", "text": LINK, "href": LINK}
    for shown in (sim.texts()[0], text["content"]["text"]):
        assert "<at" not in shown and '＜at user_id="all"＞' in shown
        assert "{{ 7*7 }}" in shown and "\x1b" not in shown
        assert shown.endswith(LINK)
    assert text["content"]["text"].count("<") == 0


def test_secrets_stay_out_of_errors_replies_and_the_description(signed_sim):
    made = channel(signed_sim, secret_env="FS_SECRET")
    assert TOKEN not in made.describe() and made.describe().endswith(
        "/open-apis/bot/v2/hook/*** (post, signed)"
    )
    # A proxy that echoes the request line, then one that echoes the token alone.
    signed_sim.inject(Fault(502, echo="bad gateway for POST {target}", path="/open-apis"))
    signed_sim.inject(Fault(502, body=f"no route to hook {TOKEN}", path="/open-apis"))
    results = [made.send(outgoing()) for _ in range(2)]
    signed_sim.stop()
    results.append(made.send(outgoing()))  # connection refused: httpx names the URL
    recorded = repr([(r.error, r.reply) for r in results])
    assert TOKEN not in recorded and SECRET not in recorded
    assert TOKEN[:12] not in recorded


def test_config_errors_name_the_setting_and_never_the_secret():
    _, errors = build(feishu, {"webhook_env": "FS"}, {"FS": "ftp://open.feishu.cn/x"})
    assert errors == ["notify.feishu.webhook_env: FS does not hold an http(s) URL"]
    _, errors = build(
        feishu, {"webhook_env": "FS", "secret_env": "NOPE"}, {"FS": "https://h/hook/t"}
    )
    assert errors == [
        "notify.feishu.secret_env: environment variable NOPE is not set (the robot's signing secret)"
    ]
    with pytest.raises(ValueError, match="invalid user id"):
        feishu.FeishuSettings(at_user_ids=['ou_1"></at><at user_id="all'])


def test_the_default_rate_is_feishus():
    assert feishu.DEFAULT_RATE_PER_MINUTE == 100 and feishu.DEFAULT_RATE_PER_SECOND == 5


def test_a_rule_routes_an_event_to_feishu_through_the_outbox(gh_tracker, github):
    with FeishuSimulator(token=TOKEN, secret=SECRET) as server:
        tracker = gh_tracker(
            rule_routed_config("feishu", {"webhook_env": "FS", "secret_env": "FS_SECRET"})
        )
        tracker.env.update(FS=server.webhook_url, FS_SECRET=SECRET, GH=GH_TOKEN)
        github.add_issue(REPO, "seed")
        tracker.once()
        github.add_issue(REPO, HOSTILE_TITLE.replace("{{", "DeepSeek {{"))
        server.fail_next(11232)
        # The engine's own logging (its redaction), at its most talkative.
        run = tracker.cli("run", "--once", "--log-level", "debug")
        assert run.returncode == 1, run.stderr  # the poll worked; the send was rate limited
        assert tracker.once(later=60.3) == 0  # not before Feishu's minute
        assert len(server.messages) == 1
    rows = tracker.sql(
        "SELECT d.channel, d.status, d.attempts, a.outcome, a.reply, a.error"
        " FROM delivery d JOIN attempt a ON a.delivery_id = d.id ORDER BY a.id"
    )
    assert [r[:4] for r in rows] == [("feishu", "sent", 2, "failed"), ("feishu", "sent", 2, "sent")]
    assert rows[0][5].startswith("Feishu code 11232 (frequency limited)")
    assert json.loads(rows[1][4])["msg"] == "success"
    everything = repr(rows) + run.stdout + run.stderr + repr(tracker.sql("SELECT * FROM attempt"))
    assert "feishu" in run.stderr
    assert TOKEN not in everything and SECRET not in everything
    assert server.messages[0].text.endswith("https://github.com/vllm-project/vllm/issues/2")
    assert context().url == LINK


def test_a_rate_limit_code_is_retried_not_before_a_minute(sim):
    sim.fail_next(11232)
    result = channel(sim).send(outgoing())
    assert not result.ok and not result.permanent
    assert result.rate_limited and result.retry_after == 60
