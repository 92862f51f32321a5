"""Incidents: one model family's alerted events within a window, across sources.

A model appears on HuggingFace, then on ModelScope, then in a vLLM pull request, then in a
release note: four alerts, one incident. Each alerted event of a poll whose title, id or body
names a model family (:mod:`mrt_engine.model_names`) joins the family's open incident (the one
first seen within ``incidents.window_days``), or opens one. Its place in the timeline (its
number among the incident's events and sources) is stored with it, so every message about it
says the same thing however often it is sent.

Assigned in the poll's transaction (:func:`assign`, called by the pipeline after its alerts are
written), and in ``replay``'s for the alerts it makes (:func:`link`): an incident is committed
with its alerts or not at all. Events that alert nothing cost
nothing here, and protected events (source health, checksum alarms) are no model's.

On a store shared by several engines (PostgreSQL), linking takes a transaction-scoped advisory
lock on the family first: two engines that see a new family in the same instant open one
incident, and number its events without a repeat (the second waits for the first's commit,
a few milliseconds; other families are not held up).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from mrt_engine import incident_clusters
from mrt_engine.health import PROTECTED_TYPES
from mrt_engine.incident_clusters import ClusterSettings
from mrt_engine.model_names import ModelName, model_family
from mrt_engine.notify.incident_line import IncidentNote
from mrt_engine.store.db import Store
from mrt_engine.timeutil import from_store, to_store

if TYPE_CHECKING:
    from mrt_engine.batch import PreparedBatch

log = logging.getLogger(__name__)

DEFAULT_WINDOW = timedelta(days=14)
# The first key of the families' advisory locks on PostgreSQL ('in'); the second is the
# family's hashtext. (Two-key locks do not overlap the one-key migration lock.)
LOCK_SPACE = 0x696E

# A prepared event row (mrt_engine.batch.PreparedEvent.event_row): the columns read here.
_SOURCE_KEY, _RESOURCE_ID, _EVENT_TYPE, _TITLE, _SUMMARY, _BODY = 2, 4, 5, 7, 8, 16


@dataclass(frozen=True)
class Placed:
    """Where one event went: its incident and its place in the timeline."""

    event_id: int
    incident_id: int
    position: int
    source_position: int
    new_source: bool


def family_of(title: str | None, resource_id: str | None, *bodies: str | None) -> ModelName | None:
    """The model family an event is about: its title's, else its id's, else its body's."""
    return model_family(title, resource_id, *bodies)


def replay_settings(config) -> dict[str, Any]:
    """``replay``'s incident arguments from ``config`` (a :class:`~mrt_engine.config.Config`, or
    ``None``: the defaults): its window, and its clusters judged the lexical way (a replay asks
    no AI)."""
    if config is None:
        return {}
    return {
        "incident_window": timedelta(days=config.incidents.window_days),
        "clusters": incident_clusters.cluster_settings(config),
    }


def embed_titles(
    batch: PreparedBatch, clusters: ClusterSettings | None, *, urgent: bool = False
) -> None:
    """Before the poll's transaction opens: have the endpoint embed the titles of ``batch``'s
    alerts that may join a cluster (AI3 by embeddings, ``clusters.embeddings``), so that
    :func:`assign` only reads them from the store's cache. Nothing is asked when the poll
    commits a protected alert (``urgent``, or one in the batch) or a critical rule's hit: those
    never wait for the AI (their poll's alerts are compared the lexical way)."""
    if clusters is None or not clusters.on or clusters.embeddings is None or urgent:
        return
    titles = []
    for item in batch.events:
        row = item.event_row
        if item.alert_row is None:
            continue
        if row[_EVENT_TYPE] in PROTECTED_TYPES or clusters.critical.intersection(item.notify_rules):
            return
        if item.group_key is None:  # never grouped: never clustered
            continue
        if name_of(row[_EVENT_TYPE], row[_TITLE], row[_RESOURCE_ID], row[_SUMMARY], row[_BODY]):
            titles.append(row[_TITLE])
    if not titles:
        return
    try:
        clusters.embeddings.ask(titles)
    except Exception:  # the lexical way answers: a cluster is never worth a poll
        log.warning("incident clusters: titles not embedded, compared the lexical way")
        log.debug("embedding titles failed", exc_info=True)


