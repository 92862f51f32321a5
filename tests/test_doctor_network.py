"""``mrt-engine doctor --network`` and ``--send-test``: each source asked once the way polling
asks it, each channel's endpoint answering without a message, one test message per channel, the
clock against the upstreams' Date; failures with hints, and never a secret in the output. The
store plays no part here (tests/test_doctor.py checks it on both backends)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import GH_TOKEN, WL_TOKEN, free_port
from test_doctor import checks_of, doctor

from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.welink import PATH as WELINK_PATH


@pytest.fixture(autouse=True)
def _watched_repo(github) -> None:
    github.repo("vllm-project/vllm")


# ---------------------------------------------------------------------- --network
def test_network_asks_each_source_once_with_its_token_and_each_channel_without_a_message(
    gh_tracker, github, welink
):
    tracker = gh_tracker()
    tracker.once()
    asked = len(github.requests)

    result = tracker.cli("doctor", "--network")

    assert result.returncode == 0, result.stdout
    sources = [line.split() for line in result.stdout.splitlines() if " source " in line]
    assert sources and all(w[:2] == ["✓", "source"] and w[2].startswith("github:") for w in sources)
    new = github.requests[asked:]
    assert len(new) == len(sources)  # one request each, no retries, no paging
    assert all(r.headers.get("authorization") == f"Bearer {GH_TOKEN}" for r in new)
    assert "✓ upstream clock" in result.stdout
    assert "welink: WeLink webhook" in next(
        x for x in result.stdout.splitlines() if "✓ channel" in x
    )
    assert welink.messages == []
    assert welink.requests[-1].method == "HEAD"


def test_an_unreachable_source_fails_with_a_hint(gh_tracker):
    port = free_port()
    tracker = gh_tracker(
        {
            "sources": {"github": {"api_base": f"http://127.0.0.1:{port}"}},
            "http": {"max_retries": 3},
        }
    )

    result = tracker.cli("doctor", "--network", "--json")

    assert result.returncode == 1
    failed = [c for c in json.loads(result.stdout)["checks"] if not c["ok"]]
    assert failed and all(c["name"] == "source" for c in failed)
    assert "ConnectError" in failed[0]["detail"] and "after 1 try" in failed[0]["detail"]
    assert f"127.0.0.1:{port} is reachable from here" in failed[0]["hint"]


def test_a_refused_token_fails_the_source(gh_tracker):
    tracker = gh_tracker()
    tracker.env["GH"] = "ghp_WRONGTOKEN0123456789abcdef"

    source = next(
        c
        for n, c in checks_of(tracker.cli("doctor", "--network", "--json")).items()
        if n.startswith("source ")
    )

    assert not source["ok"] and "401 Unauthorized" in source["detail"]
    assert "token_env" in source["hint"]


def test_a_channel_answering_a_server_error_fails(gh_tracker, welink):
    tracker = gh_tracker()
    welink.inject(Fault(status=503, path=WELINK_PATH, method="HEAD"))

    channel = checks_of(tracker.cli("doctor", "--network", "--json"))["channel welink"]

    assert not channel["ok"] and "HTTP 503" in channel["detail"]
    assert "notify.welink" in channel["hint"]


def test_a_clock_off_the_upstreams_date_fails(gh_tracker):
    tracker = gh_tracker()

    checks = doctor(tracker, network=True, clock=lambda: datetime.now(UTC) - timedelta(hours=1))

    upstream = checks["upstream clock"]
    assert not upstream.ok and "60 min behind the Date of 127.0.0.1:" in upstream.detail


@contextmanager
def upstream_dated(date: str) -> Iterator[str]:
    """An upstream answering every request ``200 []`` with ``Date: date`` (the simulators add
    their own Date): its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def date_time_string(self, timestamp=None) -> str:
            return date

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "date",
    [
        "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",  # a year past any integer
        "Mon, 01 Jan 2024 00:00:00 +9999999999999999999999",  # an offset past any integer
    ],
)
def test_a_date_no_clock_can_hold_is_an_unreadable_date_not_a_crash(gh_tracker, date):
    with upstream_dated(date) as url:
        tracker = gh_tracker({"sources": {"github": {"api_base": url}}})

        result = tracker.cli("doctor", "--network", "--json")

    assert "Traceback" not in result.stderr, result.stderr
    checks = checks_of(result)
    assert checks["upstream clock"]["ok"] and "readable Date" in checks["upstream clock"]["detail"]


def test_the_upstream_clock_line_shows_no_credentials_of_the_api_base(gh_tracker):
    now = format_datetime(datetime.now(UTC), usegmt=True)
    with upstream_dated(now) as url:
        api_base = url.replace("http://", "http://alice:hunter2secret@")
        tracker = gh_tracker({"sources": {"github": {"api_base": api_base}}})

        result = tracker.cli("doctor", "--network")

    assert "✓ upstream clock" in result.stdout, result.stdout + result.stderr
    assert "hunter2secret" not in result.stdout and "alice" not in result.stdout


# ---------------------------------------------------------------------- --send-test
def test_send_test_sends_one_marked_message_per_channel_and_stores_no_alert(gh_tracker, welink):
    tracker = gh_tracker()
    tracker.once()
    sent = len(welink.messages)
    alerts = tracker.sql("SELECT COUNT(*) FROM alert")

    result = tracker.cli("doctor", "--send-test")

    assert result.returncode == 0, result.stdout
    assert "welink: sent" in next(x for x in result.stdout.splitlines() if "✓ test message" in x)
    assert len(welink.messages) == sent + 1
    assert "[TEST] mrt-engine doctor" in welink.messages[-1].text
    assert tracker.sql("SELECT COUNT(*) FROM alert") == alerts


