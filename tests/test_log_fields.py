"""Logs an on-call engineer can use (O §8): ``--log-format json`` writes one object per line,
with ``source``, ``fingerprint`` and ``delivery`` fields on the lines about one; text stays the
default; and a real run's whole log, text or JSON, holds no secret even when a source and a
channel fail with their tokens echoed back."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from conftest import GH_TOKEN, WL_TOKEN

from mrt_engine.logs import JsonFormatter, log_context, setup_logging
from mrt_engine.simulators.base import Fault

GOOD, BAD = "vllm-project/vllm", "sgl-project/sglang"


def run_once(tracker, *options: str) -> subprocess.CompletedProcess[str]:
    """A real ``mrt-engine run --once`` in its own process (it registers its own secrets)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mrt_engine",
            "run",
            "--once",
            "--config",
            str(tracker.path),
            *options,
        ],
        env={**os.environ, **tracker.env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def failing_run(make_tracker, github, welink):
    """A tracker whose second run has a source failing with its token echoed in the error and
    a channel failing with its webhook URL (and token) echoed in the reply."""
    github.add_issue(GOOD, "seed")
    github.add_issue(BAD, "seed")
    tracker = make_tracker(
        {
            "watch_keywords": ["deepseek"],
            "sources": {
                "github": {
                    "repos": [GOOD, BAD],
                    "monitor": {"pulls": False},
                    "token_env": "GH",
                    "api_base": github.url,
                }
            },
            "notify": {"welink": {"webhook_env": "WL"}},
            "scheduler": {"unhealthy_after_failures": 1},
            "http": {"max_retries": 0},
        },
        {"GH": GH_TOKEN, "WL": welink.webhook_url},
    )
    first = run_once(tracker)
    assert first.returncode == 0, first.stderr  # the baselines
    github.add_issue(GOOD, "DeepSeek-V4 support")
    github.inject(
        Fault(502, echo="bad credentials: {authorization}", path=f"/repos/{BAD}/", times=100)
    )
    welink.inject(Fault(500, echo="no robot at {target}", path="/api/werobot", times=100))
    return tracker


def test_json_lines_name_their_source_delivery_and_fingerprint_and_hold_no_secret(
    make_tracker, github, welink
):
    tracker = failing_run(make_tracker, github, welink)
    result = run_once(tracker, "--log-format", "json", "--log-level", "debug")
    assert result.returncode == 1  # a source and a delivery failed
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line parses
    for secret in (GH_TOKEN, WL_TOKEN):
        assert secret not in result.stderr
    bad_key, good_key = f"github:{BAD}:issues", f"github:{GOOD}:issues"
    [failed] = [e for e in lines if "poll failed" in e["msg"]]
    assert failed["source"] == bad_key
    assert "delivery" not in failed and "fingerprint" not in failed
    [unhealthy] = [e for e in lines if "is failing" in e["msg"]]
    assert unhealthy["source"] == bad_key
    retries = [e for e in lines if "retrying at" in e["msg"]]
    [(fingerprint, delivery_id)] = tracker.sql(
        "SELECT e.fingerprint, d.id FROM delivery d JOIN alert a ON a.id = d.alert_id"
        " JOIN event e ON e.id = a.event_id WHERE e.source_key = ?",
        good_key,
    )
    about_the_alert = [e for e in retries if e.get("delivery") == delivery_id]
    assert about_the_alert, retries
    assert {(e["fingerprint"], e["source"], e["channel"]) for e in about_the_alert} == {
        (fingerprint, good_key, "welink")
    }
    # A line about the whole run is about no one source or delivery.
    [summary] = [e for e in lines if e["msg"].startswith("once:")]
    assert not {"source", "delivery", "fingerprint"} & summary.keys()


def test_the_text_log_of_a_failing_run_holds_no_secret(make_tracker, github, welink):
    tracker = failing_run(make_tracker, github, welink)
    result = run_once(tracker, "--log-level", "debug")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines and not any(line.startswith("{") for line in lines)  # text by default
    assert any("poll failed" in line for line in lines)
    assert any("retrying at" in line for line in lines)
    for secret in (GH_TOKEN, WL_TOKEN):
        assert secret not in result.stderr


def test_a_context_field_is_redacted_and_nested_contexts_add_up():
    from mrt_engine.secrets import Secret

    Secret("feed-secret-0123456789", "FEED")
    import io

    stream = io.StringIO()
    setup_logging("json", "info", stream=stream)
    try:
        with log_context(source="feed:https://x.example/rss?key=feed-secret-0123456789"):
            logging.getLogger("t").info("polled")
            with log_context(delivery=7):
                logging.getLogger("t").info("sent")
        logging.getLogger("t").info("after")
    finally:
        logging.getLogger().handlers.clear()
        logging.captureWarnings(False)
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "feed-secret" not in first["source"] and "delivery" not in first
    assert second["delivery"] == 7 and second["source"] == first["source"]
    assert "source" not in third and "delivery" not in third
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)


def test_a_library_warning_is_a_json_line_too():
    import io
    import warnings

    stream = io.StringIO()
    logging.captureWarnings(False)  # as in a fresh process (an earlier test may have set it up)
    setup_logging("json", "info", stream=stream)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("this API goes away", DeprecationWarning, stacklevel=1)
    finally:
        logging.getLogger().handlers.clear()
        logging.captureWarnings(False)
    [entry] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert entry["logger"] == "py.warnings" and "this API goes away" in entry["msg"]


def test_the_error_a_json_logging_run_ends_with_is_a_json_line_too(make_tracker, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    tracker = make_tracker(
        {
            "state": {"sqlite_path": "afile/x.sqlite3"},
            "sources": {"pypi": {"packages": ["vllm"], "api_base": "http://127.0.0.1:9"}},
        }
    )
    result = run_once(tracker, "--log-format", "json")
    assert result.returncode == 2
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line parses
    [error] = [e for e in lines if e["level"] == "error"]
    assert "a file is in the way" in error["msg"]
    text = run_once(tracker)  # text: the one plain line, as before
    assert text.returncode == 2 and text.stderr.splitlines()[-1].startswith("mrt-engine: ")
