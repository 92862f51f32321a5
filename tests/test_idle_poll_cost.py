"""What an unchanged poll does, and what it no longer does.

It sends its conditional request on the connection kept alive and reads no table: its
source's state row is read once and kept while nothing is committed to the store (one
``PRAGMA data_version`` on a connection of its own tells). A commit from elsewhere (an operator's
pause or cursor reset, from another process) still reaches the very next poll. Its request is
built from what the last one built. An answer that sets no cookie is not copied into the cookie
jar; one that does still has its cookie sent back. Between two flushes an idle engine reads no
table at all: the control job and the delivery workers keep what they read the same way.
"""

from __future__ import annotations

import http.cookiejar
import sqlite3
from contextlib import closing
from datetime import UTC, datetime

from conftest import GH_TOKEN, wait_until

from mrt_engine.simulators.base import Fault, Request, Response
from mrt_engine.simulators.github import GitHubSimulator

REPO = "vllm-project/vllm"
KEY = f"github:{REPO}:issues"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
ISSUES_ONLY = {"sources": {"github": {"monitor": {"pulls": False}}}}


def settled(gh_tracker, github):
    """A tracker whose source has its baseline and an ETag: its next poll is a ``304``."""
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker(ISSUES_ONLY)
    assert tracker.once() == 0  # the baseline
    assert tracker.once() == 0  # the first incremental poll: a 200 with an ETag
    return tracker


def other_connection(tracker) -> sqlite3.Connection:
    """A connection of another process's kind (an operator's ``mrt-engine`` command)."""
    return sqlite3.connect(tracker.db, isolation_level=None, timeout=10)


def test_an_unchanged_poll_reads_nothing_from_the_store(gh_tracker, github, store_statements):
    tracker = settled(gh_tracker, github)
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        assert engine.poll_source(source).status == "not_modified"  # its state row is read
        traced: list[str] = []
        assert engine.store is not None
        engine.store.db.connection().set_trace_callback(traced.append)
        store_statements.clear()
        outcomes = [engine.poll_source(source) for _ in range(5)]
        assert [o.status for o in outcomes] == ["not_modified"] * 5
        assert store_statements == [] and traced == []
        # Each sent its conditional request, on the one connection kept alive.
        sent = github.requests_to(f"/repos/{REPO}/issues")[-5:]
        assert all(r.headers.get("if-none-match") for r in sent)
        assert len(engine.http._backend._streams) == 1
    finally:
        engine.close()


def test_an_unchanged_source_builds_its_request_from_what_it_built_before(
    gh_tracker, github, monkeypatch
):
    """Its listing URL and headers are the same poll after poll: built and parsed once."""
    import httpx._urls

    tracker = settled(gh_tracker, github)
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        assert engine.poll_source(source).status == "not_modified"
        parses: list[str] = []
        urlparse = httpx._urls.urlparse

        def counted(url: str, **kwargs):
            parses.append(url)
            return urlparse(url, **kwargs)

        monkeypatch.setattr(httpx._urls, "urlparse", counted)
        for _ in range(3):
            assert engine.poll_source(source).status == "not_modified"
        assert parses == []
        assert len({r.target for r in github.requests[-3:]}) == 1
    finally:
        engine.close()


def test_an_unchanged_source_sends_again_the_request_it_built_before(
    gh_tracker, github, monkeypatch
):
    """The same URL, headers and validators: the request is not built again, and it does not
    walk httpx's auth, redirect and hook layers (the client has none for it)."""
    import httpx

    tracker = settled(gh_tracker, github)
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        assert engine.poll_source(source).status == "not_modified"
        calls: list[str] = []
        for name in ("build_request", "send"):
            original = getattr(httpx.Client, name)

            def counted(client, *args, _name=name, _original=original, **kwargs):
                calls.append(_name)
                return _original(client, *args, **kwargs)

            monkeypatch.setattr(httpx.Client, name, counted)
        seen = len(github.requests)
        for _ in range(3):
            assert engine.poll_source(source).status == "not_modified"
        assert calls == []
        sent = github.requests[seen:]
        assert len(sent) == 3 and all(r.headers.get("if-none-match") for r in sent)
        assert all(r.headers.get("authorization") == f"Bearer {GH_TOKEN}" for r in sent)
    finally:
        engine.close()


