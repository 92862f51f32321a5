"""Secrets never reach logs, the store, the console or error messages."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from conftest import GH_TOKEN, WL_TOKEN, Tracker

from mrt_engine.logs import setup_logging
from mrt_engine.secrets import Secret, redact, redact_url, shorten
from mrt_engine.simulators.base import Fault, Simulator
from mrt_engine.simulators.github import GitHubSimulator

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


# ---------------------------------------------------------------------- cut texts (issue 8 #12)
# Fine-grained GitHub tokens ("github_pat_...") run past 80 characters: long enough that an
# excerpt of an error body quoting one cuts through it.
LONG_GH_TOKEN = "github_pat_11ABCDEFG0" + "abcdefghijklmnopqrstuvwxyz0123456789" * 2 + "XYZ0123456"


def leaks(token: str, text: str) -> bool:
    """Whether ``text`` holds any prefix of ``token`` of 8 or more characters."""
    return token[:8] in text


@pytest.fixture
def long_token_github() -> Iterator[GitHubSimulator]:
    sim = GitHubSimulator(token=LONG_GH_TOKEN).start()
    yield sim
    sim.stop()


def long_token_tracker(make_tracker, github: GitHubSimulator, welink) -> Tracker:
    config = {
        "watch_keywords": ["deepseek"],
        "sources": {"github": {"repos": [REPO], "token_env": "GH", "api_base": github.url}},
        "notify": {"welink": {"webhook_env": "WL"}},
    }
    return make_tracker(config, {"GH": LONG_GH_TOKEN, "WL": welink.webhook_url})


def test_an_upstream_echoing_the_token_in_an_error_leaves_no_prefix_of_it_anywhere(
    make_tracker, long_token_github, welink
):
    github = long_token_github
    github.add_issue(REPO, "seed", at=datetime(2026, 11, 20, tzinfo=UTC))
    tracker = long_token_tracker(make_tracker, github, welink)
    stream = io.StringIO()
    setup_logging("text", "debug", stream=stream)
    try:
        tracker.once()
        # An error body that quotes the request's Authorization header: the excerpt of it that
        # an UpstreamError carries (120 characters) ends inside the token.
        github.inject(
            Fault(422, echo='{"message": "Validation Failed for {authorization}"}', path="/repos/")
        )
        tracker.once()
        tracker.sql("UPDATE source_state SET backoff_until = NULL, next_poll_at = NULL")
        # A proxy's HTML page instead of JSON: the sample Fetched.json quotes is cut at 80.
        github.inject(
            Fault(
                200,
                echo="<pre>debug: {authorization}</pre>",
                headers={"Content-Type": "text/html"},
                path="/repos/",
            )
        )
        tracker.once()
    finally:
        logging.getLogger().handlers.clear()
    errors = tracker.sql("SELECT error FROM poll_metric WHERE error IS NOT NULL")
    assert len(errors) == 2
    assert "422" in errors[0][0] and "expected JSON" in errors[1][0]
    last_errors = [e for (e,) in tracker.sql("SELECT last_error FROM source_state") if e]
    status = tracker.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    outputs = [stream.getvalue(), status.stdout, *last_errors, *(e for (e,) in errors)]
    for text in outputs:
        assert not leaks(LONG_GH_TOKEN, text), text
    assert last_errors and "***" in stream.getvalue()


def webhook_echo_fault(before_token: int) -> Fault:
    """A WeLink 500 page that quotes the request URL, padded so that the 300-character excerpt
    of the reply ends ``before_token`` characters into the token (the padding has no spaces, so
    the excerpt cannot stop at a word boundary before it)."""
    lead = len("/api/werobot/v1/webhook/send?token=")
    pad = ("request-rejected-" * 20)[: 299 - before_token - lead]
    return Fault(500, echo=pad + "{target}", path="/api/werobot")


def test_a_webhook_echoing_its_url_leaves_no_prefix_of_the_token_in_the_attempt(
    gh_tracker, github, welink
):
    token = "WLTOKENSECRET-" + "0123456789abcdef" * 3
    welink.token = token
    tracker = gh_tracker()
    github.add_issue(REPO, "seed", at=datetime(2026, 11, 20, tzinfo=UTC))
    tracker.once()
    welink.inject(webhook_echo_fault(before_token=11))
    github.add_issue(REPO, "DeepSeek V4")
    tracker.once()
    [(reply, error)] = tracker.sql("SELECT reply, error FROM attempt")
    assert reply.startswith("request-rejected-") and reply.endswith("…")
    assert not leaks(token, reply) and not leaks(token, error or "")
    outbox = tracker.cli("outbox", "--json")
    assert not leaks(token, outbox.stdout)


# ---------------------------------------------------------------------- encoded tokens (#13)
@pytest.mark.parametrize(
    "token_in_url",
    ["Ab+Cd/Ef==SECRET-0123456789", "Ab%2BCd%2FEf%3D%3DSECRET-0123456789"],
    ids=["raw", "percent-encoded"],
)
def test_a_webhook_token_is_redacted_in_every_encoding(gh_tracker, github, welink, token_in_url):
    welink.token = token_in_url
    tracker = gh_tracker()
    github.add_issue(REPO, "seed", at=datetime(2026, 11, 20, tzinfo=UTC))
    tracker.once()
    welink.inject(Fault(500, echo="no robot at {target}", path="/api/werobot"))
    github.add_issue(REPO, "DeepSeek V4")
    tracker.once()
    [(reply,)] = tracker.sql("SELECT reply FROM attempt")
    assert reply.startswith("no robot at /api/werobot/v1/webhook/send?token=***")
    for form in ("Ab+Cd", "Ab%2BCd", "Ab Cd", "SECRET-0123456789"):
        assert form not in reply


def test_every_encoding_of_a_registered_secret_is_redacted():
    Secret("k3y/with+plus=and&amp", "ENC")
    for shown in (
        "k3y/with+plus=and&amp",
        "k3y%2Fwith%2Bplus%3Dand%26amp",
        "k3y/with%2Bplus%3Dand%26amp",
    ):
        assert redact(f"said {shown}!") == "said ***!"


def test_a_secret_partly_percent_encoded_is_redacted():
    """Clients and servers each encode a query their own way: httpx 0.25 sends a token
    ``Ab+Cd/Ef==`` as ``Ab+Cd%2FEf==`` (only the slash escaped), and a webhook that echoes
    its request-target shows that form; so does a proxy that escapes some characters only."""
    Secret("https://hook.example/send?token=Pq+Rs/Tu==PARTLY-0123456789&channel=s", "PART")
    for shown in (
        "Pq+Rs%2FTu==PARTLY-0123456789",  # httpx 0.25-0.27 on the wire
        "Pq+Rs%2fTu%3D=PARTLY-0123456789",
        "Pq%2BRs/Tu==PARTLY-0123456789",
        "Pq Rs%2FTu%3d%3dPARTLY-0123456789",
    ):
        assert redact(f"no robot at /send?token={shown}&channel=s") == (
            "no robot at /send?token=***&channel=s"
        ), shown


def test_a_cut_secret_is_redacted_where_the_text_was_cut():
    Secret("cut-me-secret-0123456789", "CUT")
    assert redact("token cut-me-secr… (after 3 tries)") == "token ***… (after 3 tries)"
    assert redact("token cut-me-secr...") == "token ***..."
    assert redact("token cut-me-secr") == "token ***"
    # Fewer than 8 characters say nothing of the secret, and ordinary words stay.
    assert redact("token cut-me… cut-me-later") == "token cut-me… cut-me-later"
    # Redacted before the cut: the whole text fits once the secret is out of it.
    assert shorten("Bearer cut-me-secret-0123456789 and more", 20) == "Bearer *** and more"
    assert shorten("Bearer cut-me-secret-0123456789 and more", 8) == "Bearer…"


def test_json_log_lines_redact_the_traceback_too():
    Secret("json-log-secret-42", "JL")
    stream = io.StringIO()
    setup_logging("json", "info", stream=stream)
    try:
        try:
            raise RuntimeError("boom with json-log-secret-42")
        except RuntimeError:
            logging.getLogger("mrt.test").exception("failed with json-log-secret-42")
    finally:
        logging.getLogger().handlers.clear()
    line = json.loads(stream.getvalue())
    assert "json-log-secret" not in line["msg"] and "json-log-secret" not in line["exc"]
    assert "RuntimeError" in line["exc"]


# ---------------------------------------------------------------------- token scope (#14)
@pytest.fixture
def other_origin() -> Iterator[Simulator]:
    """A second server on the same host, another port: the API's neighbour, not the API."""
    sim = Simulator().start()
    yield sim
    sim.stop()


