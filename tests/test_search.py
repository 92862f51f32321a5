"""The Events filter: words through the trigram index, fields through indexes, and always the
answer of the plain definition (case-folded substring of the shown title; fields as before)."""

from __future__ import annotations

import random
import re
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

import pytest

from mrt_engine.batch import commit_events
from mrt_engine.events import TrackerEvent
from mrt_engine.rules import RuleConfig, RuleSet
from mrt_engine.store import feed, migrations, search
from mrt_engine.store.db import open_store
from mrt_engine.text import clean

# The suite runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
# Titles holding "hit" match the one rule: matched:yes.
RULES = RuleSet.compile([RuleConfig(name="hits", keywords=["hit"], fields=["title"])], ["welink"])


def tracker_event(
    n: int,
    title: str,
    *,
    source: str = "github",
    source_key: str = "github:vllm-project/vllm:issues",
    event_type: str = "issue_opened",
) -> TrackerEvent:
    return TrackerEvent(
        source=source,
        source_key=source_key,
        resource_type="repo_issue",
        resource_id="vllm-project/vllm",
        event_type=event_type,
        event_id=str(n),
        title=title,
        observed_at=NOW - timedelta(minutes=10_000 - n),
    )


def write(store, events: list[TrackerEvent]) -> None:
    with store.write():
        commit_events(store, events, RULES, NOW)


@pytest.fixture
def store(backend, store_location):
    store = open_store(store_location)
    yield store
    store.close()


def found(query: str, **window) -> list[str]:
    return [row.title for row in feed.event_rows(feed.EventFilter.parse(query), **window)]


def test_a_word_is_found_anywhere_in_the_title_in_any_case_and_script(store):
    titles = [
        "[Model] Support DeepSeek-V3.2",
        "通义千问3 发布：Qwen3-235B",
        "STRASSE closed",
        "Die Straße ist offen",
        "ΣΊΣΥΦΟΣ release",
        "\u212aelvin sign",  # KELVIN SIGN folds to k
        "de\u202eep\x1bseek hidden",  # shown as "deepseek hidden"
        'quote "AND" OR NEAR(x) -y *z',
    ]
    write(store, [tracker_event(n, t) for n, t in enumerate(titles, 1)])
    assert found("seek-v3") == [titles[0]]
    assert found("DEEPSEEK") == ["deepseek hidden", titles[0]]
    assert found("千问3") == [titles[1]]
    assert found("qwen3-235") == [titles[1]]
    assert found("strasse") == [titles[3], titles[2]]  # ß folds to ss
    assert found("σίσυφοσ") == [titles[4]]
    assert found("kelvin") == [titles[5]]
    assert found('"AND"') == [titles[7]]  # shlex takes the quotes off: the word AND
    assert found("and") == [titles[7]]
    assert found("near(x)") == [titles[7]]
    assert found("*z") == [titles[7]]
    assert found("nowhere") == []


def test_words_of_one_or_two_characters_are_found_too(store):
    titles = ["通义千问 2.5", "千问", "QwQ", "v3 is out", "no match here", "released: V3", "x"]
    write(store, [tracker_event(n, t) for n, t in enumerate(titles, 1)])
    assert found("千问") == [titles[1], titles[0]]
    assert found("问") == [titles[1], titles[0]]
    assert found("V3") == [titles[5], titles[3]]  # at the end of a title too
    assert found("qw") == [titles[2]]
    assert found("X") == [titles[6]]  # a title of one character
    assert found("qw 千问") == []
    assert found("is v3") == [titles[3]]
    assert found("zz") == []


