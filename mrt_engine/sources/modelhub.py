"""The internal Model Hub's service packages (model-hub-service-packages.md).

Each poll reads ``GET /api/services`` and, for the sha256 of every version,
``GET /api/services/{id}`` (conditional, so unchanged services cost a ``304``). Compared with the
cursor (per ``service@version``: stable flag and sha256) it reports:

* ``service_version_published``: a version not seen before;
* ``service_version_stable``: a version's ``stable`` flag turned true;
* ``service_checksum_changed``: the sha256 of a published version changed. Published packages
  must never change, so this is a supply-chain alarm: judged by a protected rule at the highest
  priority, never suppressed (mrt_engine/health.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from pydantic import Field

from mrt_engine.config import Duration, HostPolicy, StrictModel
from mrt_engine.events import TrackerEvent
from mrt_engine.health import CHECKSUM_CHANGED
from mrt_engine.http import PollSession, Validators
from mrt_engine.quarantine import Quarantine, keyed_by
from mrt_engine.secrets import Secret
from mrt_engine.sources.base import (
    BuildContext,
    PollResult,
    Source,
    SourceKind,
    SourceState,
    appeared_at,
    expect,
)
from mrt_engine.sources.validators import ApiBase
from mrt_engine.text import body_text, clean_line, storable
from mrt_engine.timeutil import parse_upstream

PUBLISHED = "service_version_published"
STABLE = "service_version_stable"
# The cursor's entry (``service@``) of a service the baseline listed but could not read.
UNREAD = {"unread": True}


class ModelHubSettings(StrictModel):
    """``sources.modelhub``."""

    api_base: ApiBase
    token_env: str | None = None
    poll_interval_seconds: Duration | None = Field(None, ge=1)


class ModelHubServices(Source):
    platform = "modelhub"

    def __init__(self, api_base: str, token: Secret | None, interval: float) -> None:
        super().__init__("modelhub:services", api_base, interval)
        self.token = token

    def poll(self, state: SourceState, http: PollSession, now: datetime) -> PollResult:
        cursor = state.cursor or {}
        known: dict[str, dict[str, Any]] | None = (
            cursor.get("versions") if state.baseline_done else None
        )
        etags: dict[str, str] = dict(cursor.get("etags") or {}) if known is not None else {}
        url = f"{self.api_base}/api/services"
        listing = http.get(url, headers=self.headers(url)).json()
        expect(
            isinstance(listing, list),
            f"expected a JSON list of services, got {type(listing).__name__}",
        )
        current: dict[str, dict[str, Any]] = {}
        events: list[TrackerEvent] = []
        quarantine = Quarantine()
        for service_id, etag, versions, found in quarantine.each(
            listing,
            lambda service: self._service(http, service, known, etags, now, state),
            key=keyed_by("service_id"),
            what="service",
        ):
            if etag:
                etags[service_id] = etag
            current.update(versions)
            events.extend(found)
        for held in quarantine.items:  # a service set aside keeps what was known of it
            current.update(_versions_of(known, held.item_key))
            if known is None and held.identified:  # the baseline listed it, unreadable
                current[storable(f"{held.item_key}@")] = dict(UNREAD)
        new_cursor = {"versions": current, "etags": etags}
        return PollResult(
            events,
            new_cursor,
            Validators(),
            url,
            baseline=known is None,
            quarantined=quarantine.items,
        )

    def _service(
        self,
        http: PollSession,
        service: Any,
        known: dict[str, dict[str, Any]] | None,
        etags: dict[str, str],
        now: datetime,
        state: SourceState,
    ) -> tuple[str, str | None, dict[str, dict[str, Any]], list[TrackerEvent]]:
        """One listed service: its id, detail ETag, versions for the cursor and events."""
        expect(isinstance(service, dict), "expected each service to be an object")
        service_id = service.get("service_id")
        expect(isinstance(service_id, str) and service_id != "", "service without a 'service_id'")
        detail, etag = self._detail(http, service_id, etags.get(service_id))
        if detail is None:  # 304: unchanged since the last poll
            return service_id, etag, _versions_of(known, service_id), []
        name = clean_line(detail.get("service_name") or service.get("service_name") or service_id)
        about = body_text(detail.get("description") or service.get("description") or "")
        versions = detail.get("versions")
        expect(isinstance(versions, list), f"service {service_id!r} without a 'versions' list")
        current: dict[str, dict[str, Any]] = {}
        events: list[TrackerEvent] = []
        unread = bool(((known or {}).get(storable(f"{service_id}@")) or {}).get("unread"))
        for version in versions:
            expect(
                isinstance(version, dict) and isinstance(version.get("version"), str),
                f"service {service_id!r} has a version without a 'version'",
            )
            # As the cursor stores them, so odd text compares equal to itself next time.
            key = storable(f"{service_id}@{version['version']}")
            sha = storable(version["sha256"]) if isinstance(version.get("sha256"), str) else ""
            stable = version.get("stable") is True
            current[key] = {"stable": stable, "sha256": sha}
            before = None if known is None else known.get(key)
            changes = self._changes(
                service_id, name, version, before, sha, stable, now, known is None, about
            )
            # New to a list the baseline saw whole: appeared since. A version of a service
            # the baseline listed but could not read is as old as it says.
            if known is not None and not unread:
                for change in changes:
                    change.occurred_at = appeared_at(change.occurred_at, state, now)
            events.extend(changes)
        return service_id, etag, current, events

    def _detail(
        self, http: PollSession, service_id: str, etag: str | None
    ) -> tuple[dict | None, str | None]:
        url = f"{self.api_base}/api/services/{quote(service_id, safe='')}"
        answer = http.get(
            url, headers=self.headers(url), validators=Validators(etag, None) if etag else None
        )
        if answer.not_modified:
            return None, etag
        data = answer.json()
        expect(isinstance(data, dict), f"expected a JSON object for service {service_id!r}")
        return data, answer.headers.get("etag")

    def _changes(
        self, service_id, name, version, before, sha, stable, now, baseline, about=""
    ) -> list[TrackerEvent]:
        """The events of one version; ``about`` (the service's description) joins what rules
        read as the summary."""
        number = version["version"]
        url = f"{self.api_base}/api/services/{quote(service_id, safe='')}"
        models = ", ".join(
            str(m.get("model_id")) for m in version.get("models") or [] if isinstance(m, dict)
        )
        facts = {
            "service_id": service_id,
            "version": number,
            "sha256": sha,
            "stable": stable,
            "models": models,
        }

        def event(
            kind: str, event_id: str, title: str, summary: str, at: datetime | None
        ) -> TrackerEvent:
            return TrackerEvent(
                source=self.platform,
                source_key=self.key,
                resource_type="service",
                resource_id=service_id,
                event_type=kind,
                event_id=event_id,
                title=title,
                summary=summary,
                url=url,
                labels=("stable",) if stable else (),
                occurred_at=at,
                observed_at=now,
                raw=facts,
                body=" · ".join(p for p in (summary, about) if p) if about else "",
            )

        if before is None:
            flag = " (stable)" if stable else ""
            return [
                event(
                    PUBLISHED,
                    f"{service_id}@{number}",
                    f"{name} {number} published on the Model Hub{flag}",
                    f"models: {models or '-'} · sha256 {sha[:16] or '-'}",
                    parse_upstream(version.get("created_at")),
                )
            ]
        # The upstream does not say when a flag flipped or a checksum changed: at this poll.
        out = []
        if stable and not before.get("stable"):
            out.append(
                event(
                    STABLE,
                    f"{service_id}@{number}:stable",
                    f"{name} {number} is now stable",
                    "",
                    now,
                )
            )
        old = before.get("sha256") or ""
        if old and sha and old != sha:
            out.append(
                event(
                    CHECKSUM_CHANGED,
                    f"{service_id}@{number}:{sha}",
                    f"SUPPLY-CHAIN ALARM: {name} {number} changed its sha256",
                    f"was {old}, now {sha}; a published package must never change",
                    now,
                )
            )
        return out


def _versions_of(known: dict[str, dict[str, Any]] | None, service_id: str) -> dict[str, Any]:
    """The cursor's entries of one service (``service@version``)."""
    prefix = storable(f"{service_id}@")
    return {k: v for k, v in (known or {}).items() if k.startswith(prefix)}


def build(settings: ModelHubSettings, ctx: BuildContext) -> list[Source]:
    token = ctx.secrets.get(
        settings.token_env,
        where="sources.modelhub.token_env",
        what="Model Hub API token",
        required=False,
    )
    interval = settings.poll_interval_seconds or ctx.default_interval
    return [ModelHubServices(settings.api_base.rstrip("/"), token, interval)]


KIND = SourceKind(
    name="modelhub",
    settings=ModelHubSettings,
    build=build,
    host_defaults=HostPolicy(max_concurrency=4, min_interval_seconds=0.0, timeout_seconds=15),
)
