"""What the channel suites share: a tracker watching one simulated GitHub repo that alerts to
one channel, the rows its deliveries leave, and the hostile title every channel must keep inert."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from conftest import GH_TOKEN, deep_merge

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
# Slack/mrkdwn mentions and links, a template expression, a terminal colour and an OSC title.
HOSTILE_TITLE = (
    "DeepSeek <!channel> <@U0BOSS> <http://evil.example|click> *bold* {{ 7*7 }} {% if 1 %}x{% endif %}"
    " \x1b[31mred\x1b[0m \x1b]0;pwned\x07 & <b>"
)


def channel_tracker(make_tracker, github, notify: dict[str, Any], env: dict[str, str], extra=None):
    """A tracker on the test's backend: the repo watched for DeepSeek/Qwen, alerts to ``notify``."""
    config = {
        "watch_keywords": ["deepseek", "qwen"],
        "sources": {
            "github": {"repos": [REPO], "token_env": "GH", "api_base": github.url},
        },
        "notify": notify,
    }
    return make_tracker(deep_merge(config, extra or {}), {"GH": GH_TOKEN, **env})


def baseline(tracker, github) -> None:
    """The first poll: the baseline, which alerts nothing."""
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()


def deliveries(tracker) -> list[tuple]:
    return tracker.sql("SELECT id, channel, status, attempts, last_error FROM delivery ORDER BY id")


def attempts(tracker) -> list[tuple]:
    return tracker.sql(
        "SELECT delivery_id, outcome, http_status, reply, error FROM attempt ORDER BY id"
    )
