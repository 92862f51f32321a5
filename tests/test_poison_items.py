"""Nothing stops a source: text the store cannot encode is cleaned, an item that cannot be
processed is quarantined while the rest of its page goes on, and any other failure inside a poll
is a recorded poll failure, never an escape into the scheduler or a traceback."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import recent_t0

from mrt_engine.simulators.base import Fault

REPO = "vllm-project/vllm"
# Minutes before the tests run: items stamped after it are after the baseline (which keeps a
# 10-minute margin), so they are news, not history.
T0 = recent_t0()  # refreshed for each test by conftest._fresh_t0
ISSUES = f"github:{REPO}:issues"


def alerts(tracker) -> list[str]:
    return [
        r[0]
        for r in tracker.sql(
            "SELECT e.title FROM alert a JOIN event e ON e.id = a.event_id ORDER BY a.id"
        )
    ]


def source_state(tracker, key: str = ISSUES) -> tuple:
    return tracker.sql(
        "SELECT consecutive_failures, last_error, cursor FROM source_state WHERE source_key = ?",
        key,
    )[0]


def issues_only(gh_tracker, extra: dict | None = None):
    config = {"sources": {"github": {"monitor": {"pulls": False}}}}
    if extra:
        config.update(extra)
    return gh_tracker(config)


# ---------------------------------------------------------------------- (a) unencodable text
def test_a_lone_surrogate_in_a_title_does_not_block_the_page(gh_tracker, github, welink):
    github.add_issue(REPO, "seed", at=T0)
    tracker = issues_only(gh_tracker)
    assert tracker.cli("run", "--once").returncode == 0  # the baseline
    github.add_issue(REPO, "DeepSeek-V3 support", at=T0 + timedelta(minutes=1))
    github.add_issue(REPO, "\ud800", at=T0 + timedelta(minutes=2))
    github.add_issue(
        REPO,
        "Qwen3 \ud800 crash",
        at=T0 + timedelta(minutes=3),
        body="body \udfff text",
        labels=("bug\udc80",),
        user="bad\ud800user",
    )
    github.add_issue(REPO, "Qwen3 after the bad ones", at=T0 + timedelta(minutes=4))

    result = tracker.cli("run", "--once")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    titles = [r[0] for r in tracker.sql("SELECT title FROM event ORDER BY id")]
    assert titles == [
        "seed",
        "DeepSeek-V3 support",
        "\ufffd",
        "Qwen3 \ufffd crash",
        "Qwen3 after the bad ones",
    ]
    assert alerts(tracker) == [
        "DeepSeek-V3 support",
        "Qwen3 \ufffd crash",
        "Qwen3 after the bad ones",
    ]
    assert len(welink.texts()) == 3
    summary, author, labels, raw = tracker.sql(
        "SELECT summary, author, labels, raw FROM event WHERE title = 'Qwen3 \ufffd crash'"
    )[0]
    assert summary == "body \ufffd text" and author == "bad\ufffduser"
    assert json.loads(labels) == ["bug\ufffd"]
    assert "title" not in json.loads(raw)  # stored once, in its column
    assert source_state(tracker)[:2] == (0, None)
    # The next poll resumes after the page: nothing is fetched or alerted twice.
    assert tracker.cli("run", "--once").returncode == 0
    assert len(alerts(tracker)) == 3


def test_text_the_store_cannot_encode_is_replaced_not_dropped():
    from mrt_engine.text import storable

    assert storable("plain") == "plain"
    assert storable("DeepSeek 深度求索 🚀") == "DeepSeek 深度求索 🚀"
    assert storable("a\ud800b\udfffc") == "a\ufffdb\ufffdc"
    assert storable("\ud83d\ude00") == "\ufffd\ufffd"  # an unpaired pair stays unencodable
    assert storable("caf\xe9 \ud800").encode("utf-8") == "caf\xe9 \ufffd".encode()


def test_an_error_text_with_a_lone_surrogate_is_recorded(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = issues_only(gh_tracker)
    tracker.once()
    github.inject(Fault(200, json.dumps({"message": "bad \ud800 token"}), path="/repos/", times=5))
    assert tracker.cli("run", "--once").returncode == 1
    failures, error, _ = source_state(tracker)
    assert failures == 1 and "bad \ufffd token" in error
    metric = tracker.sql("SELECT error FROM poll_metric WHERE outcome = 'error'")[0][0]
    assert "bad \ufffd token" in metric


def test_a_log_line_with_a_lone_surrogate_reaches_the_console_log_file(
    gh_tracker, github, welink, tmp_path, monkeypatch
):
    """The console logs to a UTF-8 file: a line that quotes a channel's reply with a lone
    surrogate was lost there ("--- Logging error ---" on stderr instead), like any other line
    that quotes upstream text."""
    from mrt_tui.cli import _log_to_file

    github.add_issue(REPO, "seed", at=T0)
    tracker = issues_only(gh_tracker)
    tracker.once()
    github.add_issue(REPO, "DeepSeek news", at=T0 + timedelta(minutes=1))
    welink.inject(
        Fault(200, '{"code": "58500", "data": null, "message": "odd \\ud800 reply"}', path="/api/")
    )
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        path = _log_to_file()
        assert tracker.once() == 1
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers:
            if handler not in saved[0]:
                handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    text = Path(path).read_text(encoding="utf-8")
    assert "odd \ufffd reply" in text, text


# ---------------------------------------------------------------------- (b) recorded failures
def _fail_commits(tracker, outcomes: tuple[str, ...]) -> None:
    """A store that refuses some poll metrics: the commit of a poll fails after fetching."""
    marks = ",".join(f"'{o}'" for o in outcomes)
    tracker.sql(
        "CREATE TRIGGER refuse_metric BEFORE INSERT ON poll_metric"
        f" WHEN NEW.outcome IN ({marks}) BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
    )


def test_an_unexpected_error_in_the_commit_is_a_recorded_poll_failure(gh_tracker, github, welink):
    github.add_issue(REPO, "seed", at=T0)
    tracker = issues_only(gh_tracker, {"scheduler": {"unhealthy_after_failures": 2}})
    tracker.once()
    cursor = source_state(tracker)[2]
    _fail_commits(tracker, ("ok", "not_modified"))
    github.add_issue(REPO, "DeepSeek after the baseline", at=T0 + timedelta(minutes=1))
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        first = engine.poll_source(source, force=True)
        second = engine.poll_source(source, force=True)
        engine.deliver_once()
    finally:
        engine.close()
    assert [first.status, second.status] == ["error", "error"]
    assert "refused by a trigger" in (first.error or "")
    failures, error, after = source_state(tracker)
    assert failures == 2 and "refused by a trigger" in error
    assert after == cursor  # nothing of the failed polls was committed
    assert tracker.sql("SELECT COUNT(*) FROM poll_metric WHERE outcome = 'error'") == [(2,)]
    assert alerts(tracker) == [f"Source {ISSUES} is failing: 2 polls in a row"]


def test_a_failure_that_cannot_be_recorded_is_one_log_line(gh_tracker, github, caplog):
    github.add_issue(REPO, "seed", at=T0)
    tracker = issues_only(gh_tracker)
    tracker.once()
    _fail_commits(tracker, ("ok", "not_modified", "error"))
    engine = tracker.engine()
    engine.open()
    try:
        with caplog.at_level(logging.INFO):
            outcome = engine.poll_source(engine.sources[0], force=True)
    finally:
        engine.close()
    assert outcome.status == "error" and "refused by a trigger" in (outcome.error or "")
    lines = [r for r in caplog.records if "refused by a trigger" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    assert all(r.exc_info is None for r in caplog.records if r.levelno >= logging.WARNING)


def test_once_prints_no_traceback_when_a_commit_fails(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = issues_only(gh_tracker)
    tracker.once()
    _fail_commits(tracker, ("ok", "not_modified"))
    result = tracker.cli("run", "--once")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "refused by a trigger" in result.stderr


# ---------------------------------------------------------------------- (c) quarantine
def test_an_issue_that_cannot_be_read_is_quarantined_and_shown_in_status_and_trace(
    gh_tracker, github, welink
):
    github.add_issue(REPO, "seed", at=T0)
    tracker = issues_only(gh_tracker)
    assert tracker.once() == 0
    github.add_issue(REPO, "DeepSeek one", at=T0 + timedelta(minutes=1))
    bad = github.add_issue(REPO, "Qwen broken", at=T0 + timedelta(minutes=2))
    bad["created_at"] = "yesterday-ish"
    github.add_issue(REPO, "Qwen two", at=T0 + timedelta(minutes=3))

    result = tracker.cli("run", "--once")

    assert result.returncode == 0, result.stderr
    assert "1 item quarantined" in result.stderr and "Traceback" not in result.stderr
    assert alerts(tracker) == ["DeepSeek one", "Qwen two"]
    assert source_state(tracker)[:2] == (0, None)
    [(qid, key, error, url, times)] = tracker.sql(
        "SELECT id, item_key, error, url, times FROM quarantine"
    )
    assert (key, times) == ("3", 1)
    assert "without a valid 'created_at' timestamp" in error
    assert url == "https://github.com/vllm-project/vllm/issues/3"

    status = tracker.cli("status")
    assert (
        "1 item quarantined; latest 3 (seen" in status.stdout
        and f"trace quarantine:{qid}" in status.stdout
    ), status.stdout
    [source] = [s for s in json.loads(tracker.cli("status", "--json").stdout)["sources"]]
    assert source["quarantined"] == 1
    assert source["quarantine_latest"]["item_key"] == "3"

    traced = tracker.cli("trace", f"quarantine:{qid}")
    assert traced.returncode == 0
    assert "quarantined item" in traced.stdout and "created_at" in traced.stdout
    assert '"title": "Qwen broken"' in traced.stdout
    by_url = json.loads(tracker.cli("trace", url, "--json").stdout)
    assert [t["quarantined"]["item_key"] for t in by_url] == ["3"]

    # Fixed upstream: the item is news at last.
    bad["created_at"] = bad["updated_at"] = (T0 + timedelta(minutes=5)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert tracker.once() == 0
    assert alerts(tracker)[-1] == "Qwen broken"


def test_an_answer_whose_every_item_is_unusable_fails_the_poll(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = issues_only(gh_tracker)
    tracker.once()
    cursor = source_state(tracker)[2]
    for minute in (1, 2):
        bad = github.add_issue(REPO, f"broken {minute}", at=T0 + timedelta(minutes=minute))
        bad["html_url"] = None
    github.inject(
        Fault(
            200,
            json.dumps([i for i in github.repo(REPO).issues if i["html_url"] is None]),
            path="/repos/",
        )
    )
    assert tracker.once() == 1
    failures, error, after = source_state(tracker)
    assert failures == 1 and after == cursor
    assert "no issue of the answer is usable" in error and "(and 1 more)" in error
    assert tracker.sql("SELECT COUNT(*) FROM quarantine") == [(0,)]


def test_a_bad_item_alone_on_the_last_page_does_not_fail_the_poll(make_tracker, welink):
    """Whether every item failed is judged over the whole answer, not page by page: a broken
    advisory that happens to be alone on the last page does not hide the good ones before it."""
    from mrt_engine.simulators.osv import OsvSimulator

    with OsvSimulator(page_size=2) as osv:
        osv.publish("vllm", "GHSA-old", "old")
        tracker = make_tracker(
            {
                "sources": {"osv": {"packages": ["vllm"], "api_base": osv.url}},
                "notify": {"welink": {"webhook_env": "WL"}},
            },
            {"WL": welink.webhook_url},
        )
        assert tracker.once() == 0  # the baseline
        osv.publish("vllm", "GHSA-good", "Qwen loader RCE")
        osv.publish("vllm", "GHSA-bad", "broken")
        osv.vulns[("PyPI", "vllm")][-1]["aliases"] = 5  # alone on page 2, unreadable

        assert tracker.once() == 0

    assert tracker.sql("SELECT consecutive_failures, last_error FROM source_state") == [(0, None)]
    assert [t.split(":")[0] for t in alerts(tracker)] == ["[HIGH] GHSA-good in vllm"]
    assert tracker.sql("SELECT item_key FROM quarantine") == [("GHSA-bad",)]


def test_a_channel_answer_with_a_lone_surrogate_is_recorded_on_the_attempt(
    gh_tracker, github, welink
):
    github.add_issue(REPO, "seed", at=T0)
    tracker = issues_only(gh_tracker)
    tracker.once()
    github.add_issue(REPO, "DeepSeek news", at=T0 + timedelta(minutes=1))
    welink.inject(
        Fault(200, '{"code": "58500", "data": null, "message": "odd \\ud800 reply"}', path="/api/")
    )
    result = tracker.cli("run", "--once")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [(outcome, error)] = tracker.sql("SELECT outcome, error FROM attempt")
    assert outcome == "failed" and "odd \ufffd reply" in error
    assert tracker.sql("SELECT status, last_error FROM delivery")[0] == ("retrying", error)


def test_an_operator_argument_that_is_not_utf8_is_audited_without_failing(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = issues_only(gh_tracker)
    tracker.once()
    from mrt_engine import operations

    with tracker.store() as store:
        operations.set_paused(store, ISSUES, True, actor="ops\udcff@host via cli")
    [(actor,)] = tracker.sql("SELECT actor FROM audit")
    assert actor == "ops\ufffd@host via cli"


def test_an_id_with_a_lone_surrogate_matches_its_stored_cursor_entry(make_tracker, hf):
    hf.put_model("Qwen/plain")
    hf.put_model("Qwen/oddname")["id"] = "Qwen/odd\ud800name"  # as a JSON escape upstream
    tracker = make_tracker({"sources": {"huggingface": {"orgs": ["Qwen"], "api_base": hf.url}}})
    assert tracker.once() == 0  # the baseline
    tracker.sql("UPDATE source_state SET etag = NULL")  # no 304: compare the whole list again
    assert tracker.once() == 0
    assert tracker.sql("SELECT event_type, title FROM event WHERE baseline = 0") == []
    cursor = json.loads(tracker.sql("SELECT cursor FROM source_state")[0][0])
    assert sorted(cursor["models"]) == ["Qwen/odd\ufffdname", "Qwen/plain"]


def test_an_event_whose_row_cannot_be_built_is_quarantined_and_the_batch_goes_on():
    from mrt_engine.batch import prepare_batch
    from mrt_engine.events import TrackerEvent
    from mrt_engine.rules import RuleConfig, RuleSet

    now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def event(number: int, title) -> TrackerEvent:
        return TrackerEvent(
            source="github",
            source_key=ISSUES,
            resource_type="repo_issue",
            resource_id=REPO,
            event_type="issue_opened",
            event_id=str(number),
            title=title,
            url=f"https://github.com/{REPO}/issues/{number}",
            observed_at=now,
        )

    rules = RuleSet.compile([RuleConfig(name="qwen", keywords=["qwen"])], ["welink"])
    batch = prepare_batch(
        [event(1, "Qwen one"), event(2, None), event(3, "Qwen three")], rules, now
    )
    assert [p.event_row[7] for p in batch.events] == ["Qwen one", "Qwen three"]
    assert all(p.alert_row is not None for p in batch.events)
    [held] = batch.quarantined
    assert held.item_key == "2" and "title" in held.error
    assert held.url == f"https://github.com/{REPO}/issues/2"


def test_a_quarantined_item_that_carries_a_secret_keeps_none_of_it(gh_tracker, github):
    from conftest import GH_TOKEN

    github.add_issue(REPO, "seed", at=T0)
    tracker = issues_only(gh_tracker)
    assert tracker.once() == 0
    # An item echoing our token, cut by the excerpt right inside it.
    bad = github.add_issue(REPO, "x" * 90 + GH_TOKEN, at=T0 + timedelta(minutes=1))
    bad["created_at"] = f"not a time {GH_TOKEN}"
    assert tracker.once() == 0
    [(error, excerpt)] = tracker.sql("SELECT error, excerpt FROM quarantine")
    for text in (error, excerpt):
        assert GH_TOKEN[:8] not in text, text
