"""Every query the console, the CLI and the workers run reads an index, never a whole big table.

The queries are not listed here. Every public function (and public method of a public class) of
the modules in :data:`MODULES` is called against a small store with arguments from
:data:`SAMPLES`, while SQLite's trace callback records each statement it actually runs; then the
``EXPLAIN QUERY PLAN`` of each recorded statement is checked (:func:`plan_problems`). A new query
function is covered as soon as it exists; one with a parameter that has no samples fails until
the parameter gets some. The engine's own poll and delivery pass are recorded the same way
(:func:`test_a_poll_and_a_delivery_read_no_big_table_whole`).

A plan that reads a table that grows with history (:data:`BIG_TABLES`) fails when it
- scans it (``SCAN event``, with or without an index), unless the statement is a *window*: the
  newest (or oldest) rows by id with a ``LIMIT`` and no filter but an id bound; or it scans a
  partial index, which holds only the rows its ``WHERE`` names (the delivery queue);
- walks it by id range with another filter (a scan in disguise);
- builds an automatic index (a scan to build it);
- sorts every matching row before a ``LIMIT`` (``USE TEMP B-TREE FOR ORDER BY``).
Tables that stay small (:data:`SMALL_TABLES`) may be scanned; every table is one or the other.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import peewee
import pytest

from mrt_engine.store.db import Store, open_store

MODULES = (
    "mrt_engine.store.queries",
    "mrt_engine.store.feed",
    "mrt_engine.store.views",
    "mrt_engine.store.snapshots",
    "mrt_engine.operations",
    "mrt_engine.delivery.outbox",
    "mrt_engine.delivery.preview",
    "mrt_engine.delivery.bundles",
    "mrt_engine.rules.dryrun",
    "mrt_engine.store.retention",
    "mrt_engine.store.engines",
    "mrt_engine.silences",
    "mrt_engine.metrics",
    "mrt_engine.store.health_figures",
    "mrt_engine.store.incident_queries",
)

# Tables that grow with history: a query reads a bounded part of them, through an index.
BIG_TABLES = frozenset(
    # notice_group: a row per group key a channel has seen (read by its key only)
    {"event", "rule_hit", "alert", "delivery", "attempt", "poll_metric", "notice_group"}
    # ai_cache: an answer per text the optional AI was asked about (read by its key only)
    | {"ai_cache"}
    # incidents: a row per alerted event that names a model family, and per family a window
    | {"incident", "incident_event"}
    # incident_thread: a row per incident and channel that threads (read by that key only)
    | {"incident_thread"}
)
# Tables that stay small: one row per source key, per operator action, per unreadable item.
SMALL_TABLES = frozenset(
    {
        "source_state",
        "audit",
        "quarantine",
        "retention_mark",
        "delivery_count",
        "rule_hit_count",
        # engines on the store: a row per engine start (a few hundred a year), a lease per source
        "engine_instance",
        "source_lease",
        # silences: a row per operator's silence
        "silence",
        "digest_schedule",  # a row per channel with a digest
        "ai_usage",  # a row per day the optional AI ran
    }
)

# Callables whose full scans other items of issue 9 remove. The mark is strict: once the fix is
# merged the test passes, the mark fails, and its line here goes.
KNOWN_SCANS: dict[str, str] = {}


# ---------------------------------------------------------------------- reading plans
class FullScan(AssertionError):
    """A recorded statement reads a big table whole (or sorts all of it before a LIMIT)."""


_KEYWORDS = frozenset(
    [
        "where",
        "join",
        "inner",
        "left",
        "right",
        "full",
        "cross",
        "natural",
        "on",
        "using",
        "order",
        "group",
        "limit",
        "union",
        "set",
        "values",
        "indexed",
        "not",
        "as",
        "select",
        "from",
        "having",
        "window",
        "except",
        "intersect",
        "returning",
    ]
)
_SOURCE = re.compile(r'\b(?:from|join|update|into)\s+"?(\w+)"?(?:\s+(?:as\s+)?"?(\w+)"?)?', re.I)
_STEP = re.compile(
    r"^(?P<verb>SCAN|SEARCH) (?P<name>\S+)"
    r"(?: USING (?:(?P<auto>AUTOMATIC )?(?:COVERING )?INDEX ?(?P<index>\S*)"
    r"|INTEGER PRIMARY KEY \((?P<pk>[^)]*)\)))?"
)
_ID_BOUND = re.compile(r'^(?:"?\w+"?\.)?"?(?:id|rowid)"?\s*[<>]=?\s*(?:-?\d+|\?)$', re.I)


def _without_literals(sql: str) -> str:
    """``sql`` with each string literal replaced by ``?`` (their text could look like SQL)."""
    return re.sub(r"'(?:[^']|'')*'", "?", sql)


def _top_level(sql: str) -> str:
    """``sql`` with every parenthesised part blanked out (subqueries, function arguments)."""
    out, depth = [], 0
    for char in sql:
        if char == "(":
            depth += 1
        out.append(char if depth == 0 else " ")
        if char == ")":
            depth -= 1
    return "".join(out)


def _strip_parens(text: str) -> str:
    """``text`` without the parentheses that enclose all of it."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, char in enumerate(text):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0 and i < len(text) - 1:
                return text  # "(a) AND (b)": the first parenthesis closes before the end
        text = text[1:-1].strip()
    return text