def test_a_kept_request_that_is_redirected_follows_the_redirect(gh_tracker, github):
    """A listing that moves (a renamed repository answers 301) is followed as httpx follows it,
    validators kept on the same origin."""
    tracker = settled(gh_tracker, github)
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        assert engine.poll_source(source).status == "not_modified"
        listing = github.requests_to(f"/repos/{REPO}/issues")[-1].target
        github.inject(Fault(301, headers={"Location": f"{github.url}{listing}"}, path="/repos/"))
        seen = len(github.requests)
        assert engine.poll_source(source).status == "not_modified"
        sent = github.requests[seen:]
        assert [r.target for r in sent] == [listing, listing]
        assert sent[1].headers.get("if-none-match")
    finally:
        engine.close()


def test_a_kept_request_that_fails_is_a_network_failure(gh_tracker, github):
    """httpcore's errors on the kept request's path are httpx's, as on the client's own: a
    failure of the source's poll, never a crash of the source."""
    tracker = settled(gh_tracker, github)
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        assert engine.poll_source(source).status == "not_modified"
        # An answer cut short (a read error inside the answer's stream).
        github.inject(Fault(kind="truncated", path="/repos/", times=10))
        cut = engine.poll_source(source, force=True)
        github.clear_faults()
        # The upstream gone: its connection closed, nothing listening (a connect error).
        github.stop()
        engine.http._backend.cut()
        gone = engine.poll_source(source, force=True)
        for outcome in (cut, gone):
            assert outcome.status == "error", outcome
            assert "internal error" not in (outcome.error or "")
        assert "RemoteProtocolError" in (cut.error or "") or "ReadError" in (cut.error or "")
        assert "ConnectError" in (gone.error or "")
    finally:
        engine.close()


def test_a_pause_or_a_cursor_reset_from_another_process_reaches_the_next_poll(gh_tracker, github):
    tracker = settled(gh_tracker, github)
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        assert engine.poll_source(source).status == "not_modified"
        with closing(other_connection(tracker)) as other:
            other.execute("UPDATE source_state SET paused = 1 WHERE source_key = ?", (KEY,))
            assert engine.poll_source(source).status == "paused"
            seen = len(github.requests)
            other.execute(
                "UPDATE source_state SET paused = 0, etag = NULL, version = version + 1,"
                " cursor = ? WHERE source_key = ?",
                ('{"since": "2026-11-01T00:00:00Z"}', KEY),
            )
        outcome = engine.poll_source(source)
        sent = github.requests[seen:]
        assert [r.param("since") for r in sent] == ["2026-11-01T00:00:00Z"]
        assert "if-none-match" not in sent[0].headers
        assert outcome.status == "ok"
    finally:
        engine.close()


