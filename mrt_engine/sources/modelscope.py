"""ModelScope: the models of an organisation.

The official OpenAPI, ``GET /openapi/v1/models?owner=ORG&sort=last_modified&page_number=N&
page_size=50``, answers ``{"success": true, "data": {"models": [...], "total_count": N}}`` with
``id``, ``last_modified``, ``created_at``, ``tasks``, ``tags`` and ``downloads`` per model. Where
that path answers 404 (older or private deployments), the legacy ``PUT /api/v1/models/`` with
``{"Path": ORG, "PageNumber": N, "PageSize": S}`` is used instead (envelope ``{"Code": 200,
"Success": true, "Data": {"Models": [...], "TotalCount": N}}``); the choice is remembered in the
cursor. ModelScope has no commit sha in the list, so the instant of ``last_modified`` is the
revision (the two APIs write it differently: see :func:`time_revision`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import Field

from mrt_engine.config import Duration, HostPolicy, StrictModel
from mrt_engine.http import PollSession, UpstreamError
from mrt_engine.quarantine import Quarantine
from mrt_engine.secrets import Secret, shorten
from mrt_engine.sources.base import BuildContext, Source, SourceKind, SourceState, expect
from mrt_engine.sources.model_list import Listing, ModelInfo, ModelListSource, time_revision
from mrt_engine.sources.validators import ApiBase, OrgName
from mrt_engine.timeutil import parse_upstream

DEFAULT_API = "https://modelscope.cn"
_EPOCH = re.compile(r"\d{1,15}(\.\d+)?")


class ModelScopeSettings(StrictModel):
    """``sources.modelscope``."""

    orgs: list[OrgName]
    token_env: str | None = None
    api_base: ApiBase | None = None  # default: $MODELSCOPE_ENDPOINT, else https://modelscope.cn
    poll_interval_seconds: Duration | None = Field(None, ge=1)
    page_size: int = Field(50, ge=1, le=100)
    max_pages: int = Field(100, ge=1, le=1000)
    sweep_interval_seconds: Duration = Field(3600.0, ge=1)


def parse_stamp(value: Any) -> datetime | None:
    """ModelScope times come as ISO strings or epoch seconds (or milliseconds)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 10**11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and _EPOCH.fullmatch(value.strip()):
        return parse_stamp(float(value))
    return parse_upstream(value)


def _names(values: Any) -> list[str]:
    out = []
    for v in values or []:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict) and isinstance(v.get("Name") or v.get("name"), str):
            out.append(v.get("Name") or v.get("name"))
    return out


