"""What a message says about its event's incident, and the thread it belongs to.

"3rd source for DeepSeek-V3.2: first seen on HuggingFace (deepseek-ai) 2 h ago": the place an
event took in its incident's timeline when it was linked (mrt_engine/incidents.py), so a retry or
a resend says the same. The first event of an incident says nothing (nothing is known yet to
follow it); it opens the thread that channels with threads put the later ones into.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mrt_engine.notify.locales import words
from mrt_engine.text import clean_line

# How a platform is named in a message (its config section name otherwise).
PLATFORM_NAMES = {
    "huggingface": "HuggingFace",
    "modelscope": "ModelScope",
    "github": "GitHub",
    "pypi": "PyPI",
    "docker": "Docker Hub",
    "dockerhub": "Docker Hub",
    "osv": "OSV",
    "modelhub": "Model Hub",
    "feed": "Feed",
    "feeds": "Feed",
}


@dataclass(frozen=True)
class IncidentNote:
    """One event's place in its incident (what :func:`incident_line` says, and its thread)."""

    incident_id: int
    name: str  # the family as shown: "DeepSeek-V3.2"
    position: int  # among the incident's events: 1 for the first
    source_position: int  # among its sources, counting this event's
    new_source: bool  # this event brought a source the incident had not seen
    first_source: str  # the source key of the first event
    first_seen_at: datetime
    seen_at: datetime  # when this event was linked
    thread_token: str  # the first event's fingerprint, cut: makes the thread id unique
    # The incident's thread on the channel of the message (the platform's id of the message
    # that started it: Slack's ``ts``), when one was recorded (store table incident_thread).
    thread: str | None = None

    @property
    def first(self) -> bool:
        return self.position == 1


# A repository's sources are one per kind (its issues, its PRs, …): an incident counts each, so
# its name says which (``GitHub (vllm-project/vllm PRs)``). Other platforms have one a resource.
KIND_NAMES = {"issues": "issues", "pulls": "PRs", "releases": "releases", "tags": "tags"}


def source_name(source_key: str) -> str:
    """``HuggingFace (deepseek-ai)`` for ``huggingface:deepseek-ai:models``, ``GitHub
    (vllm-project/vllm PRs)`` for ``github:vllm-project/vllm:pulls``."""
    platform, _, rest = source_key.partition(":")
    what, _, kind = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if platform == "github" and kind in KIND_NAMES:
        what = f"{what} {KIND_NAMES[kind]}"
    name = PLATFORM_NAMES.get(platform, platform)
    return clean_line(f"{name} ({what})" if what else name)


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``11th``, ``22nd``."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def ago(seconds: float, locale: str = "en") -> str:
    """``2 h ago`` / ``2 小时前``: minutes under an hour, hours under two days, then days."""
    said = words(locale).incident
    minutes = int(max(seconds, 0) // 60)
    if minutes < 1:
        return said["now"]
    if minutes < 60:
        return said["minutes"].format(n=minutes)
    if minutes < 48 * 60:
        return said["hours"].format(n=minutes // 60)
    return said["days"].format(n=minutes // (24 * 60))


def incident_line(note: IncidentNote | None, locale: str = "en") -> str:
    """The message's line about its incident; empty for an incident's first event."""
    if note is None or note.first:
        return ""
    said = words(locale).incident
    text = said["new_source" if note.new_source else "same_source"]
    return text.format(
        nth=ordinal(note.source_position if note.new_source else note.position),
        n=note.source_position if note.new_source else note.position,
        name=clean_line(note.name),
        sources=note.source_position,
        first=source_name(note.first_source),
        ago=ago((note.seen_at - note.first_seen_at).total_seconds(), locale),
    )


def thread_id(note: IncidentNote, domain: str) -> str:
    """The Message-ID of the incident's first e-mail, which later ones reply to (RFC 5322
    §3.6.4): stable for the incident, unique across stores by its first event's fingerprint."""
    return f"<mrt.incident.{note.incident_id}.{note.thread_token}@{domain}>"