def test_words_combine_with_source_type_and_matched(store):
    write(
        store,
        [
            tracker_event(1, "DeepSeek hit one", source_key="github:deepseek-ai/DeepSeek-V3:issues"),
            tracker_event(2, "DeepSeek two", source_key="github:deepseek-ai/DeepSeek-V3:pulls",
                          event_type="pr_opened"),
            tracker_event(3, "DeepSeek hit three", source="huggingface",
                          source_key="hf:deepseek-ai", event_type="model_updated"),
            tracker_event(4, "Qwen hit four", source_key="github:[x]?repo:issues"),
            tracker_event(5, "deepseek five", source_key="github:vllm-project/vllm:pulls",
                          event_type="pr_opened"),
        ],
    )  # fmt: skip
    assert found("deepseek source:github:deepseek-ai") == ["DeepSeek two", "DeepSeek hit one"]
    assert found("deepseek source:huggingface") == ["DeepSeek hit three"]
    assert found("deepseek source:github") == ["deepseek five", "DeepSeek two", "DeepSeek hit one"]
    assert found("source:*:pulls") == ["deepseek five", "DeepSeek two"]
    assert found("source:github:[x]?repo:issues") == ["Qwen hit four"]
    assert found("source:github:[x]*") == ["Qwen hit four"]
    assert found("deepseek type:pr_*") == ["deepseek five", "DeepSeek two"]
    assert found("deepseek type:model_updated") == ["DeepSeek hit three"]
    assert found("deepseek matched:yes") == ["DeepSeek hit three", "DeepSeek hit one"]
    assert found("deepseek matched:no type:pr_opened") == ["deepseek five", "DeepSeek two"]
    assert found("matched:yes source:github") == ["Qwen hit four", "DeepSeek hit one"]
    assert found("type:nothing_like_it") == []
    assert found("deepseek source:nowhere") == []


def test_paging_by_id_walks_the_matches_in_both_directions(store):
    events = [
        tracker_event(n, f"item {n} {'deepseek' if n % 3 else 'other'}") for n in range(1, 61)
    ]
    write(store, events)
    flt = feed.EventFilter.parse("deepseek")
    first = feed.event_rows(flt, limit=7)
    want = [n for n in range(60, 0, -1) if n % 3]
    assert [r.id for r in first] == want[:7]
    older = feed.event_rows(flt, before_id=first[-1].id, limit=7)
    assert [r.id for r in older] == want[7:14]
    newer = feed.event_rows(flt, after_id=older[0].id, limit=7)
    assert [r.id for r in newer] == want[:7]
    assert [r.id for r in feed.event_rows(flt, after_id=58, limit=7)] == [59]
    assert [r.id for r in feed.event_rows(flt, before_id=3, limit=7)] == [2, 1]


# The index and the field indexes must never change what matches: compare with the plain
# definition on random filters, windows and hostile text.
_PIECES = [
    "DeepSeek",
    "deepseek",
    "QWEN",
    "qwen3",
    "千问",
    "通义千问",
    "模型",
    "Straße",
    "STRASSE",
    "ſtrasse",
    "\u212aimi",
    "KİMİ",
    "ﬁle",
    "ΣΊΣΥΦΟΣ",
    "ς",
    "\x00",
    "\x1b[2J",
    "\u202e",
    "\ufeff",
    "\ufffd",
    "\uffff",  # FTS5 reads U+FFFE and U+FFFF as U+FFFD
    "\U0001f600",
    '"',
    "'",
    "*",
    "?",
    "[",
    "%",
    "_",
    " ",
    "\t",
    "-",
    "a",
    "A",
    "hit",
    "AND",
    "NEAR(",
    "ü",
    "Ü",
]
_KEYS = [
    ("github", "github:vllm-project/vllm:issues"),
    ("github", "github:vllm-project/vllm:pulls"),
    ("github", "github:[x]*?:issues"),
    ("huggingface", "hf:Qwen/Qwen3"),
    ("modelscope", "ms:通义/千问"),
    ("huggingface", "github-like:odd"),
]
_TYPES = ["issue_opened", "pr_opened", "pr_merged", "model_updated", "[odd]*?"]


def _title(rng: random.Random, pieces: list[str]) -> str:
    return "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 7)))


def _word(rng: random.Random, titles: list[str]) -> str:
    roll = rng.random()
    if roll < 0.5:  # a piece of a stored title, often in another case
        title = rng.choice(titles)
        if not title:
            return "x"
        lo = rng.randrange(len(title))
        word = title[lo : lo + rng.randrange(1, 6)]
        return rng.choice([word, word.upper(), word.lower(), word.casefold()])
    return rng.choice([*_PIECES, "ss", "SS", "k", "i̇", "fi", "σ", "nowhere", "问模"])