class ModelScopeModels(ModelListSource):
    platform = "modelscope"

    def __init__(
        self,
        org: str,
        settings: ModelScopeSettings,
        api_base: str,
        token: Secret | None,
        interval: float,
    ) -> None:
        super().__init__(
            f"modelscope:{org}:models", api_base, interval, org, settings.sweep_interval_seconds
        )
        self.settings = settings
        self.token = token

    def web_url(self, model_id: str) -> str:
        return f"{self.api_base}/models/{model_id}"

    def parse_time(self, value: Any) -> datetime | None:
        return parse_stamp(value)

    def list_models(self, http: PollSession, state: SourceState, *, conditional: bool) -> Listing:
        api = (state.cursor or {}).get("api", "openapi")
        if api == "openapi":
            try:
                return self._openapi(http)
            except UpstreamError as exc:
                if exc.status != 404:
                    raise
        listing = self._legacy(http)
        listing.extra_cursor["api"] = "legacy"
        return listing

    def _openapi(self, http: PollSession) -> Listing:
        models: list[ModelInfo] = []
        quarantine = Quarantine()
        listed = 0  # models the upstream listed, quarantined ones too (for the page count)
        total = None
        page = 1
        while page <= self.settings.max_pages:
            query = urlencode(
                {
                    "owner": self.org,
                    "sort": "last_modified",
                    "page_number": page,
                    "page_size": self.settings.page_size,
                }
            )
            url = f"{self.api_base}/openapi/v1/models?{query}"
            data = http.get(url, headers=self.headers(url)).json()
            expect(isinstance(data, dict), "expected a JSON object from the ModelScope OpenAPI")
            if data.get("success") is not True:
                expect(
                    False,
                    f"ModelScope answered success={data.get('success')!r}: {shorten(data.get('message'), 160)}",
                )
            body = data.get("data")
            expect(
                isinstance(body, dict) and isinstance(body.get("models"), list),
                "ModelScope answer without data.models",
            )
            batch = body["models"]
            models.extend(self._models(batch, quarantine, legacy=False))
            listed += len(batch)
            total = body.get("total_count") if isinstance(body.get("total_count"), int) else total
            if (
                not batch
                or (total is not None and listed >= total)
                or len(batch) < self.settings.page_size
            ):
                return Listing(models, complete=True, quarantined=quarantine.items)
            page += 1
        return Listing(models, complete=False, quarantined=quarantine.items)

    def _legacy(self, http: PollSession) -> Listing:
        models: list[ModelInfo] = []
        quarantine = Quarantine()
        listed = 0
        page = 1
        url = f"{self.api_base}/api/v1/models/"
        while page <= self.settings.max_pages:
            body = {"Path": self.org, "PageNumber": page, "PageSize": self.settings.page_size}
            data = http.request("PUT", url, headers=self.headers(url), json_body=body).json()
            expect(isinstance(data, dict), "expected a JSON object from the ModelScope legacy API")
            if data.get("Success") is not True or data.get("Code") not in (200, "200"):
                expect(
                    False,
                    f"ModelScope answered Code={data.get('Code')!r}: {shorten(data.get('Message'), 160)}",
                )
            inner = data.get("Data")
            expect(
                isinstance(inner, dict) and isinstance(inner.get("Models"), list),
                "ModelScope answer without Data.Models",
            )
            batch = inner["Models"]
            models.extend(self._models(batch, quarantine, legacy=True))
            listed += len(batch)
            total = inner.get("TotalCount")
            if (
                not batch
                or (isinstance(total, int) and listed >= total)
                or len(batch) < self.settings.page_size
            ):
                return Listing(models, complete=True, quarantined=quarantine.items)
            page += 1
        return Listing(models, complete=False, quarantined=quarantine.items)

    def _models(self, batch: list[Any], quarantine: Quarantine, *, legacy: bool) -> list[ModelInfo]:
        """One page's models; one that cannot be read is quarantined under its model id."""
        return quarantine.each(
            batch,
            lambda item: self._model(item, legacy=legacy),
            key=lambda item: self._model_id(item, legacy=legacy),
            what="model",
        )

    def _model_id(self, item: Any, *, legacy: bool) -> str | None:
        """``org/name`` as :meth:`_model` makes it, from as little of the item as possible."""
        if not isinstance(item, dict):
            return None
        if legacy:
            name = item.get("Name")
            return f"{item.get('Path') or self.org}/{name}" if isinstance(name, str) else None
        model_id = item.get("id")
        if not isinstance(model_id, str) or not model_id:
            return None
        return model_id if "/" in model_id else f"{self.org}/{model_id}"

    def _model(self, item: Any, *, legacy: bool) -> ModelInfo:
        expect(isinstance(item, dict), "expected each model to be an object")
        if legacy:
            name, path = item.get("Name"), item.get("Path") or self.org
            expect(isinstance(name, str) and bool(name), "legacy model object without a Name")
            model_id = f"{path}/{name}"
            modified_raw = item.get("LastUpdatedTime")
            created_raw = item.get("CreatedTime")
            tasks = _names(item.get("Tasks"))
            tags = _names(item.get("Tags"))
            downloads = item.get("Downloads")
        else:
            model_id = item.get("id")
            expect(isinstance(model_id, str) and bool(model_id), "model object without an id")
            if "/" not in model_id:
                model_id = f"{self.org}/{model_id}"
            modified_raw = item.get("last_modified")
            created_raw = item.get("created_at")
            tasks = _names(item.get("tasks"))
            tags = _names(item.get("tags"))
            downloads = item.get("downloads")
        modified = parse_stamp(modified_raw)
        expect(modified is not None, f"model {model_id} without a valid last-modified time")
        facts = [
            ", ".join(tasks) if tasks else None,
            f"{downloads} downloads" if isinstance(downloads, int) else None,
        ]
        return ModelInfo(
            id=model_id,
            revision=time_revision(modified),
            url=self.web_url(model_id),
            last_modified=modified,
            created_at=parse_stamp(created_raw),
            summary=" · ".join(f for f in facts if f),
            labels=tuple(tasks + tags),
            # The times as the upstream wrote them (the revision is made of them); the id is
            # the title, downloads change without an event. The tasks are labels too, with
            # the tags: kept apart for messages (mrt_engine/notify/fields.py).
            raw={
                "last_modified": modified_raw,
                "created_at": created_raw,
                "tasks": ", ".join(tasks) or None,
            },
        )


def build(settings: ModelScopeSettings, ctx: BuildContext) -> list[Source]:
    token = ctx.secrets.get(
        settings.token_env,
        where="sources.modelscope.token_env",
        what="ModelScope access token; public models need none",
        required=False,
    )
    api_base = settings.api_base or ctx.environ.get("MODELSCOPE_ENDPOINT") or DEFAULT_API
    interval = settings.poll_interval_seconds or ctx.default_interval
    return [
        ModelScopeModels(org, settings, api_base.rstrip("/"), token, interval)
        for org in settings.orgs
    ]


KIND = SourceKind(
    name="modelscope",
    settings=ModelScopeSettings,
    build=build,
    host_defaults=HostPolicy(max_concurrency=2, min_interval_seconds=1.0, timeout_seconds=30),
)
