"""DingTalk custom robot: payload, signature, answers, secrets, hostile text, and the outbox."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
from channel_cases import HOSTILE_TITLE, LINK, build, hostile, outgoing, rule_routed_config
from conftest import GH_TOKEN

from mrt_engine.notify import dingtalk
from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.dingtalk import DingTalkSimulator

pytestmark = pytest.mark.both_backends  # the outbox test runs on SQLite and PostgreSQL

TOKEN = "dt-access-98975521a1b23c02cdd1a9a08c69511d"
# A secret whose signatures often hold "+" and "/": they must travel URL-encoded.
SECRET = "SEC19dd84be8c7f3cf71761974f1ed3ef77c1451906ae8ba18acf56103ee"
REPO = "vllm-project/vllm"
LINK_TARGET = "https://huggingface.co/deepseek-ai/DeepSeek%5FV4%7Ebeta"


@pytest.fixture
def sim() -> Iterator[DingTalkSimulator]:
    server = DingTalkSimulator(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def signed_sim() -> Iterator[DingTalkSimulator]:
    server = DingTalkSimulator(token=TOKEN, secret=SECRET).start()
    yield server
    server.stop()


def channel(sim: DingTalkSimulator, **settings):
    env = {"DT": sim.webhook_url, "DT_SECRET": SECRET}
    made, errors = build(dingtalk, {"webhook_env": "DT", **settings}, env)
    assert errors == [] and made is not None
    return made


def expected_sign(timestamp: str, secret: str) -> str:
    # Written out from DingTalk's documentation, independently of the channel's code.
    string_to_sign = f"{timestamp}\n{secret}"
    code = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256)
    return urllib.parse.quote_plus(base64.b64encode(code.digest()))


def test_a_markdown_message_has_a_trusted_title_the_text_the_link_and_the_mentions(sim):
    made = channel(sim, at_mobiles=["13800001111"], at_user_ids=["manager7"], at_all=False)
    assert made.send(outgoing()).ok
    [request] = sim.requests
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.target == f"/robot/send?access_token={TOKEN}"  # unsigned: nothing added
    body = json.loads(request.body)
    assert set(body) == {"msgtype", "markdown", "at"}
    assert body["msgtype"] == "markdown"
    assert body["at"] == {"atMobiles": ["13800001111"], "atUserIds": ["manager7"], "isAtAll": False}
    assert body["markdown"]["title"] == "[MRT] New model · huggingface:deepseek-ai:models"
    text = body["markdown"]["text"]
    # The mentions are in the text (DingTalk highlights only those), then the message.
    # Markdown's characters in the text are shown as their full-width forms (［MRT］).
    assert text.startswith("@13800001111 @manager7 ［MRT］ New model")
    assert text.endswith(f"[{LINK_TARGET}]({LINK_TARGET})")
    assert "\n\n" in text  # a single newline does not break a line in DingTalk's markdown


def test_a_text_message(sim):
    made = channel(sim, message_type="text", at_all=True)
    assert made.send(outgoing()).ok
    body = json.loads(sim.requests[0].body)
    assert body["msgtype"] == "text" and body["at"]["isAtAll"] is True
    assert body["text"]["content"].endswith(LINK)


def test_a_signed_message_carries_timestamp_and_url_encoded_sign_in_the_query(signed_sim):
    made = channel(signed_sim, secret_env="DT_SECRET")
    for _ in range(5):  # several timestamps: some signatures hold "+", "/" or "="
        assert made.send(outgoing()).ok
    for request in signed_sim.requests:
        raw = dict(pair.split("=", 1) for pair in request.target.split("?", 1)[1].split("&"))
        assert raw["access_token"] == TOKEN
        assert abs(int(raw["timestamp"]) - time.time() * 1000) < 60_000
        assert raw["sign"] == expected_sign(raw["timestamp"], SECRET)
    assert dingtalk.sign(1577000000000, "s") == expected_sign("1577000000000", "s")


def test_a_wrong_secret_is_refused_with_310000_and_retried(signed_sim):
    env = {"DT": signed_sim.webhook_url, "DT_SECRET": "SECnot-the-secret"}
    made, _ = build(dingtalk, {"webhook_env": "DT", "secret_env": "DT_SECRET"}, env)
    result = made.send(outgoing())
    assert not result.ok and not result.permanent
    assert result.error.startswith("DingTalk code 310000 (keyword, signature, timestamp or IP")
    assert "sign not match" in result.error


def test_the_receiver_refuses_a_timestamp_over_an_hour_old(signed_sim):
    made = channel(signed_sim, secret_env="DT_SECRET")
    body = made.payload(outgoing())
    old = made.signed_url(now_ms=int((time.time() - 3700) * 1000))
    assert httpx.post(old, json=body).json() == {"errcode": 310000, "errmsg": "invalid timestamp"}
    fresh = made.signed_url(now_ms=int((time.time() - 3500) * 1000))
    assert httpx.post(fresh, json=body).json() == {"errcode": 0, "errmsg": "ok"}
    # A sign sent without URL-encoding loses its "+" to a space and does not match.
    raw = fresh.replace("sign=", "sign=a+b")
    assert httpx.post(raw, json=body).json()["errcode"] == 310000


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        (310000, False),  # keyword/sign/IP: an operator fixes the robot's settings
        (300001, False),  # invalid token: the webhook URL is fixed, the retry delivers
        (400013, False),
        (400101, False),
        (400102, False),
        (400105, True),  # unsupported message type: this body never succeeds
        (400106, False),
        (410100, False),  # too fast: flow control
        (430101, True),  # the content itself is refused
        (430102, True),
        (430103, True),
        (430104, True),
        (460101, True),
        (-1, False),  # system busy
    ],
)
def test_each_error_code_is_retried_or_dead_lettered(sim, code, permanent):
    sim.fail_next(code)
    result = channel(sim).send(outgoing())
    assert not result.ok and result.permanent is permanent and result.http_status == 200
    assert result.error.startswith(f"DingTalk code {code} (")
    assert json.loads(result.reply)["errcode"] == code


@pytest.mark.parametrize("code", [130101, 410100])
def test_a_rate_limit_code_waits_out_dingtalks_ten_minute_throttle(sim, code):
    sim.fail_next(code)
    result = channel(sim).send(outgoing())
    assert not result.ok and not result.permanent
    assert result.rate_limited and result.retry_after == 600


def test_a_rate_limited_message_is_retried_after_the_throttle_and_never_dead_lettered(
    gh_tracker, github
):
    with DingTalkSimulator(token=TOKEN) as server:
        config = rule_routed_config("dingtalk", {"webhook_env": "DT"})
        tracker = gh_tracker({**config, "delivery": {"max_attempts": 2}})
        tracker.env.update(DT=server.webhook_url, GH=GH_TOKEN)
        github.add_issue(REPO, "seed")
        tracker.once()
        github.add_issue(REPO, "DeepSeek-V4 weights")
        server.fail_next(130101, times=3)
        tracker.once()
        tracker.once(later=300)  # the backoff is over; DingTalk's throttle is not
        assert len(server.rejected) == 1
        for n in (1, 2):  # more rate limits than max_attempts: still retried
            tracker.once(later=601 * n)
        assert len(server.rejected) == 3
        rows = tracker.sql("SELECT status, attempts FROM delivery")
        assert rows == [("retrying", 3)]
        tracker.once(later=601 * 3)
        assert len(server.messages) == 1
    assert tracker.sql("SELECT status, attempts FROM delivery") == [("sent", 4)]


def test_a_keyword_check_that_fails_is_reported(sim):
    sim.keywords = ("告警",)
    result = channel(sim).send(outgoing())
    assert result.error == (
        "DingTalk code 310000 (keyword, signature, timestamp or IP check failed):"
        " keywords not in content"
    )


def test_a_hostile_event_stays_inert_within_20000_bytes_and_keeps_its_link(sim):
    for message_type in ("markdown", "text"):
        assert channel(sim, message_type=message_type).send(outgoing(hostile())).ok
    markdown, text = (json.loads(r.body) for r in sim.requests)
    shown = markdown["markdown"]["text"]
    assert len(shown.encode()) <= 20_000 and len(text["text"]["content"].encode()) <= 20_000
    # The one link is ours; nothing else can make a link, an image, a heading or a tag.
    assert shown.count("](") == 1 and shown.endswith(f"[{LINK_TARGET}]({LINK_TARGET})")
    assert "[click me]" not in shown and "![" not in shown and "<" not in shown
    assert "［click me］（http://evil.example/x）" in shown.replace("(", "（").replace(")", "）")
    assert "\n#" not in shown and "\n＃ 标题 ＞ 引用" in shown
    assert "{{ 7＊7 }}" in shown and "49" not in shown and "\x1b" not in shown
    assert "深度求索" in shown
    assert text["text"]["content"].endswith(LINK)


def test_secrets_stay_out_of_errors_replies_and_the_description(signed_sim):
    made = channel(signed_sim, secret_env="DT_SECRET")
    assert TOKEN not in made.describe() and "access_token=***" in made.describe()
    signed_sim.inject(Fault(502, echo="bad gateway for POST {target}", path="/robot"))
    results = [made.send(outgoing())]
    signed_sim.stop()
    results.append(made.send(outgoing()))
    recorded = repr([(r.error, r.reply) for r in results])
    assert TOKEN not in recorded and SECRET not in recorded and "sign=***" in recorded


def test_config_errors_are_one_line_each():
    _, errors = build(dingtalk, {"webhook_env": "DT"}, {})
    assert errors == [
        "notify.dingtalk.webhook_env: environment variable DT is not set (the DingTalk robot"
        " webhook URL (…/robot/send?access_token=...))"
    ]
    with pytest.raises(ValueError, match="invalid mobile number"):
        dingtalk.DingTalkSettings(at_mobiles=["138 0000"])


def test_the_default_rate_is_dingtalks():
    assert dingtalk.DEFAULT_RATE_PER_MINUTE == 20


def test_a_rule_routes_an_event_to_dingtalk_through_the_outbox(gh_tracker, github):
    with DingTalkSimulator(token=TOKEN, secret=SECRET, rate_per_minute=20) as server:
        section = {"webhook_env": "DT", "secret_env": "DT_SECRET", "at_mobiles": ["13800001111"]}
        tracker = gh_tracker(rule_routed_config("dingtalk", section))
        tracker.env.update(DT=server.webhook_url, DT_SECRET=SECRET, GH=GH_TOKEN)
        github.add_issue(REPO, "seed")
        tracker.once()
        github.add_issue(REPO, HOSTILE_TITLE.replace("{{", "DeepSeek {{"))
        server.fail_next(430101)
        run = tracker.cli("run", "--once", "--log-level", "debug")
        assert run.returncode == 1, run.stderr
        assert server.messages == []
        rows = tracker.sql("SELECT channel, status, attempts, last_error FROM delivery")
        assert rows == [("dingtalk", "dead", 1, rows[0][3])]  # refused content: dead at once
        assert rows[0][3].startswith("DingTalk code 430101 (unsafe external link)")
        github.add_issue(REPO, "DeepSeek-V4 weights")
        assert tracker.once() == 0
        [message] = server.messages
    assert message.text.startswith("@13800001111 ［MRT］ New issue")
    statuses = tracker.sql("SELECT channel, status FROM delivery ORDER BY id")
    assert statuses == [("dingtalk", "dead"), ("dingtalk", "sent")]
    everything = run.stdout + run.stderr + repr(tracker.sql("SELECT * FROM attempt"))
    assert TOKEN not in everything and SECRET not in everything


@pytest.mark.sqlite_only("a pure function")
@pytest.mark.parametrize("value", ["\u00b2", "--5", "-\u00b3"])
def test_a_result_code_no_int_reads_is_no_code_not_a_crash(value):
    from mrt_engine.notify.robot import int_code

    assert int_code(value) is None