def _field(rng: random.Random, values: list[str]) -> str:
    value = rng.choice(values)
    roll = rng.random()
    if roll < 0.3:
        return value[: rng.randrange(1, len(value) + 1)]  # a prefix
    if roll < 0.5:
        cut = rng.randrange(len(value))
        return value[:cut] + "*"
    if roll < 0.6:
        return "?" + value[1:]
    if roll < 0.7:
        return "nowhere"
    return value


def _reference(rows, hits, flt, before_id, after_id, limit) -> list[int]:
    def ok(row) -> bool:
        n, title, source, key, kind = row
        shown = clean(title).casefold()
        if not all(w.casefold() in shown for w in flt.text.split()):
            return False
        if flt.source:
            v = flt.source
            glob = v.replace("[", "[[]")
            if "*" in v or "?" in v:
                if not fnmatchcase(key, glob):
                    return False
            elif not (source == v or key.startswith(v)):
                return False
        if flt.event_type:
            v = flt.event_type
            if "*" in v or "?" in v:
                if not fnmatchcase(kind, v.replace("[", "[[]")):
                    return False
            elif kind != v:
                return False
        return flt.matched is None or (n in hits) == flt.matched

    ids = sorted((r[0] for r in rows if ok(r)), reverse=True)
    if after_id is not None:
        return sorted(i for i in ids if i > after_id)[:limit][::-1]
    if before_id is not None:
        ids = [i for i in ids if i < before_id]
    return ids[:limit]


@pytest.mark.parametrize("steps", ["default", "tiny"])
def test_the_search_finds_what_the_plain_definition_finds(store, backend, monkeypatch, steps):
    if steps == "tiny":  # many rounds of the stream race on a small store
        monkeypatch.setattr(search, "FIRST_STEP", 1)
        monkeypatch.setattr(search, "LAST_STEP", 4)
    rng = random.Random(9)
    pieces = _PIECES
    if backend == "postgresql":  # its text holds no NUL: another control character instead
        pieces = [p.replace("\x00", "\x01") for p in _PIECES]
    events = []
    for n in range(1, 241):
        source, key = rng.choice(_KEYS)
        events.append(
            tracker_event(
                n, _title(rng, pieces), source=source, source_key=key, event_type=rng.choice(_TYPES)
            )
        )
    for lo in range(0, len(events), 40):  # several polls: several index segments
        write(store, events[lo : lo + 40])
    rows = store.db.execute_sql(
        "SELECT id, title, source, source_key, event_type FROM event"
    ).fetchall()
    hits = {r[0] for r in store.db.execute_sql("SELECT event_id FROM rule_hit").fetchall()}
    titles = [r[1] for r in rows]
    for _ in range(400):
        flt = feed.EventFilter(
            text=" ".join(_word(rng, titles) for _ in range(rng.choice([0, 1, 1, 1, 2, 3]))),
            source=_field(rng, [k for _, k in _KEYS] + ["github"]) if rng.random() < 0.3 else None,
            event_type=_field(rng, _TYPES) if rng.random() < 0.3 else None,
            matched=rng.choice([None, None, True, False]),
        )
        limit = rng.choice([1, 3, 7, 200])
        before_id = after_id = None
        roll = rng.random()
        if roll < 0.3:
            before_id = rng.randrange(1, 250)
        elif roll < 0.5:
            after_id = rng.randrange(0, 245)
        got = [
            r.id for r in feed.event_rows(flt, before_id=before_id, after_id=after_id, limit=limit)
        ]
        want = _reference(rows, hits, flt, before_id, after_id, limit)
        assert got == want, (flt, before_id, after_id, limit)