def test_a_next_link_to_another_port_of_the_same_host_gets_no_token(
    gh_tracker, github, other_origin
):
    github.add_issue(REPO, "seed", at=datetime(2026, 11, 20, tzinfo=UTC))
    tracker = gh_tracker()
    tracker.once()
    next_page = f"{other_origin.url}/repositories/1/issues?page=2"
    github.inject(Fault(200, body="[]", headers={"Link": f'<{next_page}>; rel="next"'}))
    tracker.once()
    assert other_origin.requests, "the next link was not followed"
    assert all("authorization" not in r.headers for r in other_origin.requests)
    assert all(r.headers.get("authorization") == f"Bearer {GH_TOKEN}" for r in github.requests)


def test_a_redirect_to_another_origin_drops_the_token(gh_tracker, github, other_origin):
    # httpx strips Authorization when a redirect leaves the origin (scheme, host, port), except
    # for an http -> https upgrade of the same host on default ports.
    github.add_issue(REPO, "seed", at=datetime(2026, 11, 20, tzinfo=UTC))
    tracker = gh_tracker()
    github.inject(Fault(302, headers={"Location": f"{other_origin.url}/moved"}, path="/repos/"))
    tracker.once()
    assert [r.path for r in other_origin.requests] == ["/moved"]
    assert "authorization" not in other_origin.requests[0].headers