def _conjuncts(text: str) -> list[str]:
    """The terms of ``text`` joined by top-level ``AND``."""
    text = _strip_parens(text)
    terms, start = [], 0
    for match in re.finditer(r"\band\b", _top_level(text), re.I):
        terms.append(_strip_parens(text[start : match.start()]))
        start = match.end()
    return [*terms, _strip_parens(text[start:])]


def is_window(sql: str) -> bool:
    """A ``LIMIT`` of rows in id order whose only filter is an id bound: reading the table in
    rowid order stops after the page, whatever the table's size."""
    bare = _without_literals(sql)
    top = _top_level(bare)
    if not re.search(r"\blimit\b", top, re.I):
        return False
    where = re.search(r"\bwhere\b", top, re.I)
    if where is None:
        return True
    end = re.search(r"\b(?:order|group|limit|having|window|union)\b", top[where.end() :], re.I)
    stop = where.end() + (end.start() if end else len(top))
    return all(_ID_BOUND.match(term) for term in _conjuncts(bare[where.end() : stop]))


def _selects(sql: str) -> Iterator[str]:
    """``sql`` and every parenthesised ``SELECT`` in it (subqueries), each whole."""
    yield sql
    for start, char in enumerate(sql):
        if char != "(" or not re.match(r"\(\s*select\b", sql[start:], re.I):
            continue
        depth = 0
        for end in range(start, len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            if depth == 0:
                yield sql[start + 1 : end]
                break


def window_sources(sql: str) -> set[str]:
    """The names (tables and aliases) read by a ``SELECT`` of ``sql`` that is a window
    (:func:`is_window`): the statement itself, or a subquery that pages its table by id."""
    found: set[str] = set()
    for select in _selects(_without_literals(sql)):
        if is_window(select):
            top = _top_level(select)
            found.update(name for name, _ in table_names(top).items())
    return found


def table_names(sql: str) -> dict[str, set[str]]:
    """Each name a plan may show for a table of ``sql`` (the table's or its alias) -> tables."""
    names: dict[str, set[str]] = {}
    for table, alias in _SOURCE.findall(_without_literals(sql)):
        names.setdefault(table, set()).add(table)
        if alias and alias.lower() not in _KEYWORDS:
            names.setdefault(alias, set()).add(table)
    return names


def partial_indexes(conn: sqlite3.Connection) -> set[str]:
    """The indexes that hold only the rows their ``WHERE`` names."""
    return {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'"
        )
    }


def plan_connection(path) -> sqlite3.Connection:
    """A connection to explain the store's statements on, with the SQL functions the store
    registers (a statement that calls one cannot even be planned without it)."""
    from mrt_engine.store import search

    conn = sqlite3.connect(path)
    search.register(conn)
    return conn