def _plans(store, query: str, **window) -> list[tuple[str, list[str]]]:
    """Every statement the search ran for ``query``, with its query plan."""
    ran: list[tuple[str, tuple]] = []

    def execute(sql, params=()):
        ran.append((sql, tuple(params)))
        return store.db.execute_sql(sql, params)

    with store.read():
        search.matching_ids(feed.EventFilter.parse(query), execute, limit=50, **window)
    return [
        (sql, [r[3] for r in store.db.execute_sql("EXPLAIN QUERY PLAN " + sql, params)])
        for sql, params in ran
    ]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("deepseek", "event_search VIRTUAL TABLE"),
        ("deepseek qwen3", "event_search VIRTUAL TABLE"),
        ("source:github", "INDEX event_source "),
        ("source:github:vllm-project/vllm:issues", "INDEX event_source_key "),
        ("source:*:pulls", "INDEX event_source_key "),
        ("type:pr_opened", "INDEX event_event_type "),
        ("type:pr_*", "INDEX event_event_type "),
        ("matched:yes", "INDEX rule_hit_event "),
        ("deepseek source:github type:issue_opened matched:yes", "event_search VIRTUAL TABLE"),
        ("nowhere source:github type:issue_opened matched:yes", "event_search VIRTUAL TABLE"),
        ("deepseek matched:no", "event_search VIRTUAL TABLE"),
        ("3 h", "event_search VIRTUAL TABLE"),  # words shorter than a trigram
    ],
)
def test_the_filtered_read_uses_the_indexes_and_never_scans_the_events(store, query, index):
    write(store, [tracker_event(n, f"DeepSeek qwen3 hit {n}") for n in range(1, 30)])
    for window in ({}, {"before_id": 10}, {"after_id": 5}):
        plans = _plans(store, query, **window)
        for sql, plan in plans:
            for step in plan:
                assert not re.match(r"SCAN (event|rule_hit|e|h)\b", step), (sql, plan)
                assert "TEMP B-TREE" not in step, (sql, plan)
        assert index in " ".join(" ".join(plan) for _, plan in plans)


@pytest.mark.sqlite_only
def test_a_search_writes_nothing_so_an_unchanged_store_stays_unchanged(store):
    write(store, [tracker_event(n, f"DeepSeek {n}") for n in range(1, 30)])
    other = sqlite3.connect(store.path)
    try:
        version = other.execute("PRAGMA data_version").fetchone()[0]
        own = store.db.execute_sql("PRAGMA data_version").fetchone()[0]  # what a refresh asks
        changes = store.db.connection().total_changes
        for query in ("deepseek", "问", "matched:no source:github type:issue_*"):
            found(query)
        assert store.db.connection().total_changes == changes
        assert other.execute("PRAGMA data_version").fetchone()[0] == version
        assert store.db.execute_sql("PRAGMA data_version").fetchone()[0] == own
    finally:
        other.close()


@pytest.mark.postgresql_only
def test_a_search_on_postgresql_writes_nothing_and_sends_no_change_signal(store):
    from mrt_engine.store.watch import watch_store

    write(store, [tracker_event(n, f"DeepSeek {n}") for n in range(1, 30)])
    watch = watch_store(store)
    try:
        version = watch.version()
        with store.read():  # a read-only transaction there: a search that wrote would fail
            for query in ("deepseek", "问", "se", "matched:no source:github type:issue_*"):
                found(query)
        threading.Event().wait(0.2)  # a notification arrives a moment after its commit
        assert watch.version() == version
    finally:
        watch.close()


@pytest.mark.sqlite_only
def test_a_store_from_schema_2_gets_its_events_into_the_search_index(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    migrations.migrate(conn, path, target=2)
    titles = ["通义千问3 发布", "DeepSeek-V3.2 ÜBER", "plain title"]
    for n, title in enumerate(titles, 1):
        conn.execute(
            "INSERT INTO event (fingerprint, source, source_key, resource_type, resource_id,"
            " event_type, event_id, title, observed_at)"
            " VALUES (?, 'github', 'github:a/b:issues', 'repo_issue', 'a/b', 'issue_opened', ?,"
            " ?, '2026-11-20T08:00:00.000000Z')",
            (f"f{n}", str(n), title),
        )
    conn.commit()
    conn.close()
    store = open_store(path)
    try:
        assert store.found_version == 2
        assert found("千问3") == [titles[0]]
        assert found("über") == [titles[1]]
        assert found("title") == [titles[2]]
        write(store, [tracker_event(9, "a new deepseek title")])
        assert found("title") == ["a new deepseek title", titles[2]]
        assert found("deepseek") == ["a new deepseek title", titles[1]]
    finally:
        store.close()
