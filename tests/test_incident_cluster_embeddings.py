"""AI3 with embeddings (issue 13): when ``ai.embedding_model`` is set, an incident's alike alerts
are found by the endpoint's embeddings (cosine, ``incidents.cluster_embedding_similarity``),
asked for before the poll's transaction opens; a failing endpoint leaves the lexical way."""

from __future__ import annotations

import threading

import pytest
from conftest import GH_TOKEN, wait_until

from mrt_engine.simulators.openai_compat import OpenAICompatSimulator

pytestmark = pytest.mark.both_backends

KEY = "sk-local-TESTKEY-0a1b2c3d"
REPOS = ["vllm-project/vllm", "sgl-project/sglang"]
GROUPING = {"delivery": {"group_wait_seconds": 30, "group_interval_seconds": 300}}
# Alike in meaning, not in words: the lexical way scores them about 0.26 (under 0.5).
FIRST = ("vllm-project/vllm", "DeepSeek-V4 segfaults when loading its weights")
SECOND = ("sgl-project/sglang", "Crash in deepseek v4 on checkpoint load")
# Alike in words: the lexical way clusters them.
WORDY = [
    ("vllm-project/vllm", "DeepSeek-V4 fails to load with FP8"),
    ("sgl-project/sglang", "DeepSeek-V4 FP8 checkpoint fails to load"),
]


@pytest.fixture
def llm():
    with OpenAICompatSimulator(api_key=KEY) as server:
        # What a real embedding model does for two sentences that mean the same.
        server.alike[SECOND[1]] = FIRST[1]
        yield server


@pytest.fixture
def tracker(make_tracker, github, welink, llm):
    def make(extra=None, *, embeddings=True):
        extra = dict(extra or {})
        for repo in REPOS:
            github.repo(repo)
        ai = {
            "enabled": True,
            "base_url": llm.base_url,
            "api_key_env": "AI_KEY",
            "embedding_model": "bge-m3" if embeddings else "",
            "embedding_timeout_seconds": 30,
            **extra.pop("ai", {}),
        }
        config = {
            "watch_keywords": ["deepseek"],
            "sources": {"github": {"repos": REPOS, "token_env": "GH", "api_base": github.url}},
            "notify": {"welink": {"webhook_env": "WL"}},
            "scheduler": {"poll_workers": 1},  # the repos polled one at a time, in order
            "ai": ai,
            **GROUPING,
            **extra,
        }
        env = {"GH": GH_TOKEN, "WL": welink.webhook_url, "AI_KEY": KEY}
        return make_tracker(config, env)

    return make


def clustered(t) -> dict[str, str | None]:
    """Each alerted event's title and its rows' group key when it is a cluster's."""
    rows = t.sql(
        "SELECT e.title, d.group_key FROM delivery d JOIN alert a ON a.id = d.alert_id"
        " JOIN event e ON e.id = a.event_id"
    )
    return {title: key if key and ":cluster:" in key else None for title, key in rows}


def test_alike_titles_without_shared_words_cluster_by_the_endpoints_embeddings(
    tracker, github, welink, llm
):
    t = tracker()
    assert t.once() == 0  # the baseline
    for repo, title in (FIRST, SECOND):
        github.add_issue(repo, title)
    assert t.once() == 0
    keys = clustered(t)
    assert keys[FIRST[1]] is not None and keys[FIRST[1]] == keys[SECOND[1]]
    # Each title asked for once, each poll before its transaction; the second poll's compare
    # read the first alert's vector from the store's cache.
    asked = [r.json()["input"] for r in llm.embedding_requests()]
    assert asked == [[FIRST[1]], [SECOND[1]]]
    assert t.sql("SELECT COUNT(*) FROM ai_cache WHERE task = 'cluster'") == [(2,)]
    assert t.once(later=61) == 0
    [message] = welink.texts()
    assert FIRST[1] in message and SECOND[1] in message


def test_without_an_embedding_model_the_same_titles_are_not_alike_enough(tracker, github, llm):
    t = tracker(embeddings=False)
    assert t.once() == 0
    for repo, title in (FIRST, SECOND):
        github.add_issue(repo, title)
    assert t.once() == 0
    assert clustered(t) == {FIRST[1]: None, SECOND[1]: None}
    assert llm.embedding_requests() == []


def test_a_failing_embedding_endpoint_leaves_the_lexical_way_and_records_why(tracker, github, llm):
    llm.mode = "failing"
    t = tracker()
    assert t.once() == 0
    for repo, title in (FIRST, SECOND, *WORDY):
        github.add_issue(repo, title)
    assert t.once() == 0
    keys = clustered(t)
    assert keys[FIRST[1]] is None and keys[SECOND[1]] is None  # not alike in words
    assert keys[WORDY[0][1]] is not None and keys[WORDY[0][1]] == keys[WORDY[1][1]]
    # One failure, then the embeddings rest: the second repo's poll asked nothing.
    assert len(llm.embedding_requests()) == 1
    [(fallbacks, last)] = t.sql("SELECT fallbacks, last_fallback FROM ai_usage")
    assert fallbacks == 1 and last.startswith("cluster: HTTP 500")