@pytest.mark.parametrize(
    ("api_base", "url", "gets_token"),
    [
        ("https://api.github.com", "https://api.github.com/repositories/1/issues", True),
        ("https://api.github.com", "https://API.github.com:443/repositories/1/issues", True),
        ("https://api.github.com", "http://api.github.com/repositories/1/issues", False),
        ("https://api.github.com", "https://api.github.com:8443/repositories/1/issues", False),
        ("https://api.github.com", "https://github.com/x", False),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/x", True),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8081/x", False),
        ("http://127.0.0.1:8080", "https://127.0.0.1:8080/x", False),
        ("http://ghe.example", "http://ghe.example:80/api/v3/x", True),
    ],
)
def test_the_token_goes_only_to_the_origin_of_the_api_base(api_base, url, gets_token):
    from mrt_engine.sources.github import GitHubIssues, GitHubSettings

    settings = GitHubSettings(repos=[REPO], api_base=api_base)
    source = GitHubIssues(REPO, "issues", settings, Secret("origin-test-token", "GT"), 60)
    assert ("Authorization" in source.headers(url)) is gets_token


def test_a_token_parameter_is_redacted_however_a_client_encoded_it():
    # httpx 0.25 sends this token as "Ab+Cd%2FEf==SECRET…", 0.28 as "Ab+Cd/Ef==SECRET…": no list
    # of encodings covers every client, so a secret parameter's value goes by its name.
    Secret("https://welink.example/send?token=Zy+Xw/Vu==SECRET-9876543210&channel=standard", "WL2")
    for written in ("Zy+Xw%2FVu==SECRET-9876543210", "Zy%2BXw/Vu%3D%3DSECRET-9876543210"):
        text = redact(f"no robot at /send?token={written}&channel=standard (HTTP 404)")
        assert text == "no robot at /send?token=***&channel=standard (HTTP 404)"
