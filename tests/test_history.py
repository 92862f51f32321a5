"""Nothing old is news: an event that happened before the source's baseline is history.

The first poll of a GitHub repository records only its newest page. An older item that is merely
touched later (a comment, a label, a stale bot) comes back through ``since``; its opening, closing
or merge happened years ago and must be stored as history, not alerted. A closure or merge that
really happens after the baseline is still news.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from mrt_engine.store import migrations

# The suite runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def alerted(tracker) -> list[tuple[str, str]]:
    return sorted(
        tracker.sql("SELECT e.title, e.event_type FROM alert a JOIN event e ON e.id = a.event_id")
    )


def stored(tracker, title: str) -> dict[str, int]:
    """event_type -> baseline flag of the events stored for ``title``."""
    return dict(tracker.sql("SELECT event_type, baseline FROM event WHERE title = ?", title))


def newer_page(github, n: int = 100) -> None:
    """Enough recent items that the baseline (the newest page) does not reach the old ones."""
    for i in range(n):
        github.add_issue(REPO, f"Recent item {i}", at=T0 + timedelta(minutes=i), pull=i % 2 == 0)


def old_history(github) -> None:
    """The recorded examples: an issue opened and closed in 2012, a PR merged in 2017."""
    github.add_issue(REPO, "DeepSeek crash from 2012", at=datetime(2012, 3, 1, tzinfo=UTC))
    github.close(REPO, 1, at=datetime(2012, 3, 9, tzinfo=UTC))
    github.add_issue(
        REPO, "DeepSeek kernels from 2017", pull=True, at=datetime(2017, 5, 2, tzinfo=UTC)
    )
    github.close(REPO, 2, merged=True, at=datetime(2017, 5, 20, tzinfo=UTC))


def test_an_old_issue_and_pr_touched_after_the_baseline_are_history_not_news(
    gh_tracker, github, welink
):
    old_history(github)
    newer_page(github)
    tracker = gh_tracker()
    tracker.once()  # baseline: the newest page only
    assert stored(tracker, "DeepSeek crash from 2012") == {}
    # Years later a stale bot labels them, which bumps updated_at past the cursor.
    github.update(REPO, 1, labels=[{"id": 9, "name": "stale", "color": "ededed"}])
    github.update(REPO, 2, comments=3)
    assert tracker.once() == 0
    assert alerted(tracker) == []
    assert welink.texts() == []
    # Stored (so rules can be replayed and trace explains it), flagged as history.
    assert stored(tracker, "DeepSeek crash from 2012") == {"issue_opened": 1, "issue_closed": 1}
    assert stored(tracker, "DeepSeek kernels from 2017") == {"pr_opened": 1, "pr_merged": 1}


def test_a_closure_or_merge_after_the_baseline_of_an_old_item_is_still_news(
    gh_tracker, github, welink
):
    github.add_issue(REPO, "DeepSeek crash from 2012", at=datetime(2012, 3, 1, tzinfo=UTC))
    github.add_issue(
        REPO, "DeepSeek kernels from 2017", pull=True, at=datetime(2017, 5, 2, tzinfo=UTC)
    )
    newer_page(github)
    tracker = gh_tracker()
    tracker.once()
    github.close(REPO, 1)  # now, after the baseline
    github.close(REPO, 2, merged=True)
    tracker.once()
    assert alerted(tracker) == [
        ("DeepSeek crash from 2012", "issue_closed"),
        ("DeepSeek kernels from 2017", "pr_merged"),
    ]
    assert stored(tracker, "DeepSeek crash from 2012") == {"issue_opened": 1, "issue_closed": 0}
    texts = welink.texts()
    assert len(texts) == 2 and any(t.startswith("[MRT] PR merged") for t in texts)


def test_the_baseline_time_is_recorded_and_cleared_with_the_baseline(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()
    before = datetime.now(UTC)
    tracker.once()
    key = f"github:{REPO}:issues"
    [(baseline_at,)] = tracker.sql("SELECT baseline_at FROM source_state WHERE source_key = ?", key)
    # The poll's time, less a margin for an upstream clock that runs behind ours.
    earliest = (before - timedelta(minutes=10, seconds=1)).isoformat()[:19]
    assert baseline_at is not None and earliest <= baseline_at <= before.isoformat()[:19]
    assert tracker.cli("cursor", "reset", key, "--initial").returncode == 0
    assert tracker.sql("SELECT baseline_at FROM source_state WHERE source_key = ?", key) == [
        (None,)
    ]
    second = datetime.now(UTC)
    tracker.once()
    [(again,)] = tracker.sql("SELECT baseline_at FROM source_state WHERE source_key = ?", key)
    # A new baseline, taken by the second poll (whole seconds: it may equal the first's).
    earliest = (second - timedelta(minutes=10, seconds=1)).isoformat()[:19]
    assert again is not None and earliest <= again <= datetime.now(UTC).isoformat()[:19]


def test_a_recent_window_first_run_takes_the_window_start_as_its_baseline(
    gh_tracker, github, welink
):
    now = datetime.now(UTC)
    github.add_issue(REPO, "DeepSeek from 2012", at=datetime(2012, 3, 1, tzinfo=UTC))
    github.update(REPO, 1, at=now - timedelta(hours=3))  # touched inside the window
    github.add_issue(REPO, "Fresh DeepSeek thing", at=now - timedelta(hours=2))
    tracker = gh_tracker({"sources": {"github": {"first_run": "24h"}}})
    tracker.once()
    assert alerted(tracker) == [("Fresh DeepSeek thing", "issue_opened")]
    [(baseline_at,)] = tracker.sql(
        "SELECT baseline_at FROM source_state WHERE source_key = ?", f"github:{REPO}:issues"
    )
    window = datetime.fromisoformat(baseline_at.replace("Z", "+00:00"))
    assert abs((now - timedelta(hours=24)) - window) < timedelta(minutes=5)


def test_a_cursor_reset_to_a_time_reports_what_happened_after_it_and_not_before(
    gh_tracker, github, welink
):
    old_history(github)  # issue 1 (2012), PR 2 (merged 2017)
    github.add_issue(REPO, "DeepSeek MLA from 2020", pull=True, at=datetime(2020, 1, 5, tzinfo=UTC))
    newer_page(github)
    tracker = gh_tracker()
    tracker.once()
    # The operator wants to hear what changed since 2017-05-10.
    for kind in ("issues", "pulls"):
        key = f"github:{REPO}:{kind}"
        result = tracker.cli("cursor", "reset", key, "--to", "2017-05-10T00:00:00Z")
        assert result.returncode == 0, result.stderr
        [(baseline_at,)] = tracker.sql(
            "SELECT baseline_at FROM source_state WHERE source_key = ?", key
        )
        assert baseline_at.startswith("2017-05-10T00:00:00")
        [(after,)] = tracker.sql(
            "SELECT after FROM audit WHERE target = ? ORDER BY id DESC LIMIT 1", f"source:{key}"
        )
        assert json.loads(after)["baseline_at"].startswith("2017-05-10T00:00:00")
    github.update(REPO, 1, comments=2)  # the 2012 issue comes back through since too
    tracker.once()
    assert alerted(tracker) == [
        ("DeepSeek MLA from 2020", "pr_opened"),
        ("DeepSeek kernels from 2017", "pr_merged"),
    ]
    # Opened in 2017 before the time asked for, and the 2012 issue: history.
    assert stored(tracker, "DeepSeek kernels from 2017")["pr_opened"] == 1
    assert stored(tracker, "DeepSeek crash from 2012") == {"issue_opened": 1, "issue_closed": 1}


def test_a_cursor_reset_to_a_later_time_does_not_raise_the_baseline(gh_tracker, github):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()
    tracker.once()
    key = f"github:{REPO}:issues"
    [(baseline_at,)] = tracker.sql("SELECT baseline_at FROM source_state WHERE source_key = ?", key)
    later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert tracker.cli("cursor", "reset", key, "--to", later).returncode == 0
    assert tracker.sql("SELECT baseline_at FROM source_state WHERE source_key = ?", key) == [
        (baseline_at,)
    ]


@pytest.mark.sqlite_only("a schema-1 file upgraded in place")
def test_a_store_from_schema_1_takes_its_baseline_time_from_its_first_events(
    gh_tracker, github, welink
):
    """A store baselined by the previous version has baseline_done but no baseline_at."""
    old_history(github)
    github.add_issue(REPO, "Recent item", at=T0)  # number 3, the whole baseline page
    tracker = gh_tracker()
    conn = sqlite3.connect(tracker.db)
    migrations.migrate(conn, tracker.db, target=1)
    observed = "2026-11-25T10:00:00.000000Z"
    for kind in ("issues", "pulls"):
        conn.execute(
            "INSERT INTO source_state (source_key, platform, cursor, baseline_done, version,"
            " updated_at) VALUES (?, 'github', ?, 1, 1, ?)",
            (f"github:{REPO}:{kind}", json.dumps({"since": "2026-11-20T08:00:00Z"}), observed),
        )
    # The issues key's first poll stored an event; the pulls key's found none, but its poll
    # metric says when it ran.
    conn.execute(
        "INSERT INTO event (fingerprint, source, source_key, resource_type, resource_id,"
        " event_type, event_id, title, occurred_at, observed_at, baseline)"
        " VALUES ('f3', 'github', ?, 'repo_issue', ?, 'issue_opened', '3', 'Recent item',"
        " '2026-11-20T08:00:00.000000Z', ?, 1)",
        (f"github:{REPO}:issues", REPO, observed),
    )
    conn.execute(
        "INSERT INTO poll_metric (source_key, started_at, finished_at, duration_ms, outcome)"
        " VALUES (?, ?, ?, 5, 'ok')",
        (f"github:{REPO}:pulls", "2026-11-25T10:00:01.000000Z", "2026-11-25T10:00:02.000000Z"),
    )
    conn.commit()
    conn.close()
    github.update(REPO, 1, comments=1)
    github.update(REPO, 2, comments=1)
    tracker.once()  # migrates to the current schema, then polls
    assert tracker.sql("SELECT source_key, baseline_at FROM source_state ORDER BY source_key") == [
        (f"github:{REPO}:issues", observed),
        (f"github:{REPO}:pulls", "2026-11-25T10:00:01.000000Z"),
    ]
    assert alerted(tracker) == []
    assert stored(tracker, "DeepSeek crash from 2012") == {"issue_opened": 1, "issue_closed": 1}
    assert stored(tracker, "DeepSeek kernels from 2017") == {"pr_opened": 1, "pr_merged": 1}


# ---------------------------------------------------------------------- every source's own time
# The rule is one for every source: an event before the baseline is history. So each source must
# date an event by when it happened, and a listing the baseline saw whole cannot hold history.


def test_a_private_model_made_public_after_the_baseline_is_news_whatever_its_creation_date(
    make_tracker, hf, welink
):
    hf.put_model("deepseek-ai/DeepSeek-V3", at=datetime(2026, 6, 1, tzinfo=UTC))
    # Created (privately) long before the baseline; the anonymous listing does not show it.
    hf.put_model("deepseek-ai/DeepSeek-V4", private=True, at=datetime(2026, 10, 1, tzinfo=UTC))
    tracker = make_tracker(
        {
            "sources": {"huggingface": {"orgs": ["deepseek-ai"], "api_base": hf.url}},
            "rules": [{"name": "models", "source": ["huggingface"]}],
            "notify": {"welink": {"webhook_env": "WL"}},
        },
        {"WL": welink.webhook_url},
    )
    tracker.once()
    with hf.lock:
        hf.models["deepseek-ai/DeepSeek-V4"]["private"] = False  # release day
    tracker.once()
    assert alerted(tracker) == [("deepseek-ai/DeepSeek-V4", "model_added")]


def test_an_advisory_dated_before_the_baseline_that_newly_lists_the_package_is_news(
    make_tracker, welink
):
    from mrt_engine.simulators.osv import OsvSimulator

    osv = OsvSimulator().start()
    try:
        tracker = make_tracker(
            {
                "sources": {"osv": {"packages": ["vllm"], "api_base": osv.url}},
                "notify": {"welink": {"webhook_env": "WL"}},
            },
            {"WL": welink.webhook_url},
        )
        osv.publish("vllm", "GHSA-0000-0000-0001", "old advisory")
        tracker.once()
        # An advisory from 2023 that OSV now also lists for vllm.
        osv.publish("vllm", "GHSA-2023-0000-0002", "pickle RCE in the worker")
        with osv.lock:
            osv.vulns[("PyPI", "vllm")][-1]["published"] = "2023-04-01T00:00:00Z"
        tracker.once()
    finally:
        osv.stop()
    assert [t for t, _ in alerted(tracker)] == [
        "[HIGH] GHSA-2023-0000-0002 in vllm: pickle RCE in the worker"
    ]


def test_a_service_version_from_before_the_baseline_turning_stable_or_changing_is_news(
    make_tracker, welink
):
    from mrt_engine.simulators.modelhub import ModelHubSimulator

    hub = ModelHubSimulator().start()
    try:
        tracker = make_tracker(
            {
                "sources": {"modelhub": {"api_base": hub.url}},
                "rules": [{"name": "hub", "source": ["modelhub"]}],
                "notify": {"welink": {"webhook_env": "WL"}},
            },
            {"WL": welink.webhook_url},
        )
        hub.publish("nmt-m2m100", "1.0.0")
        hub.publish("asr-whisper", "2.0.0")
        hub.set_version("nmt-m2m100", "1.0.0", created_at="2025-01-01T00:00:00Z")
        hub.set_version("asr-whisper", "2.0.0", created_at="2025-01-01T00:00:00Z")
        tracker.once()
        hub.set_version("nmt-m2m100", "1.0.0", stable=True)
        hub.set_version("asr-whisper", "2.0.0", sha256="f" * 64)
        tracker.once()
    finally:
        hub.stop()
    assert sorted(t for t, _ in alerted(tracker)) == [
        "SUPPLY-CHAIN ALARM: asr-whisper service 2.0.0 changed its sha256",
        "nmt-m2m100 service 1.0.0 is now stable",
    ]


def test_an_item_the_baseline_could_not_read_is_not_news_once_it_reads(make_tracker, hf, welink):
    """The baseline saw the whole listing, an unreadable (quarantined) item too: once that item
    reads, it is as old as it says, not new to the listing (a release or model of 2020 alerted as
    if published today)."""
    from mrt_engine.simulators.modelhub import ModelHubSimulator
    from mrt_engine.simulators.pypi import PyPISimulator

    old = datetime(2020, 5, 1, tzinfo=UTC)
    with PyPISimulator() as pypi, ModelHubSimulator() as hub:
        hub.publish("nmt-m2m100", "1.0.0")
        hub.set_version("nmt-m2m100", "1.0.0", created_at="2020-05-01T00:00:00Z")
        hub.publish("asr-whisper", "1.0.0")
        hub.publish("asr-whisper", "1.1.0")
        for version in ("1.0.0", "1.1.0"):
            hub.set_version("asr-whisper", version, created_at="2020-05-01T00:00:00Z")
        with hub.lock:  # a version number that is not text: the service cannot be read
            broken_version = hub.services["asr-whisper"]["versions"][0]
            broken_version["version"] = 11
        pypi.release("vllm", "0.1.0", at=old)
        pypi.release("vllm", "0.9.0", at=old)
        with pypi.lock:
            pypi.projects["vllm"]["0.1.0"] = "not a list of files"
        hf.put_model("deepseek-ai/DeepSeek-V2", at=old)
        broken = hf.put_model("deepseek-ai/DeepSeek-Coder", at=old)
        with hf.lock:
            broken["sha"], broken["lastModified"] = None, "not a time"
        tracker = make_tracker(
            {
                "sources": {
                    "pypi": {"packages": ["vllm"], "api_base": pypi.url},
                    "huggingface": {"orgs": ["deepseek-ai"], "api_base": hf.url},
                    "modelhub": {"api_base": hub.url},
                },
                "rules": [
                    {
                        "name": "all",
                        "event_type": [
                            "version_released",
                            "model_added",
                            "service_version_published",
                        ],
                    }
                ],
                "notify": {"welink": {"webhook_env": "WL"}},
            },
            {"WL": welink.webhook_url},
        )
        assert tracker.once() == 0  # the baseline, each source with one item quarantined
        assert tracker.sql("SELECT COUNT(*) FROM quarantine") == [(3,)]
        pypi.release("vllm", "0.1.0", at=old)  # all read again upstream, unchanged in age
        hf.put_model("deepseek-ai/DeepSeek-Coder", at=old)
        with hub.lock:
            broken_version["version"] = "1.1.0"
        pypi.release("vllm", "1.0.0")  # and something really new
        assert tracker.once() == 0
    assert alerted(tracker) == [("vllm 1.0.0 released on PyPI", "version_released")]
    assert stored(tracker, "vllm 0.1.0 released on PyPI") == {"version_released": 1}
    assert stored(tracker, "deepseek-ai/DeepSeek-Coder") == {"model_added": 1}
    assert stored(tracker, "asr-whisper service 1.1.0 published on the Model Hub") == {
        "service_version_published": 1
    }