def plan_problems(conn: sqlite3.Connection, sql: str) -> list[str]:
    """What is wrong with the plan of ``sql`` (nothing when it reads big tables by index)."""
    details = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    names = table_names(sql)
    partial = partial_indexes(conn)
    windowed = window_sources(sql)
    problems: list[str] = []
    reads_big = False
    for detail in details:
        step = _STEP.match(detail)
        if step is None:
            continue
        tables = names.get(step["name"], {step["name"]})
        if not tables & BIG_TABLES:
            continue
        reads_big = True
        if step["auto"]:
            problems.append(f"builds an automatic index (a scan): {detail}")
        elif step["verb"] == "SCAN":
            if step["index"] in partial:
                continue  # the rows its WHERE names (the queue), not the history
            if step["name"] not in windowed:
                problems.append(f"scans a big table: {detail}")
        elif step["pk"] and re.search(r"rowid[<>]", step["pk"]) and step["name"] not in windowed:
            problems.append(f"walks a big table by id with another filter: {detail}")
    limited = re.search(r"\blimit\b", _without_literals(sql), re.I)
    for detail in details:
        if detail.startswith("USE TEMP B-TREE") and limited and reads_big:
            problems.append(f"sorts every matching row before LIMIT: {detail}")
    return problems


def checked(conn: sqlite3.Connection, statements: list[str]) -> list[str]:
    """Problems of each distinct recorded statement, with the statement and its whole plan."""
    out: dict[str, str] = {}
    for sql in dict.fromkeys(statements):
        if not re.match(r"\s*(select|with|insert|update|delete|replace)\b", sql, re.I):
            continue  # BEGIN, COMMIT, SAVEPOINT, PRAGMA, "-- TRIGGER" notes
        problems = plan_problems(conn, sql)
        shape = re.sub(r"\b\d+\b", "?", _without_literals(sql))
        if problems and shape not in out:
            shown = re.sub(r"^SELECT (.{60}).*? FROM ", r"SELECT \1… FROM ", sql)
            plan = "\n".join(f"      {r[3]}" for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
            out[shape] = "\n".join([f"  {shown}", *(f"    {p}" for p in problems), plan])
    return list(out.values())


@dataclass
class Recorder:
    """Every statement SQLite runs on this thread's connection of ``store``."""

    store: Store
    statements: list[str] = field(default_factory=list)

    def __enter__(self) -> Recorder:
        self.store.db.connection().set_trace_callback(self.statements.append)
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.db.connection().set_trace_callback(None)


# ---------------------------------------------------------------------- finding the queries
def public_callables() -> Iterator[tuple[str, type | None, str, Any]]:
    """(id, class or None, attribute, the function/descriptor) of every public callable."""
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        short = module_name.rsplit(".", 1)[1]
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
                continue
            if inspect.isfunction(obj):
                yield f"{short}.{name}", None, name, obj
            elif inspect.isclass(obj) and not issubclass(obj, BaseException):
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue  # dunders, including a dataclass's generated ones
                    if isinstance(member, classmethod | staticmethod | property) or (
                        inspect.isfunction(member)
                    ):
                        yield f"{short}.{name}.{attr}", obj, attr, member


CALLABLES = list(public_callables())


# ---------------------------------------------------------------------- samples
@dataclass
class Samples:
    """What the small store holds, for building arguments."""

    store: Store
    event_id: int  # an event with an alert, deliveries and attempts
    delivery_ids: list[int]
    fingerprint: str
    url: str
    source_key: str
    quarantine_id: int
    item_key: str


def _clock():
    from console_data import NOW

    return lambda: NOW


def _event(s: Samples):
    from mrt_engine.store.models import Event

    return Event.get_by_id(s.event_id)


def _rules(s: Samples):
    from console_data import write_config

    from mrt_engine.components import compile_rules
    from mrt_engine.config import load_config

    folder = s.store.path.parent / "rules"
    folder.mkdir(exist_ok=True)
    return compile_rules(load_config(write_config(folder)))


def _filters(s: Samples):
    from mrt_engine.store.feed import EventFilter

    return [
        EventFilter(),
        EventFilter.parse("deepseek"),
        EventFilter.parse("source:github"),
        EventFilter.parse("source:github:*"),
        EventFilter.parse("type:pr_opened"),
        EventFilter.parse("type:pr_*"),
        EventFilter.parse("matched:yes"),
        EventFilter.parse("matched:no"),
    ]


def _claims(s: Samples):
    from mrt_engine.delivery.outbox import Outbox

    outbox = Outbox(s.store, owner="plans", clock=_clock())
    return outbox.claim("welink") or outbox.claim("email")


def _sents(s: Samples):
    from mrt_engine.delivery.outbox import Sent

    claims = _claims(s)
    results = _send_results(s)
    return [[Sent(c, results[i % len(results)], 12, _clock()()) for i, c in enumerate(claims)]]


def _send_results(s: Samples):
    from mrt_engine.notify.base import SendResult

    return [
        SendResult(ok=True, http_status=200),
        SendResult(ok=False, http_status=503, error="HTTP 503"),
        SendResult(ok=False, error="refused", permanent=True),
    ]


def _when(s: Samples):
    from console_data import NOW

    return [NOW - timedelta(hours=2), NOW - timedelta(days=400)]


def _compiled_rule(s: Samples):
    from mrt_engine.rules.dryrun import draft_rule
    from mrt_engine.rules.matcher import CompiledRule

    return [CompiledRule(draft_rule("deepseek"), ["welink"])]


def _tracker_events(s: Samples):
    from mrt_engine.operations import tracker_event
    from mrt_engine.store.models import Event

    return [[(e.id, tracker_event(e)) for e in Event.select().order_by(Event.id)]]


def _model_rows(model_name: str):
    def rows(s: Samples):
        from mrt_engine.store import models

        model = getattr(models, model_name)
        return [model.select().order_by(model._meta.primary_key.desc()).first()]

    return rows


def _instances(cls_name: str):
    def make(s: Samples):
        from console_data import NOW

        from mrt_engine.delivery.bundles import Planner
        from mrt_engine.delivery.outbox import Outbox, OutboxPolicy
        from mrt_engine.operations import ReplayPlan
        from mrt_engine.silences import ActiveSilences
        from mrt_engine.store import retention

        kinds = {type(k).__name__: k for k in retention.kinds(retention.RetentionPolicy(), NOW)}
        return {
            **{name: (lambda kind=kind: [kind]) for name, kind in kinds.items()},
            "PruneReport": lambda: [retention.PruneReport(dry_run=True, at=NOW)],
            "Outbox": lambda: [
                Outbox(s.store, owner="plans", clock=_clock()),
                Outbox(s.store, owner="plans", clock=_clock(), channels=_policies()),
            ],
            "Message": lambda: _messages(s),
            "Row": lambda: [m.row for m in _messages(s)[:1]],
            "Planner": lambda: [
                Planner(s.store, s.store.db.cursor(), channel, policy, NOW)
                for channel, policy in _policies().items()
            ],
            "OutboxPolicy": lambda: [OutboxPolicy()],
            "EventFilter": lambda: _filters(s),
            "ReplayPlan": lambda: [ReplayPlan()],
            "ActiveSilences": lambda: [ActiveSilences(s.store)],
            "Figures": lambda: _figures(s),
            "SourceFigures": lambda: _figures(s)[0].sources,
            "SourceHealth": lambda: list(_health(s).sources),
            "ChannelHealth": lambda: list(_health(s).channels),
        }[cls_name]()

    return make


def _figures(s: Samples):
    from console_data import NOW

    from mrt_engine import metrics

    return [metrics.figures(s.store, None, NOW), metrics.figures(s.store, NOW, NOW)]


def _health(s: Samples):
    from console_data import NOW

    from mrt_engine.store.health_figures import health_figures

    return health_figures(NOW)


def _policies():
    """Channel policies that group, hold a digest and fold (every query of the bundles)."""
    from mrt_engine.delivery.policy import ChannelPolicy
    from mrt_engine.notify.base import DigestSettings

    return {
        "welink": ChannelPolicy(group_wait=30, group_interval=300, rate_per_minute=1),
        "email": ChannelPolicy(rate_per_minute=20, digest=DigestSettings(below_priority=100)),
    }


def _messages(s: Samples):
    from mrt_engine.delivery.bundles import Message, Row

    row = Row(s.delivery_ids[0], 0, 0, "source=github", "single", _clock()())
    return [
        Message(row, "group", keys=["source=github"]),
        Message(row, "fold", ids=s.delivery_ids[:3], keys=["source=github"]),
        Message(row, "digest", slot=_clock()()),
    ]


def _policy(**kwargs):
    from mrt_engine.store.retention import RetentionPolicy

    return RetentionPolicy(pause_seconds=0, **kwargs)


def _retention_section(s: Samples):
    from mrt_engine.config import validate

    return [validate({}).retention]


# By annotation (a domain type), then by parameter name. Each gives a list of values: the first
# is the one used while other parameters vary.
TYPE_SAMPLES: dict[str, Callable[[Samples], list]] = {
    "Store": lambda s: [s.store],
    "Event": lambda s: [_event(s)],
    "Delivery": _model_rows("Delivery"),
    "Alert": _model_rows("Alert"),
    "Attempt": _model_rows("Attempt"),
    "RuleHitRow": _model_rows("RuleHitRow"),
    "Quarantine": _model_rows("Quarantine"),
    "SourceState": _model_rows("SourceState"),
    "Claim": _claims,
    "Message": _messages,
    "SendResult": _send_results,
    "Sent": lambda s: _sents(s)[0],
    "Sequence[Sent]": _sents,
    "RuleSet": lambda s: [_rules(s)],
    "CompiledRule": _compiled_rule,
    "EventFilter": _filters,
    "Clock": lambda s: [_clock()],
    "sqlite3.Cursor": lambda s: [s.store.db.cursor()],
    "datetime": _when,
    "timedelta": lambda s: [timedelta(days=14), timedelta(seconds=1)],
    "QuarantineView": lambda s: [None],
    "RetentionPolicy": lambda s: [_policy(), _policy(batch_rows=1)],
    "SilenceRow": _model_rows("Silence"),
    "ActiveSilences": lambda s: [None, *_instances("ActiveSilences")(s)],
    "Figures": _figures,
}
SAMPLES: dict[str, Callable[[Samples], list]] = {
    "store": lambda s: [s.store],
    "db": lambda s: [s.store.db],
    "config": _retention_section,
    "position": lambda s: [0],
    "stopped": lambda s: [lambda: False],
    "ids": lambda s: [s.delivery_ids[:2]],
    "delivery_ids": lambda s: [s.delivery_ids[:4], [999_999]],
    "status": lambda s: ["pending", "retrying", "sent", "dead"],
    "channel": lambda s: ["welink", "email"],
    "channels": lambda s: [["welink", "email"]],
    "ref": lambda s: [
        s.fingerprint,
        s.fingerprint[:8],
        s.fingerprint[:8].upper(),
        "ffffff",
        s.url,
        f"event:{s.event_id}",
        f"delivery:{s.delivery_ids[0]}",
        f"quarantine:{s.quarantine_id}",
        s.item_key,
        "not a reference",
    ],
    "delivery_id": lambda s: [*s.delivery_ids, 999_999],
    "carrier_id": lambda s: [s.delivery_ids[0]],
    "now_s": lambda s: ["2026-11-22T10:00:00.000000Z"],
    "error": lambda s: [None, "HTTP 503"],
    "event_id": lambda s: [s.event_id, 999_999],
    "rule_names": lambda s: [["deepseek"], []],
    "tags": lambda s: [["models"]],
    "priority": lambda s: [0],
    "source_key": lambda s: [
        s.source_key,
        "modelscope:Qwen:models",
        "github:nobody/nothing:issues",
    ],
    "source": lambda s: ["github:*", s.source_key],
    "limit": lambda s: [3, 100],
    "before_id": lambda s: [s.event_id + 1],
    "after_id": lambda s: [1],
    "exclude": lambda s: [s.delivery_ids[:2]],
    "claims": lambda s: [_claims(s)],
    "worker": lambda s: ["plans-1"],
    "owner": lambda s: ["plans"],
    "engine_id": lambda s: ["plans-engine"],
    "host": lambda s: ["plans-host"],
    "pid": lambda s: [4242],
    "version": lambda s: ["1.0.0"],
    "lease_seconds": lambda s: [30.0],
    "source_keys": lambda s: [[s.source_key, "github:nobody/nothing:issues"]],
    "before_release": lambda s: [None],
    "actor": lambda s: ["tester@host via plans"],
    "via": lambda s: ["plans"],
    "paused": lambda s: [True, False],
    "dry_run": lambda s: [True, False],
    "initial": lambda s: [True],
    "with_raw": lambda s: [True],
    "quarantined": lambda s: [1],
    "duration_ms": lambda s: [250],
    "cursor": lambda s: [None, {"since": "2026-11-22T09:00:00Z"}, {"models": {"a/b": {}}}],
    "value": lambda s: [{"a": ["b", 1]}],
    "query": lambda s: ["deepseek source:github type:pr_* matched:yes"],
    "pattern": lambda s: ["deepseek, qwen", "/deep.?seek/"],
    "fields": lambda s: [["title"]],
    "flt": _filters,
    "events": _tracker_events,
    "rule": _compiled_rule,
    "silence_id": lambda s: [1],
    "why": lambda s: ["silenced by silence 1"],
    "include_expired": lambda s: [False, True],
    "cleaned": lambda s: [True],
    "matchers": lambda s: [["org=vllm-project", "text=~deep.?seek"], ["org=*"]],
    "author": lambda s: ["alice"],
    "comment": lambda s: ["too loud"],
    "duration": lambda s: ["2h"],
}


def _annotation(param: inspect.Parameter) -> str:
    text = param.annotation if isinstance(param.annotation, str) else ""
    return re.sub(r"\s*\|\s*None$", "", text)


def samples_for(param: inspect.Parameter, s: Samples) -> list | None:
    by_type = TYPE_SAMPLES.get(_annotation(param))
    if by_type is not None:
        return by_type(s)
    by_name = SAMPLES.get(param.name)
    return by_name(s) if by_name is not None else None


def argument_sets(name: str, func: Callable, s: Samples) -> list[dict[str, Any]]:
    """Calls of ``func``: its required arguments with their first samples; on top of that each
    sample of each parameter alone, each pair of optional parameters, and all of them at once."""
    params = [
        p
        for p in inspect.signature(func).parameters.values()
        if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    choices: dict[str, list] = {}
    base: dict[str, Any] = {}
    for p in params:
        values = samples_for(p, s)
        if not values:
            if p.default is p.empty:
                pytest.fail(
                    f"no samples for parameter {p.name!r} ({p.annotation}) of {name}: add some to "
                    "SAMPLES (by name) or TYPE_SAMPLES (by type) in tests/test_query_plans.py"
                )
            continue
        choices[p.name] = values
        if p.default is p.empty:
            base[p.name] = values[0]
    calls = [base]
    calls += [{**base, k: v} for k, values in choices.items() for v in values]
    optional = [k for k in choices if k not in base]
    calls += [
        {**base, a: choices[a][0], b: choices[b][0]} for a, b in itertools.combinations(optional, 2)
    ]
    calls.append({**base, **{k: choices[k][0] for k in optional}})
    unique: list[dict[str, Any]] = []
    for call in calls:
        if call not in unique:
            unique.append(call)
    return unique


def instances(cls: type, s: Samples) -> list:
    try:
        return _instances(cls.__name__)(s)
    except KeyError:
        pytest.fail(f"no instances of {cls.__name__}: add a maker to _instances")


# ---------------------------------------------------------------------- the small store
@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The console's test store, plus an e-mail channel, a quarantined item and operator actions."""
    import console_data

    from mrt_engine import operations, silences
    from mrt_engine.quarantine import Quarantined, upsert
    from mrt_engine.store.models import Alert, SourceState
    from mrt_engine.timeutil import to_store

    folder = tmp_path_factory.mktemp("plans")
    config = console_data.build(folder, with_incidents=True)
    from mrt_engine.config import load_config

    store = open_store(load_config(config).db_path)
    try:
        clock = _clock()
        for alert in Alert.select():
            operations.resend_event(
                store, alert.event_id, "email", channels=["welink", "email"], actor="t", clock=clock
            )
        with store.write():
            SourceState.create(
                source_key="modelscope:Qwen:models",
                platform="modelscope",
                cursor={"models": {"Qwen/Qwen3-8B": {"rev": "abc", "modified": "2026-11-20"}}},
                baseline_done=True,
                updated_at=clock(),
            )
            silences.add_silence(
                store,
                ["org=nobody"],
                author="a",
                comment="c",
                duration="1h",
                actor="t",
                clock=clock,
            )
            upsert(
                store.db.cursor(),
                "github:vllm-project/vllm:issues",
                [Quarantined("123", "bad item", "{...}", "https://github.com/x/y/issues/123")],
                to_store(clock()),
            )
    finally:
        store.close()
    return load_config(config).db_path


@pytest.fixture
def samples(template: Path, tmp_path: Path) -> Iterator[Samples]:
    path = tmp_path / "store" / template.name
    path.parent.mkdir()
    shutil.copy(template, path)
    store = open_store(path)
    from mrt_engine.store.models import Alert, Delivery, Event, Quarantine

    try:
        alert = Alert.select().order_by(Alert.id).first()
        event = Event.get_by_id(alert.event_id)
        quarantined = Quarantine.select().first()
        yield Samples(
            store=store,
            event_id=event.id,
            delivery_ids=[d.id for d in Delivery.select(Delivery.id).order_by(Delivery.id)],
            fingerprint=event.fingerprint,
            url=event.url,
            source_key=event.source_key,
            quarantine_id=quarantined.id,
            item_key=quarantined.item_key,
        )
    finally:
        store.close()


def _call_marks(item_id: str) -> list:
    reason = KNOWN_SCANS.get(item_id)
    return [pytest.mark.xfail(reason=reason, raises=FullScan, strict=True)] if reason else []


@pytest.mark.parametrize(
    "name, owner, attr, member",
    [pytest.param(*c, id=c[0], marks=_call_marks(c[0])) for c in CALLABLES],
)
def test_each_public_query_reads_big_tables_through_an_index(samples, name, owner, attr, member):
    targets: list[tuple[Callable, Callable]] = []  # (what to call, what to read the signature of)
    if owner is None:
        targets.append((member, member))
    elif isinstance(member, classmethod | staticmethod):
        targets.append((getattr(owner, attr), member.__func__))
    else:
        for obj in instances(owner, samples):
            if isinstance(member, property):
                targets.append((lambda obj=obj: getattr(obj, attr), lambda: None))
            else:
                targets.append((getattr(obj, attr), member))
    recorder = Recorder(samples.store)
    ran = 0
    errors: list[str] = []
    for call, signature_of in targets:
        for kwargs in argument_sets(name, signature_of, samples):
            inspect.signature(call).bind(**kwargs)  # a wrong sample is this test's mistake
            with recorder:
                try:
                    result = call(**kwargs)
                    if inspect.isgenerator(result):
                        list(result)
                    ran += 1
                except (sqlite3.Error, peewee.PeeweeException):
                    raise  # a statement SQLite refused
                except Exception as exc:  # the function's own refusal (unknown id, bad pattern)
                    errors.append(f"{kwargs}: {type(exc).__name__}: {exc}")
    assert ran, f"{name} failed on every sample: {errors}"
    conn = plan_connection(samples.store.path)
    try:
        found = checked(conn, recorder.statements)
    finally:
        conn.close()
    if found:
        raise FullScan(f"{name} reads a big table whole:\n" + "\n".join(found))


def test_a_prometheus_scrape_reads_big_tables_through_an_index(samples):
    """The exporter's collector (mrt_engine/prometheus.py): its first scrape, where its
    counting starts, and a scrape with every row of the followed tables to count."""
    from mrt_engine.prometheus import StoreCollector

    recorder = Recorder(samples.store)
    collector = StoreCollector(lambda: samples.store)
    with recorder:
        collector.follow(samples.store)
        collector._polls.last = 0
        collector._attempts.last = 0
        collector._attempts.waiting[samples.delivery_ids[0]] = 0.0
        collector.follow(samples.store)
        collector.gauges(samples.store)
    conn = plan_connection(samples.store.path)
    try:
        found = checked(conn, recorder.statements)
    finally:
        conn.close()
    assert len(recorder.statements) >= 6
    assert not found, "\n".join(found)


def test_every_table_is_big_or_small(samples):
    conn = sqlite3.connect(samples.store.path)
    try:
        virtual = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL%'"
            )
        ]
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
            if name not in virtual and not any(name.startswith(f"{v}_") for v in virtual)
        }
    finally:
        conn.close()
    assert tables - BIG_TABLES - SMALL_TABLES == set(), "add each to BIG_TABLES or SMALL_TABLES"


