"""The platform's key fields of an event, for every message: what a reader needs to judge it
without opening the link (a PR merged or only closed, a model's pipeline, a release's tag and
whether it is a pre-release, an advisory's severity).

They are read from what the store keeps of an event: its columns and its raw JSON (what each
source puts there: see ``raw=`` in mrt_engine/sources/). An event stored before a fact was kept
simply shows fewer fields. Values are upstream text (cleaned when rendered) or booleans (``yes`` /
``no`` in the message's locale); keys name a word of mrt_engine/notify/locales.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mrt_engine.notify.message import FieldValue

Fields = tuple[tuple[str, FieldValue], ...]
MAX_LIST = 12  # a list value (labels, tags, aliases) shows at most this many items


@dataclass(frozen=True)
class StoredEvent:
    """The stored event, as much of it as the key fields are made of."""

    source: str
    source_key: str
    resource_type: str
    resource_id: str
    event_type: str
    event_id: str
    author: str
    labels: tuple[str, ...]
    raw: dict[str, Any]


def key_fields(event: StoredEvent) -> Fields:
    """The key fields of ``event``, in the order a reader wants them."""
    build = _BY_SOURCE.get(event.source, _generic)
    return tuple((k, v) for k, v in build(event) if v not in ("", None))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _items(values: Iterable[Any]) -> str:
    shown = [v for v in values if isinstance(v, str) and v]
    more = len(shown) - MAX_LIST
    text = ", ".join(shown[:MAX_LIST])
    return f"{text}, +{more}" if more > 0 else text


def _generic(e: StoredEvent) -> list[tuple[str, Any]]:
    return [("author", e.author), ("labels", _items(e.labels))]


def _github(e: StoredEvent) -> list[tuple[str, Any]]:
    raw = e.raw
    if e.resource_type == "repo_release":
        # The tag is the event's id; pre-release and draft flags as the release says them.
        return [
            ("tag", e.event_id),
            ("prerelease", _flag(raw.get("prerelease"))),
            ("draft", True if raw.get("draft") is True else None),
            ("author", e.author),
        ]
    if e.resource_type == "repo_tag":
        return [("tag", e.event_id), ("commit", _text(raw.get("sha"))[:12])]
    out: list[tuple[str, Any]] = [("author", e.author), ("labels", _items(e.labels))]
    if e.resource_type == "repo_pr":
        if raw.get("draft") is True:
            out.append(("draft", True))
        if e.event_type in ("pr_merged", "pr_closed"):
            out.append(("merged", e.event_type == "pr_merged"))
    reason = _text(raw.get("state_reason"))
    if e.event_type == "issue_closed" and reason:
        out.append(("reason", reason.replace("_", " ")))
    return out


def _huggingface(e: StoredEvent) -> list[tuple[str, Any]]:
    raw = e.raw
    return [
        ("pipeline_tag", _text(raw.get("pipeline_tag"))),
        ("library_name", _text(raw.get("library_name"))),
        ("gated", True if raw.get("gated") not in (None, False, "") else None),
        ("private", True if raw.get("private") is True else None),
        ("tags", _items(e.labels)),
    ]


def _modelscope(e: StoredEvent) -> list[tuple[str, Any]]:
    tasks = _text(e.raw.get("tasks"))
    named = {t.strip() for t in tasks.split(",")}
    return [("tasks", tasks), ("tags", _items(t for t in e.labels if t not in named))]


def _modelhub(e: StoredEvent) -> list[tuple[str, Any]]:
    raw = e.raw
    return [
        ("version", _text(raw.get("version"))),
        ("stable", _flag(raw.get("stable"))),
        ("sha256", _text(raw.get("sha256"))[:16]),
        ("models", _text(raw.get("models"))),
    ]


def _pypi(e: StoredEvent) -> list[tuple[str, Any]]:
    raw = e.raw
    files = raw.get("files")
    return [
        ("version", e.event_id),
        ("prerelease", _flag(raw.get("prerelease"))),
        ("yanked", _flag(raw.get("yanked"))),
        ("files", str(files) if isinstance(files, int) and not isinstance(files, bool) else ""),
    ]


def _docker(e: StoredEvent) -> list[tuple[str, Any]]:
    raw = e.raw
    digest = _text(raw.get("digest"))
    # sha256:0123456789ab: as `docker images --digests` is read; a multi-arch list shows its first.
    short = digest.split(",")[0][:19]
    return [("tag", _text(raw.get("tag"))), ("digest", short), ("platforms", _items(e.labels))]


def _osv(e: StoredEvent) -> list[tuple[str, Any]]:
    raw = e.raw
    return [
        ("severity", _text(raw.get("severity"))),
        ("cvss", _text(raw.get("cvss"))),
        # The affected package is the source's: osv:<ecosystem>:<name>.
        (
            "package",
            f"{e.resource_id} ({e.source_key.split(':')[1]})"
            if e.source_key.count(":") >= 2
            else e.resource_id,
        ),
        ("aliases", _items(raw.get("aliases") or ())),
    ]


def _feeds(e: StoredEvent) -> list[tuple[str, Any]]:
    return [("feed", _text(e.raw.get("feed"))), *_generic(e)]


def _health(e: StoredEvent) -> list[tuple[str, Any]]:
    return []


_BY_SOURCE: dict[str, Callable[[StoredEvent], list[tuple[str, Any]]]] = {
    "github": _github,
    "huggingface": _huggingface,
    "modelscope": _modelscope,
    "modelhub": _modelhub,
    "pypi": _pypi,
    "docker": _docker,
    "osv": _osv,
    "feeds": _feeds,
    "mrt": _health,
}