def assign(
    store: Store,
    batch: PreparedBatch,
    window: timedelta = DEFAULT_WINDOW,
    clusters: ClusterSettings | None = None,
) -> list[Placed]:
    """Link the alerted events of ``batch`` (a written :class:`~mrt_engine.batch.PreparedBatch`)
    to their families' incidents, and put the alike ones into clusters (``clusters``:
    :mod:`mrt_engine.incident_clusters`). Must run inside :meth:`Store.write`, after the batch."""
    named: dict[str, ModelName] = {}
    for item in batch.events:
        if item.alert_row is None:
            continue
        row = item.event_row
        name = name_of(row[_EVENT_TYPE], row[_TITLE], row[_RESOURCE_ID], row[_SUMMARY], row[_BODY])
        if name is not None:
            named[item.fingerprint] = name
    if not named:
        return []
    now = from_store(batch.now_s)
    assert now is not None
    alerted = [
        (event_id, alert_id, source_key, named[fingerprint])
        for fingerprint, event_id, alert_id, source_key in _alerted(store.db.cursor(), list(named))
    ]
    return link(store, alerted, now, window, clusters)


def name_of(
    event_type: str,
    title: str | None,
    resource_id: str | None,
    summary: str | None,
    body: str | None,
) -> ModelName | None:
    """The family an alerted event joins, or ``None``: a protected event is no model's, and a
    name that cannot be read is logged (it must never cost the poll its alerts)."""
    if event_type in PROTECTED_TYPES:
        return None
    try:
        return family_of(title, resource_id, summary, body)
    except Exception:
        log.warning("no incident for %r: its model name could not be read", (title or "")[:60])
        log.debug("model name failed", exc_info=True)
        return None


def link(
    store: Store,
    alerted: Sequence[tuple[int, int, str, ModelName]],
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
    clusters: ClusterSettings | None = None,
) -> list[Placed]:
    """Link ``alerted`` events ((event id, alert id, source key, family), their alerts written)
    to their families' incidents, in event id order, and put the alike ones into clusters. An
    event linked already stays where it is. Must run inside :meth:`Store.write`: the poll's
    (:func:`assign`) or ``replay``'s."""
    if not alerted:
        return []
    cursor = store.db.cursor()
    if store.is_postgresql:
        # One engine at a time per family (see the module's docstring). Every family of the
        # batch is locked first, in one order for all: two polls that name the same families in
        # different orders would otherwise each hold one lock and wait for the other's.
        for key in sorted({name.key for *_ids, name in alerted}):
            cursor.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (LOCK_SPACE, key))
    alerted = sorted(alerted, key=lambda a: a[0])
    linked = _linked(cursor, [event_id for event_id, *_rest in alerted])
    placed = _link(store, cursor, [a for a in alerted if a[0] not in linked], now, window)
    if clusters is not None:
        incident_clusters.cluster(cursor, placed, now, clusters)
    return placed


def _alerted(cursor, fingerprints: list[str]) -> list[tuple]:
    """(fingerprint, event id, alert id, source key) of these events, in id order."""
    rows: list[tuple] = []
    for i in range(0, len(fingerprints), 500):
        chunk = fingerprints[i : i + 500]
        cursor.execute(
            "SELECT e.fingerprint, e.id, a.id, e.source_key FROM event e"
            " JOIN alert a ON a.event_id = e.id"
            f" WHERE e.fingerprint IN ({','.join('?' * len(chunk))})",
            chunk,
        )
        rows.extend(cursor.fetchall())
    return sorted(rows, key=lambda r: r[1])


def _linked(cursor, event_ids: list[int]) -> set[int]:
    """Which of these events are in an incident already (an event alerts once)."""
    found: set[int] = set()
    for i in range(0, len(event_ids), 500):
        chunk = event_ids[i : i + 500]
        cursor.execute(
            f"SELECT event_id FROM incident_event WHERE event_id IN ({','.join('?' * len(chunk))})",
            chunk,
        )
        found.update(row[0] for row in cursor.fetchall())
    return found


@dataclass
class _Open:
    """A family's incident while a poll's events are linked to it."""

    id: int
    events: int
    sources: int
    seen: set[str]  # the sources known to be in it (of those this poll links)
    new: bool  # opened by this poll