def test_a_test_message_the_channel_refuses_fails_with_its_answer(gh_tracker, welink):
    tracker = gh_tracker()
    welink.fail_matching = "[TEST]"

    check = checks_of(tracker.cli("doctor", "--send-test", "--json"))["test message welink"]

    assert not check["ok"] and "58500" in check["detail"]


def test_no_secret_value_appears_in_doctors_output(gh_tracker, github, welink):
    tracker = gh_tracker()
    tracker.once()
    # Upstreams and channels that echo the request (its URL holds the WeLink token) back.
    echo = "{method} {target} auth={authorization}"
    github.inject(Fault(status=400, echo=echo, times=10))
    welink.inject(Fault(status=503, echo=echo, path=WELINK_PATH, times=10))
    tracker.env["GH"] = GH_TOKEN

    outputs = [
        tracker.cli("doctor", "--network", "--send-test"),
        tracker.cli("doctor", "--network", "--send-test", "--json"),
    ]
    del tracker.env["WL"]
    outputs.append(tracker.cli("doctor", "--network"))

    assert "auth=Bearer ***" in outputs[0].stdout  # what the upstream echoed, redacted
    for result in outputs:
        text = result.stdout + result.stderr
        assert result.returncode == 1 and ("✗" in text or '"ok": false' in text)
        for secret in (GH_TOKEN, WL_TOKEN, welink.webhook_url):
            assert secret not in text
    assert welink.messages == []


def test_a_terminal_escape_in_what_an_upstream_answers_is_not_printed(gh_tracker, github):
    tracker = gh_tracker()
    github.inject(Fault(status=418, body="\x1b]0;pwned\x07\x1b[2J teapot", times=5))

    result = tracker.cli("doctor", "--network")

    assert result.returncode == 1 and "teapot" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


# ---------------------------------------------------------------------- e-mail
def email_tracker(gh_tracker, smtp, password: str):
    tracker = gh_tracker(
        {
            "notify": {
                "email": {
                    "smtp_host": smtp.host,
                    "smtp_port": smtp.port,
                    "to_list": ["oncall@example.com"],
                    "ca_file": smtp.ca_file,
                    "user_env": "SMTP_USER",
                    "password_env": "SMTP_PASS",
                }
            }
        }
    )
    tracker.env.update({"SMTP_USER": "mrt", "SMTP_PASS": password})
    return tracker


def test_the_mail_server_is_greeted_and_logged_in_without_sending_a_message(gh_tracker, smtp):
    tracker = email_tracker(gh_tracker, smtp, "smtp-pass-123")

    email = checks_of(tracker.cli("doctor", "--network", "--json"))["channel email"]

    assert email["ok"] and "greeted, TLS, logged in" in email["detail"]
    assert smtp.logins == [("mrt", "smtp-pass-123")] and smtp.messages == []


def test_a_refused_mail_login_fails_without_showing_the_password(gh_tracker, smtp):
    tracker = email_tracker(gh_tracker, smtp, "not-the-password-42")

    result = tracker.cli("doctor", "--network", "--send-test")

    assert result.returncode == 1 and "not-the-password-42" not in result.stdout
    assert "SMTP login refused: 535" in result.stdout
    assert "check the values of SMTP_USER and SMTP_PASS" in result.stdout
    assert smtp.messages == []


# ---------------------------------------------------------------------- every HTTP channel
def _robots() -> list:
    from mrt_engine.simulators.dingtalk import DingTalkSimulator
    from mrt_engine.simulators.feishu import FeishuSimulator
    from mrt_engine.simulators.slack import SlackSimulator
    from mrt_engine.simulators.webhook_sink import WebhookSink
    from mrt_engine.simulators.wecom import WeComSimulator

    return [
        ("dingtalk", DingTalkSimulator, {"webhook_env": "HOOK"}, "webhook_url"),
        ("feishu", FeishuSimulator, {"webhook_env": "HOOK"}, "webhook_url"),
        ("wecom", WeComSimulator, {"webhook_env": "HOOK"}, "webhook_url"),
        ("slack", SlackSimulator, {"webhook_env": "HOOK"}, "webhook_url"),
        ("webhook", WebhookSink, {"url_env": "HOOK", "secret_env": "HOOK_KEY"}, "hook_url"),
    ]


@pytest.mark.parametrize("name, simulator, section, url", _robots(), ids=lambda v: str(v)[:8])
def test_each_http_channel_answers_and_takes_one_test_message(
    gh_tracker, name, simulator, section, url
):
    with simulator() as sim:
        tracker = gh_tracker({"notify": {"welink": None, name: section}})
        tracker.env["HOOK"] = getattr(sim, url)
        tracker.env["HOOK_KEY"] = getattr(sim, "secret", None) or ""

        result = tracker.cli("doctor", "--network", "--send-test", "--json")

        checks = checks_of(result)
        assert checks[f"channel {name}"]["ok"], checks[f"channel {name}"]
        assert checks[f"test message {name}"]["ok"], checks[f"test message {name}"]
        assert len(sim.messages) == 1
        assert getattr(sim, url) not in result.stdout
        token = getattr(sim, "token", None)
        assert token is None or token not in result.stdout


def test_send_test_mails_one_test_message(gh_tracker, smtp):
    tracker = email_tracker(gh_tracker, smtp, "smtp-pass-123")

    check = checks_of(tracker.cli("doctor", "--send-test", "--json"))["test message email"]

    assert check["ok"] and "250" in check["detail"]
    assert len(smtp.messages) == 1
    mail = smtp.messages[0].content.replace(b"\r\n ", b" ")
    assert b"Subject: [MRT] Test message" in mail and b"[TEST] mrt-engine doctor on" in mail
