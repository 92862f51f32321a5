"""The poll's fast paths give what the plain ways they replace gave.

Each fast path of the poll (tests/perf/bench_pipeline.py measures them) is checked here against
the way it replaced, on the same input: state rows read and written in plain SQL against
Peewee's queries, and so on.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mrt_engine.batch import dumps
from mrt_engine.pipeline import load_state, update_state
from mrt_engine.store.db import open_store
from mrt_engine.store.models import SourceState
from mrt_engine.text import body_text, clean_line, excerpt, line_excerpt
from mrt_engine.timeutil import from_store, parse_iso, to_store

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _every_field_set(key: str) -> dict:
    return {
        "source_key": key,
        "platform": "github",
        "cursor": {"since": "2026-03-01T12:00:00Z", "page": [1, "ü"]},
        "etag": 'W/"abc"',
        "last_modified": "Sun, 01 Mar 2026 12:00:00 GMT",
        "validated_url": "https://api.github.com/repos/a/b/issues?since=x",
        "baseline_done": True,
        "baseline_at": T0,
        "paused": False,
        "poll_requested_at": T0 + timedelta(seconds=1),
        "last_poll_at": T0 + timedelta(seconds=2),
        "last_success_at": T0 + timedelta(seconds=3),
        "last_error": "503 from GET https://api.github.com/…",
        "last_error_at": T0 + timedelta(seconds=4),
        "consecutive_failures": 2,
        "backoff_until": T0 + timedelta(seconds=5),
        "next_poll_at": T0 + timedelta(seconds=6),
        "rate_limit_remaining": 4999,
        "rate_limit_reset_at": T0 + timedelta(seconds=7),
        "version": 7,
        "updated_at": T0 + timedelta(seconds=8),
    }


def test_a_state_row_read_in_plain_sql_is_the_row_peewee_reads(tmp_path):
    store = open_store(tmp_path / "s.sqlite3")
    try:
        with store.write():
            SourceState.insert(**_every_field_set("github:a/b:issues")).execute()
            SourceState.insert(
                source_key="github:a/b:pulls", platform="github", updated_at=T0
            ).execute()
        for key in ("github:a/b:issues", "github:a/b:pulls"):
            ours, peewees = load_state(store, key), SourceState.get(SourceState.source_key == key)
            assert ours.__data__ == peewees.__data__
            assert ours.dirty_fields == peewees.dirty_fields == []
        assert load_state(store, "github:c/d:issues") is None
    finally:
        store.close()


def test_a_state_update_in_plain_sql_writes_what_peewees_update_wrote(tmp_path):
    store = open_store(tmp_path / "s.sqlite3")
    changes = {
        "cursor": {"since": "2026-03-02T00:00:00Z"},
        "etag": None,
        "last_modified": "Mon, 02 Mar 2026 00:00:00 GMT",
        "validated_url": "https://api.github.com/x",
        "baseline_done": True,
        "baseline_at": T0 - timedelta(days=1),
        "poll_requested_at": None,
        "last_poll_at": T0 + timedelta(minutes=1),
        "last_success_at": T0 + timedelta(minutes=2),
        "consecutive_failures": 0,
        "backoff_until": None,
        "next_poll_at": T0 + timedelta(minutes=3),
        "rate_limit_remaining": None,
        "rate_limit_reset_at": T0 + timedelta(minutes=4),
        "updated_at": T0 + timedelta(minutes=2),
    }
    try:
        with store.write():
            for key in ("ours", "peewees", "moved on"):
                SourceState.insert(**_every_field_set(key)).execute()
            assert update_state(store, "ours", 7, **changes) == 1
            assert (
                SourceState.update(**changes, version=SourceState.version + 1)
                .where((SourceState.source_key == "peewees") & (SourceState.version == 7))
                .execute()
            ) == 1
            assert update_state(store, "moved on", 6, **changes) == 0  # the version is 7
        peewees, ours, untouched = store.db.execute_sql(
            "SELECT * FROM source_state ORDER BY source_key DESC"
        ).fetchall()
        assert ours[1:] == peewees[1:]
        assert untouched[0] == "moved on"
        assert load_state(store, "moved on").__data__ == {
            **_every_field_set("moved on"),
            "cursor": {"since": "2026-03-01T12:00:00Z", "page": [1, "ü"]},
        }
    finally:
        store.close()


def test_the_excerpt_of_a_body_is_its_excerpt_cleaned_again():
    rng = random.Random(5)
    alphabet = [*"abc xyz", *"\u00e9\u00df\u4e2d\u202e\x1b\x00\r\n\t\u00a0\u3000\u2028", "  "]
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(60)))
        limit = rng.randrange(40)
        # A body cut at its own limit may end in a space.
        for body in (body_text(text), body_text(text, rng.randrange(60))):
            assert line_excerpt(body, limit) == excerpt(body, limit), (body, limit)
        assert line_excerpt(clean_line(text), limit) == excerpt(text, limit)


def test_a_text_that_is_one_clean_line_already_is_kept_and_any_other_is_folded():
    rng = random.Random(7)
    alphabet = [*"ab ", " ", "\u00e9", "\u4e2d", "\u00a0", "\u3000", "\u2028", "\t", "\x85"]
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        folded = re.sub(r"\s+", " ", text.replace("\x85", "")).strip()
        assert clean_line(text) == folded, repr(text)
        assert body_text(text) == folded


def _random_value(rng: random.Random, depth: int) -> object:
    roll = rng.random()
    if depth == 0 or roll < 0.4:
        return rng.choice(
            [
                None,
                True,
                False,
                0,
                -7,
                2**70,
                1.5,
                -0.0,
                float("inf"),
                float("nan"),
                "",
                'a"\\b',
                "\u00e9\u4e2d",
                "\ud800",
                "\x00\x1f\u2028",
                "</script>",
            ]
        )
    if roll < 0.7:
        return [_random_value(rng, depth - 1) for _ in range(rng.randrange(4))]
    if roll < 0.8:
        return tuple(_random_value(rng, depth - 1) for _ in range(rng.randrange(4)))
    keys = ["b", "a", "\u00e9", "A", "10", "9", ""]
    return {rng.choice(keys): _random_value(rng, depth - 1) for _ in range(rng.randrange(5))}


def test_row_json_is_what_json_dumps_writes():
    rng = random.Random(3)
    for _ in range(5000):
        value = _random_value(rng, rng.randrange(5))
        expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        assert dumps(value) == expected
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"a": {1, 2}})


def test_store_time_text_is_the_naive_utc_isoformat_with_a_z():
    rng = random.Random(11)
    zones = [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-3, minutes=-30))]
    zones.append(timezone(timedelta(hours=5, minutes=45, seconds=30)))
    for _ in range(5000):
        when = datetime(2, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(365 * 24 * 3600 * 9990), microseconds=rng.choice([0, 1, 999999])
        )
        value = when.astimezone(rng.choice(zones))
        naive = value.astimezone(UTC).replace(tzinfo=None)
        assert to_store(value) == naive.isoformat(timespec="microseconds") + "Z"
        assert from_store(to_store(value)) == value


def _parse_iso_the_general_way(value: str) -> datetime:
    """parse_iso before its fast path: strip, ``Z`` as ``+00:00``, naive as UTC, to UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def test_an_upstream_time_parses_as_the_general_way_parses_it():
    values = [
        "2026-01-01T00:00:07Z",
        "2026-01-01T00:00:07z",
        " 2026-01-01T00:00:07Z ",
        "2026-01-01T00:00:07.123456Z",
        "2026-01-01T00:00:07.5Z",
        "2026-01-01T00:00:07+00:00",
        "2026-01-01T08:00:07+08:00",
        "2025-12-31T20:30:07-03:30",
        "2026-01-01T00:00:07",
        "2026-01-01",
        "2026-01-01T00:00Z",
        "20260101T000007Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "2026-02-30T00:00:00Z",
        "yesterday",
        "",
        "Z",
        "2026-01-01T00:00:07ZZ",
        "2026-01-01T00:00:07+00:00Z",
        "9999-12-31T23:59:00-01:00",
    ]
    for value in values:
        try:
            want: datetime | str = _parse_iso_the_general_way(value)
        except (ValueError, OverflowError) as exc:
            want = type(exc).__name__
        try:
            got: datetime | str = parse_iso(value)
        except ValueError as exc:
            got = "OverflowError" if "out of the range" in str(exc) else type(exc).__name__
        assert got == want, value
        if isinstance(got, datetime):
            assert got.tzinfo is UTC, value