def _link(
    store: Store,
    cursor,
    todo: list[tuple[int, int, str, ModelName]],
    now: datetime,
    window: timedelta,
) -> list[Placed]:
    """Put each (event id, alert id, source key, name) of ``todo``, in order, into its family's
    open incident (the one first seen within ``window``), or open one.

    The same timeline as linking one event after the other, read and written once a poll:
    each family's open incident is read once, and whether each of the poll's sources is in it
    already; the places are counted here, and the incidents and their events written after.
    """
    if not todo:
        return []
    now_s = to_store(now)
    since = to_store(now - window)
    families: dict[str, tuple[ModelName, dict[str, None]]] = {}  # and their sources, in order
    for _, _, source_key, name in todo:
        families.setdefault(name.key, (name, {}))[1][source_key] = None
    found: dict[str, _Open | None] = {}
    for key, (_, sources) in families.items():
        cursor.execute(
            "SELECT id, events, sources FROM incident WHERE family = ? AND first_seen_at >= ?"
            " ORDER BY first_seen_at DESC LIMIT 1",
            (key, since),
        )
        row = cursor.fetchone()
        if row is None:
            found[key] = None
            continue
        seen = set()
        for source_key in sources:  # one probe of the index each, however big the incident
            cursor.execute(
                "SELECT 1 FROM incident_event WHERE incident_id = ? AND source = ? LIMIT 1",
                (row[0], source_key),
            )
            if cursor.fetchone() is not None:
                seen.add(source_key)
        found[key] = _Open(row[0], row[1], row[2], seen, False)
    opened = [key for key, open_ in found.items() if open_ is None]
    new_ids = iter(store.new_ids(cursor, "incident", len(opened)))  # in the order first seen
    first: dict[int, tuple[int, str]] = {}  # an opened incident's first event and source
    placed: list[Placed] = []
    for event_id, _, source_key, name in todo:
        incident = found[name.key]
        if incident is None:
            incident = found[name.key] = _Open(next(new_ids), 0, 0, set(), True)
            first[incident.id] = (event_id, source_key)
        new_source = source_key not in incident.seen
        incident.seen.add(source_key)
        incident.events += 1
        incident.sources += new_source
        placed.append(Placed(event_id, incident.id, incident.events, incident.sources, new_source))
    # The incidents first (their events refer to them), each as it stands after this poll.
    opened_rows, updates = [], []
    for key, incident in found.items():
        assert incident is not None
        if incident.new:
            first_event, first_source = first[incident.id]
            opened_rows.append(
                (
                    incident.id,
                    key,
                    families[key][0].display,
                    first_event,
                    first_source,
                    now_s,
                    now_s,
                    incident.events,
                    incident.sources,
                )
            )
        else:
            updates.append((incident.events, incident.sources, now_s, incident.id))
    if opened_rows:
        cursor.executemany(
            "INSERT INTO incident (id, family, name, first_event_id, first_source,"
            " first_seen_at, last_seen_at, events, sources) VALUES (?,?,?,?,?,?,?,?,?)",
            opened_rows,
        )
    if updates:
        cursor.executemany(
            "UPDATE incident SET events = ?, sources = ?, last_seen_at = ? WHERE id = ?", updates
        )
    cursor.executemany(
        "INSERT INTO incident_event (event_id, incident_id, alert_id, source, seen_at, position,"
        " source_position, new_source) VALUES (?,?,?,?,?,?,?,?)",
        [
            (
                p.event_id,
                p.incident_id,
                alert_id,
                source_key,
                now_s,
                p.position,
                p.source_position,
                int(p.new_source),
            )
            for p, (_, alert_id, source_key, _) in zip(placed, todo, strict=True)
        ],
    )
    return placed


# An event's incident, as the columns :func:`note_of` reads, joined by the event's id ``ON``
# (``LEFT JOIN``: NULLs when the event is in no incident).
NOTE_COLUMNS = (
    "i.id, i.name, ie.position, ie.source_position, ie.new_source, i.first_source,"
    " i.first_seen_at, ie.seen_at, fe.fingerprint"
)
NOTE_JOINS = (
    " LEFT JOIN incident_event ie ON ie.event_id = {on}"
    " LEFT JOIN incident i ON i.id = ie.incident_id"
    " LEFT JOIN event fe ON fe.id = i.first_event_id"
)


def incident_note(cursor, event_id: int) -> IncidentNote | None:
    """What a message about event ``event_id`` says of its incident (one read by keys)."""
    cursor.execute(
        f"SELECT {NOTE_COLUMNS} FROM incident_event ie"
        " JOIN incident i ON i.id = ie.incident_id JOIN event fe ON fe.id = i.first_event_id"
        " WHERE ie.event_id = ?",
        (event_id,),
    )
    return note_of(cursor.fetchone())


def note_of(row) -> IncidentNote | None:
    """The :class:`IncidentNote` of :data:`NOTE_COLUMNS` (None: the event is in no incident)."""
    if row is None or row[0] is None:
        return None
    first_seen, seen = from_store(row[6]), from_store(row[7])
    assert first_seen is not None and seen is not None
    return IncidentNote(
        incident_id=row[0],
        name=row[1],
        position=row[2],
        source_position=row[3],
        new_source=bool(row[4]),
        first_source=row[5],
        first_seen_at=first_seen,
        seen_at=seen,
        thread_token=row[8][:16],
    )
