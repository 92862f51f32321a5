"""``mrt-engine doctor``: every check passing on a healthy deployment and failing with a hint
when something is wrong (a missing secret, an unreachable source, a channel answering an error,
a schema too old or too new, a clock behind, low disk), never changing the store and never
showing a secret."""

from __future__ import annotations

import gc
import io
import json
import os
import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import GH_TOKEN, WL_TOKEN, free_port
from test_migrate_command import older_store, snapshot

from mrt_engine.doctor import Check, Doctor, Limits, report
from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.welink import PATH as WELINK_PATH
from mrt_engine.store import migrations, postgres
from mrt_engine.store.lock import EngineLock

pytestmark = pytest.mark.both_backends


@pytest.fixture(autouse=True)
def _watched_repo(github) -> None:
    github.repo("vllm-project/vllm")


def checks_of(result) -> dict[str, dict]:
    """The checks of a ``doctor --json`` run, by name."""
    return {f"{c['name']} {c['subject']}".strip(): c for c in json.loads(result.stdout)["checks"]}


def doctor(tracker, **options) -> dict[str, Check]:
    """Doctor run in this process on the tracker's config (a clock or limits of its own)."""
    env = {**os.environ, **tracker.env}
    return {f"{c.name} {c.subject}".strip(): c for c in Doctor(tracker.path, env, **options).run()}


def test_every_check_passes_on_a_healthy_deployment_and_the_store_is_left_as_it_was(gh_tracker):
    tracker = gh_tracker()
    assert tracker.once() == 0
    gc.collect()  # the run's last connection closed: its WAL checkpointed now, not during doctor
    before = snapshot(tracker)

    result = tracker.cli("doctor")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    expected = ["config", "secrets", "store", "clock", "engine"]
    if not tracker.is_postgresql:
        expected[3:3] = ["disk space", "store writable"]
    assert list(checks_of(tracker.cli("doctor", "--json"))) == expected
    assert len(lines) == len(expected) + 1 and all(x.startswith("✓ ") for x in lines[:-1])
    assert lines[-1] == "all checks passed"
    assert "variables set: GH, WL" in result.stdout
    assert f"schema version {migrations.LATEST}, up to date" in result.stdout
    assert "no engine is running on this store" in result.stdout
    assert snapshot(tracker) == before


def test_json_lists_every_check_with_its_outcome(gh_tracker):
    tracker = gh_tracker()
    tracker.once()

    result = tracker.cli("doctor", "--json")

    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"] is True
    assert {"name", "ok", "detail", "hint"} <= set(report["checks"][0])
    assert checks_of(result)["store"]["ok"] is True


def test_a_missing_secret_fails_naming_its_variable(gh_tracker):
    tracker = gh_tracker()
    del tracker.env["GH"]

    result = tracker.cli("doctor")

    assert result.returncode == 1
    line = next(x for x in result.stdout.splitlines() if " secrets " in x)
    assert line.startswith("✗") and "environment variable GH is not set" in line
    assert "hint: set each variable in the engine's environment" in result.stdout
    assert result.stdout.splitlines()[-1] == "1 check failed"


def test_a_wrong_config_is_a_failed_check_with_the_same_error_as_run(make_tracker):
    tracker = make_tracker({"sources": {"github": {"repos": ["a/b"], "tokn_env": "GH"}}})

    result = tracker.cli("doctor")
    run = tracker.cli("run", "--once")

    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert result.stdout.startswith("✗ config  invalid config")
    problem = 'sources.github.tokn_env: unknown key (did you mean "token_env"?)'
    assert problem in result.stdout and problem in run.stderr


def test_a_store_not_yet_created_passes_and_doctor_does_not_create_it(gh_tracker):
    tracker = gh_tracker()

    result = tracker.cli("doctor")

    assert result.returncode == 0, result.stdout
    if tracker.is_postgresql:
        assert "no schema yet (the first run creates it)" in result.stdout
    else:
        assert "not created yet" in result.stdout
        assert list(tracker.db.parent.glob("mrt.sqlite3*")) == []


def test_an_old_schema_names_the_pending_migrations_and_is_not_migrated(make_tracker):
    tracker = make_tracker({})
    older_store(tracker, migrations.LATEST - 1)
    before = snapshot(tracker)

    result = tracker.cli("doctor")

    assert result.returncode == 1
    store = checks_of(tracker.cli("doctor", "--json"))["store"]
    assert store["ok"] is False
    latest = migrations.LATEST
    assert f"schema version {latest - 1}, this mrt-engine knows up to {latest}" in store["detail"]
    assert migrations.SUMMARIES[latest - 1] in store["detail"]
    assert "`mrt-engine migrate` applies them" in store["hint"]
    assert "✗ store" in result.stdout
    assert snapshot(tracker) == before  # byte for byte: not migrated, no -wal left behind


