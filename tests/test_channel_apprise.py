"""The Apprise channel: Apprise URLs from the environment, here a ``json://`` URL to a receiver on
127.0.0.1, through the real outbox and delivery workers; and the message when Apprise is missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from channel_runs import HOSTILE_TITLE, REPO, attempts, baseline, channel_tracker, deliveries

from mrt_engine.simulators.apprise_json import AppriseJsonSink
from mrt_engine.simulators.base import Fault

pytestmark = pytest.mark.both_backends

TOKEN = "apprisetok-SECRET-1a2b3c4d5e"


@pytest.fixture
def sink():
    sim = AppriseJsonSink(token=TOKEN).start()
    yield sim
    sim.stop()


@pytest.fixture
def apprise_tracker(make_tracker, github, sink):
    def make(urls=None):
        return channel_tracker(
            make_tracker,
            github,
            {"apprise": {"urls_env": "APPRISE"}},
            {"APPRISE": sink.apprise_url(TOKEN) if urls is None else urls},
        )

    return make


def test_an_apprise_url_receives_the_rendered_message(apprise_tracker, github, sink):
    tracker = apprise_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek-V4 support", user="alice")
    assert tracker.once() == 0
    [payload] = sink.messages
    assert payload["version"] == "1.0" and payload["type"] == "info"
    message = payload["message"]
    assert message.startswith("[MRT] New issue · vllm-project/vllm\nDeepSeek-V4 support\n")
    assert 'Matched: watch_keywords (keyword "DeepSeek" in title)' in message
    assert message.endswith(f"https://github.com/{REPO}/issues/2")
    assert deliveries(tracker)[0][2:4] == ("sent", 1)
    assert attempts(tracker)[0][1] == "sent"


def test_every_url_gets_the_message_and_a_failing_one_is_retried_and_named(
    apprise_tracker, github, sink
):
    other = AppriseJsonSink(token=TOKEN).start()
    try:
        tracker = apprise_tracker(f"{sink.apprise_url(TOKEN)}, {other.apprise_url(TOKEN)}")
        baseline(tracker, github)
        github.add_issue(REPO, "DeepSeek thing")
        other.inject(Fault(503, path="/notify"))
        tracker.once()
        status, attempt_count, error = deliveries(tracker)[0][2:5]
        assert (status, attempt_count) == ("retrying", 1)
        assert error.startswith("Apprise could not deliver to URL 2 (JSON) of 2: ")
        assert "error=503" in error
        tracker.once(later=0.3)
        assert deliveries(tracker)[0][2:4] == ("sent", 2)
        # At-least-once across URLs: the first accepted both attempts.
        assert (len(sink.messages), len(other.messages)) == (2, 1)
    finally:
        other.stop()


def test_a_refused_url_never_shows_its_token(apprise_tracker, github, sink):
    tracker = apprise_tracker(sink.apprise_url("wrongtok-SECRET-0000"))
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek thing")
    run = tracker.cli("run", "--once", "--log-level", "debug")
    row = deliveries(tracker)[0]
    assert row[2] == "retrying" and "error=401" in row[4]
    everything = str(deliveries(tracker)) + str(attempts(tracker)) + run.stdout + run.stderr
    assert "wrongtok-SECRET-0000" not in everything
    assert sink.refused == [(401, "bad token")]


def test_a_url_apprise_cannot_use_is_one_config_error_without_the_url(apprise_tracker):
    tracker = apprise_tracker(f"nosuchservice://{TOKEN}@host/x")
    result = tracker.cli("check")
    assert result.returncode == 2
    assert (
        "notify.apprise.urls_env: URL 1 in APPRISE (scheme 'nosuchservice') is not one Apprise"
        in result.stderr
    )
    assert TOKEN not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_without_apprise_installed_the_check_says_to_install_the_extra(apprise_tracker):
    tracker = apprise_tracker()
    # A real process in which ``import apprise`` fails, as where the extra is not installed.
    blocked = (
        "import sys; sys.modules['apprise'] = None\n"
        "from mrt_engine.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    for command in (["check"], ["run", "--once"]):
        result = subprocess.run(
            [sys.executable, "-c", blocked, *command, "--config", str(tracker.path)],
            env={**os.environ, **tracker.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, result.stderr
        assert (
            "notify.apprise: the apprise package is not installed; install the extra:"
            " pip install 'model-release-tracker[apprise]'" in result.stderr
        )
        assert "Traceback" not in result.stderr and "ImportError" not in result.stderr


def test_a_hostile_title_reaches_the_service_as_inert_text(apprise_tracker, github, sink):
    tracker = apprise_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, HOSTILE_TITLE)
    tracker.once()
    message = sink.messages[0]["message"]
    assert "{{ 7*7 }}" in message and "49" not in message
    assert "\x1b" not in message and "\x07" not in message


def test_a_long_message_is_cut_within_the_services_limit_and_keeps_the_link(
    apprise_tracker, github, sink
):
    tracker = apprise_tracker()
    baseline(tracker, github)
    github.add_issue(REPO, "DeepSeek " + "long title " * 500, body="details " * 5000)
    tracker.once()
    message = sink.messages[0]["message"]
    assert len(message) <= 4000
    assert message.endswith(f"https://github.com/{REPO}/issues/2")