def test_a_slow_embedding_endpoint_is_waited_for_at_most_its_timeout(tracker, github, llm):
    llm.mode, llm.delay = "slow", 5.0
    t = tracker({"ai": {"embedding_timeout_seconds": 0.3}})
    assert t.once() == 0
    for repo, title in (FIRST, SECOND, *WORDY):
        github.add_issue(repo, title)
    assert t.once() == 0
    keys = clustered(t)
    assert keys[FIRST[1]] is None and keys[WORDY[0][1]] == keys[WORDY[1][1]] is not None
    assert len(llm.embedding_requests()) == 1  # then the embeddings rest
    [(last,)] = t.sql("SELECT last_fallback FROM ai_usage")
    assert last == "cluster: no answer within 0.3s"


def test_a_spent_token_budget_leaves_the_lexical_way(tracker, github, llm):
    t = tracker({"ai": {"daily_token_budget": 0}})
    assert t.once() == 0
    for repo, title in (FIRST, SECOND, *WORDY):
        github.add_issue(repo, title)
    assert t.once() == 0
    keys = clustered(t)
    assert keys[FIRST[1]] is None and keys[WORDY[0][1]] == keys[WORDY[1][1]] is not None
    assert llm.embedding_requests() == []
    [(last,)] = t.sql("SELECT last_fallback FROM ai_usage")
    assert last.startswith("cluster: daily token budget spent")


def _from_outside(t) -> tuple[bool, int]:
    """Through a connection of its own (the engine holds the process's store): whether no write
    transaction is open on the store (SQLite: the write lock can be taken at once; PostgreSQL:
    no other session sits in a transaction), and the alerts committed."""
    import sqlite3
    from contextlib import closing

    if t.is_postgresql:
        import psycopg

        with psycopg.connect(**t.location.connect_params(), connect_timeout=5) as conn:
            [(open_,)] = conn.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
            ).fetchall()
            [(alerts,)] = conn.execute("SELECT COUNT(*) FROM alert").fetchall()
            return open_ == 0, alerts
    with closing(sqlite3.connect(t.db, timeout=0, isolation_level=None)) as db:
        [(alerts,)] = db.execute("SELECT COUNT(*) FROM alert").fetchall()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # "database is locked"
            return False, alerts
        db.execute("ROLLBACK")
        return True, alerts


def test_no_embedding_request_is_in_flight_while_the_poll_holds_the_store(tracker, github, llm):
    t = tracker()
    assert t.once() == 0
    github.add_issue(*FIRST)
    llm.hold = threading.Event()
    outcome: list[int] = []
    poll = threading.Thread(target=lambda: outcome.append(t.once()))
    poll.start()
    try:
        assert wait_until(lambda: llm.embedding_requests() != [], timeout=60)
        free, written = _from_outside(t)  # while the engine waits for the answer
    finally:
        llm.hold.set()
        poll.join(60)
    assert free
    assert written == 0  # the poll's alerts come after its embeddings
    assert outcome == [0]
    assert t.sql("SELECT COUNT(*) FROM alert") == [(1,)]


def test_a_poll_with_a_critical_rules_hit_never_waits_for_embeddings(tracker, github, llm):
    rules = [
        {"name": "crash", "keywords": ["segfaults"], "critical": True},
        {"name": "deepseek", "keywords": ["deepseek"]},
    ]
    t = tracker({"rules": rules})
    assert t.once() == 0
    github.add_issue(*FIRST)
    github.add_issue(FIRST[0], "DeepSeek-V4 docs page")
    assert t.once() == 0
    assert llm.embedding_requests() == []


def test_doctor_says_clusters_use_the_endpoints_embeddings(tracker):
    from mrt_engine.doctor import Doctor

    t = tracker()
    checks = {c.name: c for c in Doctor(t.path, t.env).run()}
    assert "incident clusters judged by embeddings of bge-m3" in checks["ai"].detail
    t = tracker(embeddings=False)
    checks = {c.name: c for c in Doctor(t.path, t.env).run()}
    assert "incident clusters judged by local lexical similarity" in checks["ai"].detail


@pytest.mark.sqlite_only("the config alone")
def test_the_embedding_threshold_of_clusters_is_validated(tmp_path):
    import json

    from mrt_engine.config import ConfigError, load_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"incidents": {"cluster_embedding_similarity": 1.5}}))
    with pytest.raises(ConfigError, match="cluster_embedding_similarity"):
        load_config(path)
    path.write_text(json.dumps({}))
    assert load_config(path).incidents.cluster_embedding_similarity == 0.85


@pytest.mark.sqlite_only("the config alone")
def test_doctor_says_clusters_use_lexical_similarity_with_the_ai_off_and_nothing_when_off(
    tmp_path,
):
    import json

    from mrt_engine.ai.settings import describe
    from mrt_engine.config import load_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({}))
    ok, detail, _hint = describe(load_config(path), {})
    assert ok and detail.endswith("; incident clusters use local lexical similarity")
    path.write_text(json.dumps({"incidents": {"cluster_similarity": 0}}))
    assert "clusters" not in describe(load_config(path), {})[1]
