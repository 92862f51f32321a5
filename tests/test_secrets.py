"""Secrets never reach logs, the store, the console or error messages."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from conftest import GH_TOKEN, WL_TOKEN

from mrt_engine.logs import setup_logging
from mrt_engine.secrets import Secret, redact, redact_url
from mrt_engine.simulators.base import Fault

REPO = "vllm-project/vllm"


def test_secret_repr_hides_the_value():
    secret = Secret("hunter2-hunter2", "MY_ENV")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert secret.reveal() == "hunter2-hunter2"


def test_redaction_of_registered_values_and_url_tokens():
    Secret("https://hooks.example/send?token=tok-redact-me-42&channel=standard", "HOOK")
    assert redact("failed: tok-redact-me-42 in url") == "failed: *** in url"
    assert redact_url("https://u:pw@h.example/x?access_token=abc123&channel=standard") == (
        "https://***@h.example/x?access_token=***&channel=standard"
    )


def test_no_secret_in_logs_store_or_cli_output_even_when_everything_fails(
    gh_tracker, github, welink, capsys
):
    github.add_issue(REPO, "seed", at=datetime(2026, 11, 20, tzinfo=UTC))
    tracker = gh_tracker()
    setup_logging("text", "debug")
    try:
        tracker.once()
        github.add_issue(REPO, "DeepSeek leak test")
        # The webhook fails with the request URL (and its token) echoed back in the error body.
        welink.inject(Fault(500, f"bad request to {welink.webhook_url}", path="/api/werobot"))
        github.inject(Fault(500, f"echo {GH_TOKEN}", path="/repos/", times=10))
        tracker.once()
        github.clear_faults()
        tracker.sql("UPDATE source_state SET backoff_until = NULL")
        tracker.once()
    finally:
        logging.getLogger().handlers.clear()
    captured = capsys.readouterr()
    outputs = [captured.out, captured.err]
    tracker.in_process = False  # a fresh process has registered no secret to redact
    for command in (
        ("status",),
        ("outbox", "--json"),
        ("trace", "https://github.com/vllm-project/vllm/issues/2"),
    ):
        result = tracker.cli(*command)
        outputs += [result.stdout, result.stderr]
    db_bytes = b"".join(
        p.read_bytes() for p in tracker.db.parent.glob(tracker.db.name + "*") if p.is_file()
    )
    for secret in (GH_TOKEN, WL_TOKEN):
        assert secret.encode() not in db_bytes
        for text in outputs:
            assert secret not in text
    assert (
        tracker.sql("SELECT COUNT(*) FROM attempt WHERE reply LIKE '%***%' OR error LIKE '%***%'")[
            0
        ][0]
        >= 1
    )