def test_a_store_newer_than_this_mrt_engine_fails(make_tracker):
    tracker = make_tracker({})
    older_store(tracker, migrations.LATEST)
    location = tracker.location
    newer = migrations.LATEST + 1
    if location.is_postgresql:
        with postgres.connect_raw(location) as conn:
            conn.execute("UPDATE mrt_schema SET version = %s", (newer,))
    else:
        import sqlite3

        conn = sqlite3.connect(location.path)
        conn.execute(f"PRAGMA user_version = {newer}")
        conn.close()

    store = checks_of(tracker.cli("doctor", "--json"))["store"]

    assert store["ok"] is False and f"schema version {newer}" in store["detail"]
    assert store["hint"] == "upgrade mrt-engine to the version that wrote this store"


def test_a_clock_behind_the_stores_newest_poll_fails(gh_tracker):
    tracker = gh_tracker()
    tracker.once()

    checks = doctor(tracker, clock=lambda: datetime.now(UTC) - timedelta(hours=2))
    fine = doctor(tracker, clock=lambda: datetime.now(UTC) - timedelta(minutes=1))

    clock = checks["clock"]
    assert not clock.ok and re.search(r"is (1 h 59|2 h 0) min behind the store's", clock.detail)
    assert "NTP" in clock.hint
    assert fine["clock"].ok


def test_low_disk_space_fails(gh_tracker):
    tracker = gh_tracker()
    tracker.once()
    if tracker.is_postgresql:
        pytest.skip("the disk of a PostgreSQL store is the server's")

    checks = doctor(tracker, limits=Limits(min_free_bytes=10**18))

    assert not checks["disk space"].ok and "make room" in checks["disk space"].hint
    assert doctor(tracker)["disk space"].ok


@pytest.mark.sqlite_only("the lock file of a SQLite store")
def test_a_running_engine_is_named_by_its_lock(gh_tracker):
    tracker = gh_tracker()
    tracker.once()
    lock = EngineLock(tracker.db)
    lock.acquire()
    try:
        engine = doctor(tracker)["engine"]
    finally:
        lock.release()

    assert engine.ok and f"an engine is running on this store (pid {os.getpid()}" in engine.detail
    assert "no engine is running" in doctor(tracker)["engine"].detail


@pytest.mark.postgresql_only
def test_the_live_engines_of_a_shared_store_are_named(gh_tracker):
    from mrt_engine.store import engines

    tracker = gh_tracker()
    tracker.once()
    with tracker.store() as store:
        engines.register(
            store, "host-a:42:abc", host="host-a", pid=42, version="x", now=datetime.now(UTC)
        )

    engine = doctor(tracker)["engine"]

    assert engine.ok and "1 engine running: host-a:42:abc (pid 42 on host-a)" in engine.detail


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


# ---------------------------------------------------------------------- the report
CHECKS = [Check("config", True, "ok.toml"), Check("secrets", False, "GH is not set", "set it")]


def test_a_terminal_that_cannot_print_check_marks_gets_ok_and_fail():
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")

    report(CHECKS, out, {}, as_json=False)

    out.flush()
    text = out.buffer.getvalue().decode("ascii")
    assert text.splitlines()[:2] == ["ok   config   ok.toml", "FAIL secrets  GH is not set"]
    assert "     hint: set it" in text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_colour_unless_no_color_is_set():
    coloured, plain = Terminal(), Terminal()

    report(CHECKS, coloured, {"TERM": "xterm"}, as_json=False)
    report(CHECKS, plain, {"TERM": "xterm", "NO_COLOR": "1"}, as_json=False)

    assert "\x1b[32m✓\x1b[0m config" in coloured.getvalue()
    assert "\x1b[31m✗\x1b[0m secrets" in coloured.getvalue()
    assert "\x1b" not in plain.getvalue() and plain.getvalue().startswith("✓ config")


def test_an_ascii_terminal_gets_every_line_and_json_without_an_encoding_error():
    checks = [Check("source", False, "500 from upstream: “Bad gateway…”", "see it", "hf:x")]
    text, as_json = (io.TextIOWrapper(io.BytesIO(), encoding="ascii") for _ in range(2))

    report(checks, text, {}, as_json=False)
    report(checks, as_json, {}, as_json=True)

    for out in (text, as_json):
        out.flush()
    assert "FAIL source  hf:x: 500 from upstream: ?Bad gateway??" in text.buffer.getvalue().decode()
    parsed = json.loads(as_json.buffer.getvalue())
    assert parsed["checks"][0]["detail"] == "500 from upstream: “Bad gateway…”"


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