class CookieGitHub(GitHubSimulator):
    """GitHub behind a front that sets a cookie on the answers to one path."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cookie_path = ""

    def decorate(self, request: Request, response: Response, *, fault: bool) -> Response:
        response = super().decorate(request, response, fault=fault)
        if self.cookie_path and request.path == self.cookie_path:
            response.headers["Set-Cookie"] = "front=abc123; Path=/"
        return response


def test_an_answer_without_a_cookie_is_not_copied_into_the_cookie_jar(
    make_tracker, welink, monkeypatch
):
    github = CookieGitHub(token=GH_TOKEN).start()
    try:
        github.add_issue(REPO, "seed", at=T0)
        tracker = make_tracker(
            {
                "sources": {
                    "github": {
                        "repos": [REPO],
                        "token_env": "GH",
                        "api_base": github.url,
                        "monitor": {"pulls": False},
                    }
                },
            },
            {"GH": GH_TOKEN},
        )
        assert tracker.once() == 0 and tracker.once() == 0
        handed: list[object] = []
        extract = http.cookiejar.CookieJar.extract_cookies

        def counted(jar, response, request):
            handed.append(response)
            return extract(jar, response, request)

        monkeypatch.setattr(http.cookiejar.CookieJar, "extract_cookies", counted)
        engine = tracker.engine()
        engine.open()
        try:
            source = engine.sources[0]
            for _ in range(3):
                assert engine.poll_source(source).status == "not_modified"
            assert handed == []
            # An answer that sets one: the cookie is kept and sent back, as before.
            github.cookie_path = f"/repos/{REPO}/issues"
            assert engine.poll_source(source).status == "not_modified"
            assert len(handed) == 1
            github.cookie_path = ""
            assert engine.poll_source(source).status == "not_modified"
            assert github.requests[-1].headers.get("cookie") == "front=abc123"
        finally:
            engine.close()
    finally:
        github.stop()


def test_a_running_idle_engine_reads_no_table_between_its_flushes(
    gh_tracker, github, welink, store_statements
):
    """Its polls, the control job (poll requests) and the delivery workers (what is due) all
    keep what they read until something is committed."""
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker(
        {
            "sources": {"github": {"monitor": {"pulls": False}, "poll_interval_seconds": 1}},
            "scheduler": {"jitter_seconds": 0, "idle_flush_seconds": 60},
        }
    )
    assert tracker.once() == 0 and tracker.once() == 0  # baseline, then an ETag
    engine = tracker.engine()
    engine.start()
    try:
        # Every first read of a start done: a poll or two, the control job, the workers.
        assert wait_until(lambda: len(github.requests) >= 4, timeout=30)
        store_statements.clear()
        seen = len(github.requests)
        assert wait_until(lambda: len(github.requests) >= seen + 3, timeout=30)
        assert store_statements == []
        # A poll requested from another process is still picked up (and read for).
        with closing(other_connection(tracker)) as other:
            other.execute(
                "UPDATE source_state SET poll_requested_at = ? WHERE source_key = ?",
                ("2026-12-01T00:00:00Z", KEY),
            )
            query = "SELECT COUNT(*) FROM source_state WHERE poll_requested_at IS NOT NULL"
            assert wait_until(lambda: other.execute(query).fetchone()[0] == 0)
        assert any("poll_requested_at" in sql for sql, _ in store_statements)
    finally:
        engine.stop()


def test_an_idle_engines_delivery_workers_sleep_until_there_is_work(
    gh_tracker, github, welink, monkeypatch
):
    """No worker looks at the outbox on a timer: an alert the engine commits wakes them at
    once, a resend from another process within the control job's second."""
    from mrt_engine.delivery.worker import DeliveryWorkers

    looks: list[str] = []
    claim_if_due = DeliveryWorkers._claim_if_due

    def counted(workers, channel, worker, *args, **kwargs):
        looks.append(worker)
        return claim_if_due(workers, channel, worker, *args, **kwargs)

    monkeypatch.setattr(DeliveryWorkers, "_claim_if_due", counted)
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker(
        {
            "sources": {"github": {"monitor": {"pulls": False}, "poll_interval_seconds": 1}},
            "scheduler": {"jitter_seconds": 0, "idle_flush_seconds": 60},
        }
    )
    assert tracker.once() == 0 and tracker.once() == 0  # baseline, then an ETag
    engine = tracker.engine()
    engine.start()
    try:
        assert wait_until(lambda: len(github.requests) >= 4, timeout=30)  # first looks done
        # Three idle seconds in which no worker woke. On a loaded machine the engine's start-up
        # (its first flushes) can still land in the first window; a worker on a timer would look
        # in every window, so three tries tell the two apart.
        for _ in range(3):
            looks.clear()
            seen = len(github.requests)
            assert wait_until(lambda seen=seen: len(github.requests) >= seen + 3, timeout=30)
            if not looks:
                break
        assert looks == []  # three idle seconds, two workers: none woke
        github.add_issue(REPO, "DeepSeek-V4 weights released")
        assert wait_until(lambda: len(welink.texts()) == 1, timeout=30)
        with closing(other_connection(tracker)) as other:
            delivery = other.execute("SELECT MAX(id) FROM delivery").fetchone()[0]
        tracker.in_process = False  # the operator's command: another process
        assert tracker.cli("resend", str(delivery)).returncode == 0
        assert wait_until(lambda: len(welink.texts()) == 2, timeout=30)
    finally:
        engine.stop()


def test_a_commit_landing_while_a_value_is_read_makes_the_next_ask_read_again(tmp_path):
    from mrt_engine.state_cache import StateCache

    path = tmp_path / "store.sqlite3"
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("PRAGMA journal_mode = wal")
        other.execute("CREATE TABLE t (n INTEGER)")
        other.execute("INSERT INTO t VALUES (1)")
        cache: StateCache[int] = StateCache(path)
        reads: list[int] = []

        def read() -> int:
            value = other.execute("SELECT n FROM t").fetchone()[0]
            reads.append(value)
            if len(reads) == 1:  # another process commits just after this read
                other.execute("UPDATE t SET n = 2")
            return value

        try:
            assert cache.get("n", read) == 1
            assert cache.get("n", read) == 2  # read again: the commit came after the version
            assert cache.get("n", read) == 2 and reads == [1, 2]  # unchanged since: kept
            other.execute("UPDATE t SET n = 3")
            assert cache.get("n", read) == 3 and reads == [1, 2, 3]
        finally:
            cache.close()
