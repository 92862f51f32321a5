"""What a snapshot-keeping source knows now, and what changed since a time (modelscope-watcher.md).

Model lists, package versions, image tags and service versions keep their current set in the
source's cursor; :func:`snapshot` lists it, :func:`changes` groups the events since a time into
added / updated / removed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mrt_engine.store.models import Event, SourceState
from mrt_engine.text import clean

ADDED = {
    "model_added",
    "version_released",
    "image_tag_pushed",
    "release_published",
    "tag_created",
    "feed_entry",
    "advisory_published",
    "service_version_published",
}
UPDATED = {"model_updated", "service_version_stable", "service_checksum_changed"}
REMOVED = {"model_removed"}


class SnapshotError(Exception):
    """The source is unknown or keeps no snapshot."""


def snapshot(source_key: str) -> list[dict[str, Any]]:
    """The source's current items, one dict per row (same keys in every row)."""
    row = SourceState.get_or_none(SourceState.source_key == source_key)
    if row is None:
        raise SnapshotError(f"there is no source {source_key!r} in this store")
    cursor = row.cursor or {}
    if isinstance(cursor.get("models"), dict):
        return [
            {
                "id": clean(model_id),
                "revision": clean(str(v.get("rev") or "")),
                "last_modified": v.get("modified") or "",
                "created": v.get("created") or "",
            }
            for model_id, v in sorted(cursor["models"].items())
        ]
    if isinstance(cursor.get("items"), dict):
        return [
            {"key": clean(k), "event_id": "" if v is None else clean(str(v))}
            for k, v in cursor["items"].items()
        ]
    if isinstance(cursor.get("versions"), dict):
        return [
            {
                "service_version": clean(k),
                "stable": bool(v.get("stable")),
                "sha256": clean(str(v.get("sha256") or "")),
            }
            for k, v in sorted(cursor["versions"].items())
        ]
    raise SnapshotError(
        f"{source_key} keeps no snapshot (its cursor is a time); see `mrt-engine trace` instead"
    )


def changes(source_key: str, since: datetime) -> dict[str, list[dict[str, Any]]]:
    """Events of the source observed since ``since`` (baseline excluded), by kind of change."""
    out: dict[str, list[dict[str, Any]]] = {"added": [], "updated": [], "removed": []}
    query = (
        Event.select()
        .where(
            (Event.source_key == source_key)
            & (Event.observed_at >= since)
            & (Event.baseline == False)  # noqa: E712 (SQL, not Python)
        )
        .order_by(Event.id)
    )
    for event in query:
        kind = (
            "added"
            if event.event_type in ADDED
            else "updated"
            if event.event_type in UPDATED
            else "removed"
            if event.event_type in REMOVED
            else None
        )
        if kind:
            out[kind].append(
                {
                    "resource": clean(event.resource_id),
                    "event_type": event.event_type,
                    "event_id": clean(event.event_id),
                    "title": clean(event.title),
                    "observed_at": event.observed_at,
                    "url": clean(event.url),
                }
            )
    return out