def _from_store_the_general_way(value: str) -> datetime:
    """from_store before its fast path: the store's format, else any ISO form."""
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return _parse_iso_the_general_way(value)


def test_a_stored_time_reads_as_the_general_way_reads_it():
    rng = random.Random(5)
    values = [
        "2026-01-01T00:00:07.000000Z",
        "2026-01-01T00:00:07.5Z",
        "2026-1-1T0:0:7.5Z",
        "2026-01-01T00:00:07Z",
        "2026-01-01 00:00:07",
        "2026-01-01T08:00:07+08:00",
        "2026-01-01",
        "0001-01-01T00:00:00.000000Z",
        "9999-12-31T23:59:59.999999Z",
        "2026-01-01T00:00:07.000000z",
    ]
    values += [
        to_store(T0 + timedelta(seconds=rng.randrange(10**9), microseconds=rng.randrange(10**6)))
        for _ in range(1000)
    ]
    for value in values:
        want = _from_store_the_general_way(value)
        got = from_store(value)
        assert got == want and got.tzinfo is UTC, value
    for bad in ("yesterday", "2026-02-30T00:00:00.000000Z"):
        with pytest.raises(ValueError):
            from_store(bad)


def _tables(store) -> dict[str, list[tuple]]:
    tables = ("event", "rule_hit", "alert", "delivery", "delivery_count", "rule_hit_count")
    found = {t: store.db.execute_sql(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    found["event_search"] = store.db.execute_sql(
        "SELECT rowid FROM event_search WHERE event_search MATCH 'qwen' ORDER BY rowid"
    ).fetchall()
    return found


def test_a_batch_that_holds_stored_events_writes_what_a_batch_of_only_its_new_ones_writes(
    tmp_path,
):
    from mrt_engine.batch import prepare_batch, write_batch
    from mrt_engine.events import TrackerEvent
    from mrt_engine.rules import RuleConfig, RuleSet

    rules = RuleSet.compile(
        [RuleConfig(name="qwen", keywords=["qwen"]), RuleConfig(name="any", keywords=["e"])],
        ["welink", "email"],
    )

    def event(number: int, title: str) -> TrackerEvent:
        return TrackerEvent(
            source="github",
            source_key="github:a/b:issues",
            resource_type="repo_issue",
            resource_id="a/b",
            event_type="issue_opened",
            event_id=str(number),
            title=title,
            observed_at=T0,
            occurred_at=T0,
        )

    old = [event(1, "Qwen one"), event(2, "two"), event(3, "three qwen")]
    new = [event(4, "Qwen four"), event(5, "five"), event(6, "qwen six")]
    mixed = [old[1], new[0], old[0], new[1], new[2], old[2]]
    written = {}
    for name, second in (("mixed", mixed), ("only new", new)):
        store = open_store(tmp_path / f"{name}.sqlite3")
        try:
            with store.write():
                write_batch(store, prepare_batch(old, rules, T0))
            with store.write():
                counts = write_batch(store, prepare_batch(second, rules, T0))
            assert (counts.new, counts.matched, counts.alerts) == (3, 3, 3)
            with store.write():  # every event stored already: nothing written
                assert write_batch(store, prepare_batch(mixed, rules, T0)).new == 0
            written[name] = _tables(store)
        finally:
            store.close()
    assert written["mixed"] == written["only new"]
    events = written["mixed"]["event"]
    assert [(row[0], row[7]) for row in events] == [(n, str(n)) for n in range(1, 7)]
    assert written["mixed"]["event_search"] == [(1,), (3,), (4,), (6,)]


def test_a_list_of_names_is_stored_as_the_json_written_each_time_before(monkeypatch):
    """names_json (labels, alert rules and tags, encoded once per distinct tuple) gives what
    storable(dumps(...)) gave for every tuple, including after its cache was emptied."""
    from mrt_engine import batch
    from mrt_engine.text import storable

    rng = random.Random(5)
    names = ["bug", "new-model", "é", "x\ud800y", "a\x00b", "", '"q"', "\u2028"]
    monkeypatch.setattr(batch, "_NAMES_JSON_MAX", 7)  # small: emptied many times on the way
    monkeypatch.setattr(batch, "_NAMES_JSON", {})
    for _ in range(2000):
        value = tuple(rng.choice(names) for _ in range(rng.randrange(4)))
        assert batch.names_json(value) == storable(dumps(value))
        assert len(batch._NAMES_JSON) <= 7
    # a source's bug (an unhashable label) is encoded as before, not kept
    assert batch.names_json(("a", ["b"])) == storable(dumps(("a", ["b"])))


def test_a_fingerprint_is_the_sha256_of_its_fields_as_before():
    import hashlib

    from mrt_engine.events import fingerprint_of, stable_event_id

    fields = ("github", "repo_issue", "vllm-project/vllm", "issue_opened", "12\ud800")
    joined = "|".join(fields).replace("\ud800", "\ufffd")
    assert fingerprint_of(*fields) == hashlib.sha256(joined.encode()).hexdigest()
    assert fingerprint_of(*fields) == fingerprint_of(*fields)  # a fresh hash every time
    assert stable_event_id("a", None, 3) == hashlib.sha256(b"a\x1f\x1f3").hexdigest()[:24]


def test_the_engine_process_collects_cycles_rarely_and_never_walks_what_it_started_with():
    # In a process of its own: the settings are the whole process's.
    code = (
        "import gc, json\n"
        "from mrt_engine.engine import tune_interpreter, GC_YOUNG_THRESHOLD\n"
        "tune_interpreter()\n"
        "frozen = gc.get_freeze_count()\n"
        "tune_interpreter()\n"  # a second engine in the process freezes nothing more
        "print(json.dumps([gc.get_threshold()[0], GC_YOUNG_THRESHOLD, frozen,"
        " gc.get_freeze_count() == frozen]))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    threshold, wanted, frozen, once = json.loads(found)
    assert threshold == wanted >= 10_000
    assert frozen > 10_000  # the modules and objects the engine started with
    assert once