# ---------------------------------------------------------------------- the engine's own work
def test_a_poll_and_a_delivery_read_no_big_table_whole(gh_tracker, github, welink):
    from datetime import UTC, datetime

    from mrt_engine.delivery.worker import send_claim

    repo = "vllm-project/vllm"
    github.add_issue(repo, "seed", at=datetime(2026, 11, 20, 8, 0, tzinfo=UTC))
    engine = gh_tracker().engine()
    engine.open()
    try:
        assert engine.store is not None and engine.outbox is not None
        with Recorder(engine.store) as recorder:
            engine.outbox.recover()
            for source in engine.sources:  # the baseline
                engine.poll_source(source, force=True)
            github.add_issue(repo, "DeepSeek-V4 support")
            for source in engine.sources:
                engine.poll_source(source, force=True)
            claimed = 0
            for channel in engine.channels:
                if engine.outbox.next_due(channel) is not None:
                    for claim in engine.outbox.claim(channel, worker="plans-1"):
                        send_claim(engine.outbox, engine.channels, claim)
                        claimed += 1
            engine.outbox.release()
        assert claimed == 1 and len(welink.messages) == 1
        conn = plan_connection(engine.store.path)
        try:
            found = checked(conn, recorder.statements)
        finally:
            conn.close()
    finally:
        engine.close()
    assert not found, "the engine reads a big table whole:\n" + "\n".join(found)


# ---------------------------------------------------------------------- the checker itself
@pytest.mark.parametrize(
    "sql, bad",
    [
        ("SELECT * FROM event ORDER BY id DESC LIMIT 200", False),
        (
            'SELECT "t1"."id" FROM "event" AS "t1" WHERE ("t1"."id" < 5) ORDER BY "t1"."id" DESC LIMIT 9',
            False,
        ),
        ("SELECT * FROM event WHERE title LIKE '%x%' ORDER BY id DESC LIMIT 200", True),
        ("SELECT * FROM event WHERE id < 9 AND instr(title, 'x') ORDER BY id DESC LIMIT 2", True),
        ("SELECT COUNT(*) FROM event", True),
        ("SELECT * FROM event WHERE fingerprint LIKE 'ab%'", True),
        ("SELECT * FROM event WHERE fingerprint >= 'ab' AND fingerprint < 'ac'", False),
        ("SELECT * FROM delivery d WHERE d.status = 'dead' ORDER BY d.id DESC LIMIT 5", True),
        ("SELECT * FROM source_state", False),
        ("SELECT * FROM audit ORDER BY at DESC LIMIT 5", False),
    ],
)
def test_the_checker_tells_a_scan_from_an_index_read(sql, bad):
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        "CREATE TABLE event (id INTEGER PRIMARY KEY, fingerprint TEXT UNIQUE, title TEXT);"
        "CREATE TABLE delivery (id INTEGER PRIMARY KEY, status TEXT, next_attempt_at TEXT);"
        "CREATE INDEX delivery_due ON delivery (status, next_attempt_at);"
        "CREATE TABLE source_state (source_key TEXT PRIMARY KEY);"
        "CREATE TABLE audit (id INTEGER PRIMARY KEY, at TEXT);"
    )
    assert bool(plan_problems(conn, sql)) == bad, list(conn.execute("EXPLAIN QUERY PLAN " + sql))
